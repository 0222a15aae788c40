package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
)

// The refusals of storage.CheckResume, and NoSpace, as every backend must
// behave (docs/storage.md): a refused receive is KindInvalid and leaves the
// target exactly as it was, partial included; a receive that runs out of
// space is KindNoSpace, says what it was writing and how much room the
// snapshot needs against what is free, and keeps nothing.

// SmallTarget is a target backend on a filesystem of about Capacity bytes,
// for the NoSpace case; Root holds everything the backend writes there.
type SmallTarget struct {
	Backend  storage.Backend
	Root     string
	Capacity int64
}

// PositionAt is the stream position after data[:n].
func PositionAt(t testing.TB, data []byte, n int64) resume.Position {
	t.Helper()
	r, err := resume.NewReader(bytes.NewReader(data[:n]), resume.Position{})
	must(t, err)
	_, err = io.Copy(io.Discard, r)
	must(t, err)
	return r.Position()
}

// state lists every entry under root with its type and, for files, size
// and mtime: a refusal must not even truncate a spool.
func state(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	must(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		line := fmt.Sprintf("%q %s", rel, d.Type())
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %d %d", fi.Size(), fi.ModTime().UnixNano())
		}
		out = append(out, line)
		return nil
	}))
	return out
}

// unchanged checks that a refused receive left the target as it was.
func unchanged(t testing.TB, h *Harness, what string, before []string, partialBefore *storage.Partial, name string) {
	t.Helper()
	if h.RootDir != nil {
		if after := state(t, h.RootDir(Target)); !slices.Equal(before, after) {
			t.Fatalf("%s changed the target:\nbefore %q\nafter  %q", what, before, after)
		}
	}
	after := partialFor(t, h.Target, TargetDataset, name)
	switch {
	case (partialBefore == nil) != (after == nil):
		t.Fatalf("%s: partial before %+v, after %+v", what, partialBefore, after)
	case after != nil && (after.Resume == nil) != (partialBefore.Resume == nil):
		t.Fatalf("%s changed the partial's resume position: %+v, then %+v", what, partialBefore.Resume, after.Resume)
	case after != nil && after.Resume != nil && after.Resume.Offset != partialBefore.Resume.Offset:
		t.Fatalf("%s moved the partial's resume position from %d to %d", what, partialBefore.Resume.Offset, after.Resume.Offset)
	}
	if listed(t, h.Target, TargetDataset, name) {
		t.Fatalf("%s: %s is listed", what, name)
	}
}

func targetState(t testing.TB, h *Harness) []string {
	if h.RootDir == nil {
		return nil
	}
	return state(t, h.RootDir(Target))
}

// refused receives req from from and checks the refusal.
func refused(t testing.TB, h *Harness, what string, req storage.ReceiveRequest, data []byte, from resume.Position, says string) {
	t.Helper()
	before, p := targetState(t, h), partialFor(t, h.Target, TargetDataset, req.Name)
	_, err := h.Target.Receive(ctx, req, Stream(t, data, from))
	kindIs(t, err, storage.KindInvalid)
	if !strings.Contains(err.Error(), says) {
		t.Fatalf("%s: refusal %q does not say %q", what, err, says)
	}
	unchanged(t, h, what, before, p, req.Name)
}

// cutPartial leaves a partial receive of req cut half-way and returns
// where a resume would start: its resume position, or (for a backend that
// cannot resume it) the position of the cut.
func cutPartial(t testing.TB, h *Harness, req storage.ReceiveRequest, data []byte) resume.Position {
	t.Helper()
	cut := int64(len(data) / 2)
	if _, err := h.Target.Receive(ctx, req, CutStream(t, data, resume.Position{}, cut, errLinkDropped)); err == nil {
		t.Fatal("a receive cut half-way succeeded")
	}
	p := partialFor(t, h.Target, TargetDataset, req.Name)
	if p == nil {
		t.Fatal("no partial after a cut receive")
	}
	if h.ResumeByOffset && (p.Resume == nil || p.Resume.Offset == 0) {
		t.Fatalf("a backend that resumes by offset kept nothing resumable of half a stream: %+v", p)
	}
	if p.Resume != nil {
		return *p.Resume
	}
	return PositionAt(t, data, cut)
}

