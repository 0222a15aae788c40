// Package storagetest is the conformance suite every ferry storage backend
// (dir, btrfs, zfs) passes against real storage: a backend is proven by
// this suite, not by mocks.
//
// A backend's test calls Run with a function that builds a fresh Harness
// (two empty backends, a source and a target) for every case:
//
//	storagetest.Run(t, func(t *testing.T) storagetest.Harness { ... })
package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
)

// Side names one of the harness's two backends.
type Side int

const (
	Source Side = iota
	Target
)

func (s Side) String() string {
	if s == Source {
		return "source"
	}
	return "target"
}

// Harness is what a backend gives the suite: two fresh, empty backends on
// real storage (cleaned up by the harness through t.Cleanup) and the means
// to make and find datasets on them.
type Harness struct {
	Source, Target storage.Backend

	// CreateDataset creates an empty, writable dataset (a directory, a
	// subvolume, a zfs dataset) on one side.
	CreateDataset func(t testing.TB, side Side, dataset string)
	// LivePath is the live, writable tree of a dataset (the directory, the
	// mounted subvolume, the zfs mountpoint).
	LivePath func(side Side, dataset string) string

	// PrepareTarget, when set, is called before the first receive into a
	// target dataset (e.g. to create a parent the backend needs).
	PrepareTarget func(t testing.TB, dataset string)
	// RootDir, when set, is the directory holding everything the backend
	// writes on that side; the suite checks that failed and discarded
	// receives leave it as it was.
	RootDir func(side Side) string
	// SnapshotPath, when set, is where a snapshot's tree can be read; the
	// suite then checks ownership (as root) and that idempotent snapshot
	// creation does not copy again.
	SnapshotPath func(side Side, dataset, name string) string
	// Tamper, when set, modifies the content of a file inside a snapshot,
	// bypassing the backend; Verify must then fail with KindConflict.
	Tamper func(t testing.TB, side Side, dataset, name string)

	// Backdate, when set, rewrites the creation time the backend recorded
	// for a snapshot, as a clock stepped back at that moment would have
	// left it; listing order must not change.
	Backdate func(t testing.TB, side Side, dataset, name string, at time.Time)

	// IndependentReceives: a received snapshot does not depend on newer
	// ones, so an incremental can be received onto an older base beside
	// them (dir, btrfs; not ZFS, whose datasets are linear). The planner
	// keeps target history only on such backends.
	IndependentReceives bool

	// ReplicaView: the backend shows the replica at <root>/<dataset>
	// through storage/replicaview (dir, btrfs); the ReplicaView cases run
	// only then (zfs's target dataset is itself the replica).
	ReplicaView bool
	// LinearReceives: a full stream is only received into a dataset that
	// does not exist yet (ZFS, which never overwrites without -F and ferry
	// never passes it); a full receive beside other snapshots is then a
	// Conflict that changes nothing, and the target commits in order.
	LinearReceives bool
	// NoXattrs: the harness's filesystem holds no extended attributes or
	// ACLs at all (zfs-fuse); the trees then carry none. Without it a
	// filesystem that refuses them fails the Fidelity case.
	NoXattrs bool
	// NoSpaceFileUnknown: the backend's receive tool does not say which
	// file it was writing when the pool filled (zfs receive); NoSpace must
	// then name the stream instead.
	NoSpaceFileUnknown bool

	// ResumeByOffset: Partials report a Resume position and a Receive with
	// Resume set continues there; Send is then byte-for-byte deterministic.
	ResumeByOffset bool
	// SmallTarget makes a target backend (the same kind and options as
	// Target) on a fresh filesystem small enough to run out of space; it
	// skips the test when the machine cannot make one (prereq).
	SmallTarget func(t testing.TB) SmallTarget
	// HostileStreams, when set, returns crafted streams in the backend's
	// own format that a receive must refuse with KindInvalid without
	// touching anything outside its root (canary is a directory outside
	// both roots that the streams try to write into).
	HostileStreams func(t testing.TB, canary string) []HostileStream
}

// HostileStream is a crafted stream a receive must refuse.
type HostileStream struct {
	// What describes the attack for test names.
	What string
	// Name is the snapshot name the stream claims; the suite receives it
	// under that name (full, no parent) into a fresh target dataset.
	Name string
	// Stream is the stream's bytes.
	Stream []byte
}

// Backend returns the backend of one side.
func (h *Harness) Backend(s Side) storage.Backend {
	if s == Source {
		return h.Source
	}
	return h.Target
}

// Dataset names the suite uses: the target's differs from the source's, as
// in a real job (nas-a:share01 -> nas-b:replicas/share01).
const (
	SourceDataset = "share01"
	TargetDataset = "replicas/share01"
)

// Run runs every conformance case, each as a subtest with a fresh harness.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	cases := []struct {
		name string
		fn   func(t *testing.T, h *Harness)
	}{
		{"FullSendReceive", testFull},
		{"Incremental", testIncremental},
		{"IncrementalChain", testChain},
		{"SnapshotLifecycle", testLifecycle},
		{"FullReceiveBesideOtherSnapshots", testFullBesideOthers},
		{"PartialReceive", testPartial},
		{"TruncatedStreams", testTruncated},
		{"StreamErrorAfterLastByte", testErrorAfterEnd},
		{"Resume", testResume},
		{"Verify", testVerify},
		{"ReceiveAgain", testReceiveAgain},
		{"InvalidNames", testInvalidNames},
		{"HostileStreams", testHostile},
		{"NotFound", testNotFound},
		{"Marks", testMarks},
		{"OrderedByFilesystemNotClock", testOrder},
		{"ReceivedRecordsSourceDataset", testSourceDataset},
		{"IncrementalBesideNewer", testIncrementalBesideNewer},
		{"RefuseOffsetWithoutResume", testOffsetWithoutResume},
		{"RefuseResumeFromOtherSource", testResumeWrongSource},
		{"RefuseResumeOnOtherBase", testResumeWrongParent},
		{"NoSpace", testNoSpace},
		{"Fidelity", testFidelity},
		{"ReplicaView", testReplicaView},
		{"ReplicaViewRefusesForeignPath", testViewRefusesForeignPath},
		{"Restore", testRestore},
		{"RestoreRefusesExisting", testRestoreRefusesExisting},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			c.fn(t, &h)
		})
	}
}

// ---- helpers ----

var ctx = context.Background()

func kindIs(t testing.TB, err error, kinds ...storage.Kind) {
	t.Helper()
	if err == nil {
		t.Fatalf("expected a %v error, got success", kinds)
	}
	var se *storage.Error
	if !errors.As(err, &se) {
		t.Fatalf("error is not a *storage.Error: %v", err)
	}
	if !slices.Contains(kinds, se.Kind) {
		t.Fatalf("error kind %v, want %v: %v", se.Kind, kinds, err)
	}
}

// source makes the source dataset with MakeTree's content.
func source(t testing.TB, h *Harness) string {
	h.CreateDataset(t, Source, SourceDataset)
	live := h.LivePath(Source, SourceDataset)
	MakeTree(t, live)
	if h.PrepareTarget != nil {
		h.PrepareTarget(t, TargetDataset)
	}
	return live
}

// snapshot takes a source snapshot and checks it captures the live tree.
func snapshot(t testing.TB, h *Harness, name string) storage.Snapshot {
	t.Helper()
	live := h.LivePath(Source, SourceDataset)
	want, err := storage.TreeDigest(live, nil)
	must(t, err)
	snap, err := h.Source.CreateSnapshot(ctx, SourceDataset, name)
	must(t, err)
	if snap.Name != name || snap.GUID == "" || !snap.ReadOnly {
		t.Fatalf("snapshot %+v: want name %q, a GUID, read-only", snap, name)
	}
	got, err := h.Source.ContentDigest(ctx, SourceDataset, name)
	must(t, err)
	if got != want {
		t.Fatalf("snapshot %s content digest %s differs from the live tree's %s", name, got, want)
	}
	if IsRoot() && h.SnapshotPath != nil {
		if a, b := Ownership(t, live), Ownership(t, h.SnapshotPath(Source, SourceDataset, name)); !slices.Equal(a, b) {
			t.Fatalf("snapshot %s lost ownership:\nlive %q\nsnap %q", name, a, b)
		}
	}
	return snap
}

func sendBytes(t testing.TB, b storage.Backend, req storage.SendRequest) []byte {
	t.Helper()
	var buf bytes.Buffer
	must(t, b.Send(ctx, req, &buf))
	return buf.Bytes()
}

// cutReader delivers at most n bytes of r, then returns err.
type cutReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, c.err
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	if err == io.EOF && c.n > 0 {
		return n, io.EOF
	}
	if err == io.EOF {
		err = nil
	}
	return n, err
}

// CutStream is a resume.Stream over data[from:] (from a position whose
// prefix is data[:from]) that fails with err after the byte at offset cut.
func CutStream(t testing.TB, data []byte, from resume.Position, cut int64, err error) *resume.Reader {
	t.Helper()
	r, e := resume.NewReader(&cutReader{r: bytes.NewReader(data[from.Offset:]), n: cut - from.Offset, err: err}, from)
	must(t, e)
	return r
}

// Stream is a resume.Stream over data[from.Offset:].
func Stream(t testing.TB, data []byte, from resume.Position) *resume.Reader {
	t.Helper()
	r, err := resume.NewReader(bytes.NewReader(data[from.Offset:]), from)
	must(t, err)
	return r
}

var errLinkDropped = errors.New("storagetest: link dropped")

// receive applies data as snapshot name (incremental on parent if set) and
// checks the result against the source snapshot src.
func receive(t testing.TB, h *Harness, data []byte, src storage.Snapshot, parent string, srcParentGUID string) storage.Snapshot {
	t.Helper()
	got, err := h.Target.Receive(ctx, storage.ReceiveRequest{Dataset: TargetDataset, Name: src.Name, SourceGUID: src.GUID, Parent: parent}, Stream(t, data, resume.Position{}))
	must(t, err)
	checkReceived(t, h, got, src, srcParentGUID)
	return got
}