// testOffsetWithoutResume: a stream that does not start at offset 0 is
// only ever received as the resume of a partial.
func testOffsetWithoutResume(t *testing.T, h *Harness) {
	source(t, h)
	s1 := snapshot(t, h, "snap1")
	full := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap1"})
	req := storage.ReceiveRequest{Dataset: TargetDataset, Name: "snap1", SourceGUID: s1.GUID}
	mid := PositionAt(t, full, int64(len(full)/2))

	refused(t, h, "an offset without resume, nothing held", req, full, mid, "without resume")
	resuming := req
	resuming.Resume = true
	refused(t, h, "a resume at an offset with nothing held", resuming, full, mid, "no resumable partial")

	from := cutPartial(t, h, req, full)
	refused(t, h, "an offset without resume beside a partial", req, full, from, "without resume")
	// The partial still works: resumed (or, where it cannot be, received again).
	if !h.ResumeByOffset {
		from = resume.Position{}
	}
	got, err := h.Target.Receive(ctx, resuming, Stream(t, full, from))
	must(t, err)
	checkReceived(t, h, got, s1, "")
}

// testResumeWrongSource: a partial is only continued by the stream of the
// source snapshot it was receiving.
func testResumeWrongSource(t *testing.T, h *Harness) {
	live := source(t, h)
	s1 := snapshot(t, h, "snap1")
	full := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap1"})
	MutateTree(t, live, 1)
	other := snapshot(t, h, "snap2")

	req := storage.ReceiveRequest{Dataset: TargetDataset, Name: "snap1", SourceGUID: s1.GUID}
	from := cutPartial(t, h, req, full)
	wrong := req
	wrong.Resume, wrong.SourceGUID = true, other.GUID
	says := "source snapshot " + s1.GUID + ", not " + other.GUID
	if !h.ResumeByOffset {
		says = "no resumable partial"
	}
	refused(t, h, "a resume from another source snapshot", wrong, full, from, says)

	req.Resume = true
	if !h.ResumeByOffset {
		from = resume.Position{}
	}
	got, err := h.Target.Receive(ctx, req, Stream(t, full, from))
	must(t, err)
	checkReceived(t, h, got, s1, "")
}

// testResumeWrongParent: a partial incremental is only continued on the
// base it was applied on: the same name and the same snapshot (a base
// destroyed and received again under its name is another one).
func testResumeWrongParent(t *testing.T, h *Harness) {
	live := source(t, h)
	s1 := snapshot(t, h, "snap1")
	receive(t, h, sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap1"}), s1, "", "")
	MutateTree(t, live, 1)
	s2 := snapshot(t, h, "snap2")
	incr12 := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, From: "snap1", To: "snap2"})
	firstBase := receive(t, h, incr12, s2, "snap1", s1.GUID)
	MutateTree(t, live, 2)
	// Enough new files that half the stream is past a checkpoint.
	for i := range 8 {
		WriteFile(t, filepath.Join(live, fmt.Sprintf("grown-%d.bin", i)), Random(uint64(i), 64<<10), 0o644, 2)
	}
	s3 := snapshot(t, h, "snap3")
	incr23 := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, From: "snap2", To: "snap3"})

	req := storage.ReceiveRequest{Dataset: TargetDataset, Name: "snap3", SourceGUID: s3.GUID, Parent: "snap2"}
	from := cutPartial(t, h, req, incr23)
	wrong := req
	wrong.Resume, wrong.Parent = true, "snap1"
	says := `based on base "snap2", not base "snap1"`
	if !h.ResumeByOffset {
		says = "no resumable partial"
	}
	refused(t, h, "a resume on another base", wrong, incr23, from, says)

	// The base destroyed and received again: same name, another snapshot.
	must(t, h.Target.DestroySnapshot(ctx, TargetDataset, "snap2"))
	newBase, err := h.Target.Receive(ctx, storage.ReceiveRequest{Dataset: TargetDataset, Name: "snap2", SourceGUID: s2.GUID, Parent: "snap1"},
		Stream(t, incr12, resume.Position{}))
	must(t, err)
	if newBase.GUID == firstBase.GUID {
		t.Fatalf("snap2 received again kept its identity %s: the case proves nothing", newBase.GUID)
	}
	if p := partialFor(t, h.Target, TargetDataset, "snap3"); p == nil {
		t.Fatal("receiving snap2 again removed the partial of snap3")
	}
	again := req
	again.Resume = true
	says = "destroyed and received again"
	if !h.ResumeByOffset {
		says = "no resumable partial"
	}
	refused(t, h, "a resume on a base received again", again, incr23, from, says)

	// Received from the start on the new base, it is complete and right.
	got, err := h.Target.Receive(ctx, req, Stream(t, incr23, resume.Position{}))
	must(t, err)
	checkReceived(t, h, got, s3, s2.GUID)
}