func checkReceived(t testing.TB, h *Harness, got, src storage.Snapshot, srcParentGUID string) {
	t.Helper()
	if got.Name != src.Name || got.ReceivedGUID != src.GUID || got.ParentGUID != srcParentGUID || !got.ReadOnly || got.GUID == "" {
		t.Fatalf("received %+v: want name %q, received guid %s, parent guid %q, read-only", got, src.Name, src.GUID, srcParentGUID)
	}
	list, err := h.Target.ListSnapshots(ctx, TargetDataset)
	must(t, err)
	found := false
	for _, s := range list {
		if s.Name == src.Name {
			found = true
			if s.GUID != got.GUID || s.ReceivedGUID != src.GUID || !s.ReadOnly {
				t.Fatalf("listed %+v differs from received %+v", s, got)
			}
		}
	}
	if !found {
		t.Fatalf("received snapshot %s not listed: %+v", src.Name, list)
	}
	a, err := h.Source.ContentDigest(ctx, SourceDataset, src.Name)
	must(t, err)
	b, err := h.Target.ContentDigest(ctx, TargetDataset, src.Name)
	must(t, err)
	if a != b {
		t.Fatalf("content digest of %s: source %s, target %s", src.Name, a, b)
	}
	if IsRoot() && h.SnapshotPath != nil {
		if a, b := Ownership(t, h.SnapshotPath(Source, SourceDataset, src.Name)), Ownership(t, h.SnapshotPath(Target, TargetDataset, src.Name)); !slices.Equal(a, b) {
			t.Fatalf("received %s lost ownership:\nsource %q\ntarget %q", src.Name, a, b)
		}
	}
	if _, err := h.Target.Verify(ctx, storage.VerifyRequest{Dataset: TargetDataset, Name: src.Name, SourceGUID: src.GUID, ParentSourceGUID: srcParentGUID, Digest: src.Digest}); err != nil {
		t.Fatalf("verify %s: %v", src.Name, err)
	}
	ps, err := h.Target.Partials(ctx, TargetDataset)
	must(t, err)
	if len(ps) != 0 {
		t.Fatalf("partials left after a complete receive: %+v", ps)
	}
}

func digestOf(t testing.TB, b storage.Backend, ds, name string) string {
	t.Helper()
	d, err := b.ContentDigest(ctx, ds, name)
	must(t, err)
	return d
}

func footprint(t testing.TB, h *Harness, s Side) []string {
	if h.RootDir == nil {
		return nil
	}
	return Footprint(t, h.RootDir(s))
}

func listed(t testing.TB, b storage.Backend, ds, name string) bool {
	t.Helper()
	list, err := b.ListSnapshots(ctx, ds)
	must(t, err)
	for _, s := range list {
		if s.Name == name {
			return true
		}
	}
	return false
}

func partialFor(t testing.TB, b storage.Backend, ds, name string) *storage.Partial {
	t.Helper()
	ps, err := b.Partials(ctx, ds)
	must(t, err)
	for i := range ps {
		if ps[i].Name == name {
			if ps[i].Reason == "" || ps[i].ID == "" {
				t.Fatalf("partial without reason or id: %+v", ps[i])
			}
			return &ps[i]
		}
	}
	return nil
}

// ---- cases ----

func testFull(t *testing.T, h *Harness) {
	source(t, h)
	s1 := snapshot(t, h, "snap1")
	data := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap1"})
	receive(t, h, data, s1, "", "")
}

func testIncremental(t *testing.T, h *Harness) {
	live := source(t, h)
	s1 := snapshot(t, h, "snap1")
	receive(t, h, sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap1"}), s1, "", "")
	srcBefore := digestOf(t, h.Source, SourceDataset, "snap1")
	tgtBefore := digestOf(t, h.Target, TargetDataset, "snap1")

	MutateTree(t, live, 1)
	s2 := snapshot(t, h, "snap2")
	if digestOf(t, h.Source, SourceDataset, "snap2") == srcBefore {
		t.Fatal("the mutations did not change the content digest")
	}
	data := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, From: "snap1", To: "snap2"})
	full := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap2"})
	if len(data) >= len(full) {
		t.Errorf("incremental stream (%d bytes) is not smaller than the full one (%d)", len(data), len(full))
	}
	receive(t, h, data, s2, "snap1", s1.GUID)

	if got := digestOf(t, h.Source, SourceDataset, "snap1"); got != srcBefore {
		t.Fatal("taking snap2 changed the source's snap1")
	}
	if got := digestOf(t, h.Target, TargetDataset, "snap1"); got != tgtBefore {
		t.Fatal("receiving snap2 changed the target's snap1")
	}
	if _, err := h.Target.Verify(ctx, storage.VerifyRequest{Dataset: TargetDataset, Name: "snap1", SourceGUID: s1.GUID, Digest: s1.Digest}); err != nil {
		t.Fatalf("parent no longer verifies: %v", err)
	}
}

func testChain(t *testing.T, h *Harness) {
	live := source(t, h)
	prev := snapshot(t, h, "chain0")
	receive(t, h, sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "chain0"}), prev, "", "")
	for step := 1; step <= 3; step++ {
		MutateTree(t, live, step)
		name := fmt.Sprintf("chain%d", step)
		s := snapshot(t, h, name)
		data := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, From: prev.Name, To: name})
		receive(t, h, data, s, prev.Name, prev.GUID)
		prev = s
	}
	for step := 0; step <= 3; step++ {
		name := fmt.Sprintf("chain%d", step)
		if a, b := digestOf(t, h.Source, SourceDataset, name), digestOf(t, h.Target, TargetDataset, name); a != b {
			t.Fatalf("%s differs after the chain: %s %s", name, a, b)
		}
	}
	list, err := h.Target.ListSnapshots(ctx, TargetDataset)
	must(t, err)
	if len(list) != 4 {
		t.Fatalf("target lists %d snapshots, want 4", len(list))
	}
}

func testLifecycle(t *testing.T, h *Harness) {
	source(t, h)
	a := snapshot(t, h, "zeta")
	var ino1 uint64
	if h.SnapshotPath != nil {
		ino1 = inode(t, h.SnapshotPath(Source, SourceDataset, "zeta"))
	}
	again, err := h.Source.CreateSnapshot(ctx, SourceDataset, "zeta")
	must(t, err)
	if again.GUID != a.GUID || !again.CreatedAt.Equal(a.CreatedAt) || again.Digest != a.Digest {
		t.Fatalf("CreateSnapshot of an existing name made a new snapshot: %+v, was %+v", again, a)
	}
	if h.SnapshotPath != nil && inode(t, h.SnapshotPath(Source, SourceDataset, "zeta")) != ino1 {
		t.Fatal("CreateSnapshot of an existing name copied it again")
	}
	time.Sleep(20 * time.Millisecond)
	snapshot(t, h, "alpha")
	time.Sleep(20 * time.Millisecond)
	snapshot(t, h, "mid")
	list, err := h.Source.ListSnapshots(ctx, SourceDataset)
	must(t, err)
	var names []string
	for _, s := range list {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"zeta", "alpha", "mid"}) {
		t.Fatalf("ListSnapshots order %q, want oldest first", names)
	}
	must(t, h.Source.DestroySnapshot(ctx, SourceDataset, "alpha"))
	must(t, h.Source.DestroySnapshot(ctx, SourceDataset, "alpha"))
	must(t, h.Source.DestroySnapshot(ctx, SourceDataset, "never-existed"))
	if listed(t, h.Source, SourceDataset, "alpha") {
		t.Fatal("destroyed snapshot still listed")
	}
	// The others are intact.
	for _, n := range []string{"zeta", "mid"} {
		digestOf(t, h.Source, SourceDataset, n)
	}
	// A dataset with no snapshots lists none.
	h.CreateDataset(t, Source, "other")
	list, err = h.Source.ListSnapshots(ctx, "other")
	must(t, err)
	if len(list) != 0 {
		t.Fatalf("new dataset lists %+v", list)
	}
	// A target dataset that does not exist yet lists none either.
	list, err = h.Target.ListSnapshots(ctx, TargetDataset)
	must(t, err)
	if len(list) != 0 {
		t.Fatalf("empty target lists %+v", list)
	}
}

func inode(t testing.TB, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	must(t, err)
	return statIno(fi)
}