// tempName matches the names of files a backend writes before renaming
// them into place, which mean nothing to an administrator.
var tempName = regexp.MustCompile(`(^|/)(t\d+|\.ferry-tmp[^/]*|[^/]*\.tmp)$|/tmp/`)

// testNoSpace: a receive into a filesystem too small for it fails with
// KindNoSpace naming the file it was writing and the room needed against
// the room free, and keeps nothing: ferry never leaves a NAS disk full.
func testNoSpace(t *testing.T, h *Harness) {
	if h.SmallTarget == nil {
		t.Fatal("the harness has no SmallTarget: every backend must prove its NoSpace behaviour")
	}
	small := h.SmallTarget(t)
	live := source(t, h)
	const bigName = "big-incompressible.bin"
	WriteFile(t, filepath.Join(live, bigName), Random(99, int(small.Capacity*3/2+16<<20)), 0o644, 3)
	s1 := snapshot(t, h, "snap1")
	data := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap1"})

	before := Footprint(t, small.Root)
	_, err := small.Backend.Receive(ctx, storage.ReceiveRequest{Dataset: TargetDataset, Name: "snap1", SourceGUID: s1.GUID,
		ExpectedSize: int64(len(data))}, Stream(t, data, resume.Position{}))
	kindIs(t, err, storage.KindNoSpace)
	t.Logf("NoSpace: %v", err)
	var nse *storage.NoSpaceError
	if !errors.As(err, &nse) {
		t.Fatalf("NoSpace error without its detail (storage.NoSpace): %v", err)
	}
	switch {
	case h.NoSpaceFileUnknown && !strings.Contains(nse.File, "stream"):
		t.Errorf("NoSpace names %q: a backend whose tool does not say the file must name the stream", nse.File)
	case h.NoSpaceFileUnknown:
	case !strings.Contains(nse.File, bigName) && !strings.Contains(nse.File, "spool"):
		t.Errorf("NoSpace names %q, not the file being written (%s) nor the stream's spool", nse.File, bigName)
	case tempName.MatchString(strings.Trim(nse.File, `"`)):
		t.Errorf("NoSpace names an internal temporary file: %q", nse.File)
	}
	if nse.Need != int64(len(data)) || nse.AtLeast {
		t.Errorf("NoSpace says the snapshot needs %d bytes (at least: %v), the stream's expected size is %d", nse.Need, nse.AtLeast, len(data))
	}
	if nse.Free < small.Capacity/4 || nse.Free >= nse.Need {
		t.Errorf("NoSpace says %d bytes are free for a snapshot of %d on a filesystem of %d: the discarded receive's space must be free again", nse.Free, nse.Need, small.Capacity)
	}
	msg := err.Error()
	for _, want := range []string{TargetDataset + "@snap1", "free", "nothing of this receive was kept"} {
		if !strings.Contains(msg, want) {
			t.Errorf("NoSpace message lacks %q: %s", want, msg)
		}
	}
	if ps, err := small.Backend.Partials(ctx, TargetDataset); err != nil || len(ps) != 0 {
		t.Fatalf("NoSpace kept partials: %+v, %v", ps, err)
	}
	if list, err := small.Backend.ListSnapshots(ctx, TargetDataset); err != nil || len(list) != 0 {
		t.Fatalf("NoSpace listed: %+v, %v", list, err)
	}
	if after := Footprint(t, small.Root); !slices.Equal(before, after) {
		t.Fatalf("NoSpace left things behind:\nbefore %q\nafter  %q", before, after)
	}
}