// testFullBesideOthers: a full receive into a dataset that holds snapshots
// none of which the stream is based on is the planner's call, not the
// backend's: it is accepted.
func testFullBesideOthers(t *testing.T, h *Harness) {
	live := source(t, h)
	s1 := snapshot(t, h, "snap1")
	receive(t, h, sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap1"}), s1, "", "")
	MutateTree(t, live, 1)
	s2 := snapshot(t, h, "snap2")
	if h.LinearReceives {
		// The full stream would have to replace the dataset: refused, nothing changed.
		before := footprint(t, h, Target)
		_, err := h.Target.Receive(ctx, storage.ReceiveRequest{Dataset: TargetDataset, Name: "snap2", SourceGUID: s2.GUID},
			Stream(t, sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap2"}), resume.Position{}))
		kindIs(t, err, storage.KindConflict)
		if !strings.Contains(err.Error(), "snap1") {
			t.Fatalf("the refusal does not name the snapshot in the way: %v", err)
		}
		if listed(t, h.Target, TargetDataset, "snap2") || !listed(t, h.Target, TargetDataset, "snap1") {
			t.Fatal("a refused full receive changed the target's snapshots")
		}
		if after := footprint(t, h, Target); !slices.Equal(before, after) {
			t.Fatalf("a refused full receive changed the target:\nbefore %q\nafter  %q", before, after)
		}
		receive(t, h, sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, From: "snap1", To: "snap2"}), s2, "snap1", s1.GUID)
	} else {
		receive(t, h, sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap2"}), s2, "", "")
	}
	// Receiving a name the target already holds, as another snapshot, is a
	// conflict (the same snapshot again is done: ReceiveAgain).
	_, err := h.Target.Receive(ctx, storage.ReceiveRequest{Dataset: TargetDataset, Name: "snap2", SourceGUID: "other-" + s2.GUID},
		Stream(t, sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap2"}), resume.Position{}))
	kindIs(t, err, storage.KindConflict)
	if got := digestOf(t, h.Target, TargetDataset, "snap2"); got != digestOf(t, h.Source, SourceDataset, "snap2") {
		t.Fatal("a refused receive changed the existing snapshot")
	}
}

func testPartial(t *testing.T, h *Harness) {
	source(t, h)
	s1 := snapshot(t, h, "snap1")
	data := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap1"})
	before := footprint(t, h, Target)
	_, err := h.Target.Receive(ctx, storage.ReceiveRequest{Dataset: TargetDataset, Name: "snap1", SourceGUID: s1.GUID},
		CutStream(t, data, resume.Position{}, int64(len(data)/2), errLinkDropped))
	if err == nil {
		t.Fatal("a receive cut half-way succeeded")
	}
	if listed(t, h.Target, TargetDataset, "snap1") {
		t.Fatal("a receive cut half-way is listed as a snapshot")
	}
	p := partialFor(t, h.Target, TargetDataset, "snap1")
	if p == nil {
		t.Fatal("Partials does not report the interrupted receive")
	}
	if p.Resume != nil && p.Resume.Offset > int64(len(data)/2) {
		t.Fatalf("resume position %d is beyond the cut at %d", p.Resume.Offset, len(data)/2)
	}
	must(t, h.Target.DiscardPartial(ctx, *p))
	must(t, h.Target.DiscardPartial(ctx, *p)) // a missing one is fine
	if p := partialFor(t, h.Target, TargetDataset, "snap1"); p != nil {
		t.Fatalf("partial still reported after discard: %+v", p)
	}
	if after := footprint(t, h, Target); !slices.Equal(before, after) {
		t.Fatalf("discarding the partial left things behind:\nbefore %q\nafter  %q", before, after)
	}
	// And the name can be received afterwards.
	receive(t, h, data, s1, "", "")
}

// testTruncated: streams that end early with a clean io.EOF (at a block
// boundary, inside a header, inside content) never produce a snapshot.
func testTruncated(t *testing.T, h *Harness) {
	source(t, h)
	s1 := snapshot(t, h, "snap1")
	data := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap1"})
	cuts := []int64{0, 1, 512, 1024, 1536, 4096, int64(len(data) / 3), int64(len(data) - 1024), int64(len(data) - 512), int64(len(data) - 1)}
	for _, cut := range cuts {
		_, err := h.Target.Receive(ctx, storage.ReceiveRequest{Dataset: TargetDataset, Name: "snap1", SourceGUID: s1.GUID},
			Stream(t, data[:cut], resume.Position{}))
		if err == nil {
			t.Fatalf("a stream truncated at %d of %d bytes was received", cut, len(data))
		}
		if listed(t, h.Target, TargetDataset, "snap1") {
			t.Fatalf("a stream truncated at %d is listed", cut)
		}
	}
	receive(t, h, data, s1, "", "")
}

func testErrorAfterEnd(t *testing.T, h *Harness) {
	source(t, h)
	s1 := snapshot(t, h, "snap1")
	data := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap1"})
	trailerErr := errors.New("storagetest: stream trailer digest mismatch")
	_, err := h.Target.Receive(ctx, storage.ReceiveRequest{Dataset: TargetDataset, Name: "snap1", SourceGUID: s1.GUID},
		CutStream(t, data, resume.Position{}, int64(len(data)), trailerErr))
	if err == nil {
		t.Fatal("a receive whose stream failed after its last byte succeeded")
	}
	if !errors.Is(err, trailerErr) {
		t.Errorf("the stream's error is not in the chain: %v", err)
	}
	if listed(t, h.Target, TargetDataset, "snap1") {
		t.Fatal("a receive whose stream failed after its last byte is listed")
	}
	if partialFor(t, h.Target, TargetDataset, "snap1") == nil {
		t.Fatal("no partial reported")
	}
	receive(t, h, data, s1, "", "")
}

func testResume(t *testing.T, h *Harness) {
	if !h.ResumeByOffset {
		t.Skip("backend does not resume by offset")
	}
	live := source(t, h)
	s1 := snapshot(t, h, "snap1")
	full := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap1"})
	if again := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap1"}); !bytes.Equal(full, again) {
		t.Fatal("two sends of the same full request differ")
	}
	MutateTree(t, live, 1)
	s2 := snapshot(t, h, "snap2")
	incr := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, From: "snap1", To: "snap2"})
	if again := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, From: "snap1", To: "snap2"}); !bytes.Equal(incr, again) {
		t.Fatal("two sends of the same incremental request differ")
	}

	rng := rand.New(rand.NewPCG(7, 11))
	cutsFor := func(n int) []int64 {
		cuts := []int64{1, 511, 512, 513, 2048, int64(n / 2), int64(n - 1024), int64(n - 1), int64(n)}
		for range 5 {
			cuts = append(cuts, 1+rng.Int64N(int64(n)))
		}
		return cuts
	}
	resumed := 0
	run := func(t *testing.T, data []byte, src storage.Snapshot, parent, parentGUID string) {
		for _, cut := range cutsFor(len(data)) {
			var durable []resume.Position
			req := storage.ReceiveRequest{Dataset: TargetDataset, Name: src.Name, SourceGUID: src.GUID, Parent: parent,
				Durable: func(p resume.Position) { durable = append(durable, p) }}
			_, err := h.Target.Receive(ctx, req, CutStream(t, data, resume.Position{}, cut, errLinkDropped))
			if err == nil {
				t.Fatalf("cut at %d: receive succeeded", cut)
			}
			if listed(t, h.Target, TargetDataset, src.Name) {
				t.Fatalf("cut at %d: listed", cut)
			}
			p := partialFor(t, h.Target, TargetDataset, src.Name)
			if p == nil {
				t.Fatalf("cut at %d: no partial", cut)
			}
			from := resume.Position{}
			if p.Resume != nil {
				if p.Resume.Offset > cut {
					t.Fatalf("cut at %d: resume position %d beyond it", cut, p.Resume.Offset)
				}
				if len(durable) == 0 || durable[len(durable)-1].Offset != p.Resume.Offset {
					t.Fatalf("cut at %d: Durable was not told the resume position %d (%d calls)", cut, p.Resume.Offset, len(durable))
				}
				from = *p.Resume
				if from.Offset > 0 {
					resumed++
				}
			}
			req.Resume = true
			req.Durable = nil
			got, err := h.Target.Receive(ctx, req, Stream(t, data, from))
			if err != nil {
				t.Fatalf("cut at %d: resume from %d: %v", cut, from.Offset, err)
			}
			checkReceived(t, h, got, src, parentGUID)
			must(t, h.Target.DestroySnapshot(ctx, TargetDataset, src.Name))
		}
	}
	t.Run("full", func(t *testing.T) { run(t, full, s1, "", "") })
	receive(t, h, full, s1, "", "")
	t.Run("incremental", func(t *testing.T) { run(t, incr, s2, "snap1", s1.GUID) })
	if resumed == 0 {
		t.Fatal("no cut ever gave a resume position past the start: the harness must make the backend checkpoint often")
	}

	// Interrupted twice: resume, cut again, resume again.
	req := storage.ReceiveRequest{Dataset: TargetDataset, Name: "snap2", SourceGUID: s2.GUID, Parent: "snap1"}
	_, err := h.Target.Receive(ctx, req, CutStream(t, incr, resume.Position{}, int64(len(incr)/3), errLinkDropped))
	if err == nil {
		t.Fatal("cut receive succeeded")
	}
	from := resume.Position{}
	if p := partialFor(t, h.Target, TargetDataset, "snap2"); p != nil && p.Resume != nil {
		from = *p.Resume
	}
	req.Resume = true
	_, err = h.Target.Receive(ctx, req, CutStream(t, incr, from, int64(2*len(incr)/3), errLinkDropped))
	if err == nil {
		t.Fatal("second cut receive succeeded")
	}
	p := partialFor(t, h.Target, TargetDataset, "snap2")
	if p == nil {
		t.Fatal("no partial after the second cut")
	}
	if p.Resume != nil {
		if p.Resume.Offset < from.Offset {
			t.Fatalf("resume position went back from %d to %d", from.Offset, p.Resume.Offset)
		}
		from = *p.Resume
	} else {
		from = resume.Position{}
	}
	got, err := h.Target.Receive(ctx, req, Stream(t, incr, from))
	must(t, err)
	checkReceived(t, h, got, s2, s1.GUID)
	must(t, h.Target.DestroySnapshot(ctx, TargetDataset, "snap2"))

	// A stream started with SHA-256 (before BLAKE3) resumes with it, also
	// from its position untagged, as partials saved before the tag hold it.
	req.Resume = false
	_, err = h.Target.Receive(ctx, req, CutStream(t, incr, resume.Position{Digest: resume.SHA256}, int64(len(incr)-1024), errLinkDropped))
	if err == nil {
		t.Fatal("cut SHA-256 receive succeeded")
	}
	from = resume.Position{Digest: resume.SHA256}
	if p := partialFor(t, h.Target, TargetDataset, "snap2"); p != nil && p.Resume != nil {
		if p.Resume.Offset > 0 && p.Resume.Algorithm() != resume.SHA256 {
			t.Fatalf("the partial of a SHA-256 stream resumes with %q", p.Resume.Algorithm())
		}
		from = *p.Resume
		if from.Offset > 0 {
			from.Digest = ""
		}
	}
	t.Logf("SHA-256 stream of %d bytes resumes from %d (%q untagged)", len(incr), from.Offset, from.Algorithm())
	req.Resume = true
	r := Stream(t, incr, from)
	got, err = h.Target.Receive(ctx, req, r)
	must(t, err)
	checkReceived(t, h, got, s2, s1.GUID)
	if r.Position().Algorithm() != resume.SHA256 || r.Sum() != sha256.Sum256(incr) {
		t.Fatalf("the resumed SHA-256 stream ended with %s %x", r.Position().Algorithm(), r.Sum())
	}
}

func testVerify(t *testing.T, h *Harness) {
	live := source(t, h)
	s1 := snapshot(t, h, "snap1")
	receive(t, h, sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap1"}), s1, "", "")
	MutateTree(t, live, 1)
	s2 := snapshot(t, h, "snap2")
	receive(t, h, sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, From: "snap1", To: "snap2"}), s2, "snap1", s1.GUID)

	good := storage.VerifyRequest{Dataset: TargetDataset, Name: "snap2", SourceGUID: s2.GUID, ParentSourceGUID: s1.GUID, Digest: s2.Digest}
	if _, err := h.Target.Verify(ctx, good); err != nil {
		t.Fatalf("verify of a good receive: %v", err)
	}
	bad := good
	bad.SourceGUID = s1.GUID
	_, err := h.Target.Verify(ctx, bad)
	kindIs(t, err, storage.KindConflict)
	bad = good
	bad.ParentSourceGUID = s2.GUID
	_, err = h.Target.Verify(ctx, bad)
	kindIs(t, err, storage.KindConflict)
	if s2.Digest != "" {
		bad = good
		bad.Digest = s1.Digest
		_, err = h.Target.Verify(ctx, bad)
		kindIs(t, err, storage.KindConflict)
	}
	_, err = h.Target.Verify(ctx, storage.VerifyRequest{Dataset: TargetDataset, Name: "missing", SourceGUID: s2.GUID})
	kindIs(t, err, storage.KindNotFound)
	if h.Tamper == nil {
		return
	}
	h.Tamper(t, Target, TargetDataset, "snap2")
	_, err = h.Target.Verify(ctx, good)
	kindIs(t, err, storage.KindConflict)
	if d, err := h.Target.ContentDigest(ctx, TargetDataset, "snap2"); err == nil && d == digestOf(t, h.Source, SourceDataset, "snap2") {
		t.Fatal("ContentDigest did not notice the modification")
	}
}

var badDatasets = []string{"", ".", "..", "../x", "a/../../x", "/abs", "/", "a//b", "./a", "a/./b", "a/..", "x\x00y"}
var badNames = []string{"", ".", "..", "a/b", "../x", "/abs", "x\x00y"}

func testInvalidNames(t *testing.T, h *Harness) {
	source(t, h)
	s1 := snapshot(t, h, "snap1")
	data := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap1"})
	before := footprint(t, h, Target)
	for _, ds := range badDatasets {
		_, err := h.Source.CreateSnapshot(ctx, ds, "s")
		kindIs(t, err, storage.KindInvalid)
		_, err = h.Source.ListSnapshots(ctx, ds)
		kindIs(t, err, storage.KindInvalid)
		kindIs(t, h.Source.DestroySnapshot(ctx, ds, "s"), storage.KindInvalid)
		kindIs(t, h.Source.Send(ctx, storage.SendRequest{Dataset: ds, To: "snap1"}, io.Discard), storage.KindInvalid)
		_, err = h.Source.Partials(ctx, ds)
		kindIs(t, err, storage.KindInvalid)
		_, err = h.Target.Receive(ctx, storage.ReceiveRequest{Dataset: ds, Name: "snap1", SourceGUID: s1.GUID}, Stream(t, data, resume.Position{}))
		kindIs(t, err, storage.KindInvalid)
		_, err = h.Target.ContentDigest(ctx, ds, "snap1")
		kindIs(t, err, storage.KindInvalid)
	}
	for _, name := range badNames {
		_, err := h.Source.CreateSnapshot(ctx, SourceDataset, name)
		kindIs(t, err, storage.KindInvalid)
		kindIs(t, h.Source.DestroySnapshot(ctx, SourceDataset, name), storage.KindInvalid)
		kindIs(t, h.Source.Send(ctx, storage.SendRequest{Dataset: SourceDataset, To: name}, io.Discard), storage.KindInvalid)
		_, err = h.Target.Receive(ctx, storage.ReceiveRequest{Dataset: TargetDataset, Name: name, SourceGUID: s1.GUID}, Stream(t, data, resume.Position{}))
		kindIs(t, err, storage.KindInvalid)
		if name == "" {
			continue // an empty From or Parent means a full stream
		}
		kindIs(t, h.Source.Send(ctx, storage.SendRequest{Dataset: SourceDataset, From: name, To: "snap1"}, io.Discard), storage.KindInvalid)
		_, err = h.Target.Receive(ctx, storage.ReceiveRequest{Dataset: TargetDataset, Name: "snap1", Parent: name, SourceGUID: s1.GUID}, Stream(t, data, resume.Position{}))
		kindIs(t, err, storage.KindInvalid)
	}
	if after := footprint(t, h, Target); !slices.Equal(before, after) {
		t.Fatalf("refused requests wrote to the target:\nbefore %q\nafter  %q", before, after)
	}
}

func testHostile(t *testing.T, h *Harness) {
	if h.HostileStreams == nil {
		t.Skip("the harness supplies no hostile streams")
	}
	canary := NewCanary(t)
	if h.PrepareTarget != nil {
		h.PrepareTarget(t, TargetDataset)
	}
	for _, hs := range h.HostileStreams(t, canary.Dir) {
		t.Run(strings.ReplaceAll(hs.What, " ", "_"), func(t *testing.T) {
			before := footprint(t, h, Target)
			_, err := h.Target.Receive(ctx, storage.ReceiveRequest{Dataset: TargetDataset, Name: hs.Name}, Stream(t, hs.Stream, resume.Position{}))
			kindIs(t, err, storage.KindInvalid)
			t.Logf("refused: %v", err)
			canary.Check(t)
			if listed(t, h.Target, TargetDataset, hs.Name) {
				t.Fatal("a hostile stream produced a snapshot")
			}
			ps, err := h.Target.Partials(ctx, TargetDataset)
			must(t, err)
			if len(ps) != 0 {
				t.Fatalf("a refused hostile stream left partials: %+v", ps)
			}
			if after := footprint(t, h, Target); !slices.Equal(before, after) {
				t.Fatalf("a refused hostile stream left things behind:\nbefore %q\nafter  %q", before, after)
			}
		})
	}
}

func testNotFound(t *testing.T, h *Harness) {
	source(t, h)
	_, err := h.Source.CreateSnapshot(ctx, "no-such-dataset", "snap1")
	kindIs(t, err, storage.KindNotFound)
	s1 := snapshot(t, h, "snap1")
	live := h.LivePath(Source, SourceDataset)
	err = h.Source.Send(ctx, storage.SendRequest{Dataset: SourceDataset, To: "missing"}, io.Discard)
	kindIs(t, err, storage.KindNotFound)
	err = h.Source.Send(ctx, storage.SendRequest{Dataset: SourceDataset, From: "missing", To: "snap1"}, io.Discard)
	kindIs(t, err, storage.KindNotFound)
	_, err = h.Source.ContentDigest(ctx, SourceDataset, "missing")
	kindIs(t, err, storage.KindNotFound)

	MutateTree(t, live, 1)
	s2 := snapshot(t, h, "snap2")
	incr := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, From: "snap1", To: "snap2"})
	before := footprint(t, h, Target)
	_, err = h.Target.Receive(ctx, storage.ReceiveRequest{Dataset: TargetDataset, Name: "snap2", SourceGUID: s2.GUID, Parent: "snap1"}, Stream(t, incr, resume.Position{}))
	kindIs(t, err, storage.KindNotFound, storage.KindConflict)
	if !strings.Contains(err.Error(), "snap1") {
		t.Fatalf("the error does not name the missing base: %v", err)
	}
	if listed(t, h.Target, TargetDataset, "snap2") {
		t.Fatal("an incremental without its base produced a snapshot")
	}
	if after := footprint(t, h, Target); !slices.Equal(before, after) {
		t.Fatalf("the refused incremental left things behind:\nbefore %q\nafter  %q", before, after)
	}
	_ = s1
}

func testMarks(t *testing.T, h *Harness) {
	source(t, h)
	snapshot(t, h, "snap1")
	MutateTree(t, h.LivePath(Source, SourceDataset), 1)
	snapshot(t, h, "snap2")

	marks, err := h.Source.Marks(ctx, SourceDataset)
	if err != nil || len(marks) != 0 {
		t.Fatalf("a dataset without marks: got %v, %v", marks, err)
	}
	err = h.Source.SetMark(ctx, SourceDataset, "cursor.job1", "missing")
	kindIs(t, err, storage.KindNotFound)
	for _, step := range []struct{ mark, snap string }{
		{"cursor.job1", "snap1"}, {"received.job1", "snap1"}, {"cursor.job1", "snap2"},
	} {
		if err := h.Source.SetMark(ctx, SourceDataset, step.mark, step.snap); err != nil {
			t.Fatalf("set %s -> %s: %v", step.mark, step.snap, err)
		}
	}
	marks, err = h.Source.Marks(ctx, SourceDataset)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"cursor.job1": "snap2", "received.job1": "snap1"}
	if !maps.Equal(marks, want) {
		t.Fatalf("marks: got %v, want %v", marks, want)
	}
	err = h.Source.SetMark(ctx, "../escape", "cursor.job1", "snap1")
	kindIs(t, err, storage.KindInvalid)
}
