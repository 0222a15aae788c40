package storagetest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/replicaview"
)

// viewPath is where the target shows the replica: <root>/<dataset>.
func viewPath(h *Harness, ds string) string {
	return filepath.Join(h.RootDir(Target), filepath.FromSlash(ds))
}

// requireEntry checks that the view's entry resolves, through a relative
// symlink, to the target's snapshot want and that its files read back as
// the source's snapshot of that name.
func requireEntry(t testing.TB, h *Harness, entry, want string) {
	t.Helper()
	p := filepath.Join(viewPath(h, TargetDataset), entry)
	link, err := os.Readlink(p)
	if err != nil {
		t.Fatalf("view entry %s: %v", p, err)
	}
	if filepath.IsAbs(link) {
		t.Fatalf("view entry %s -> %s is absolute; the share must keep working mounted elsewhere", p, link)
	}
	got, err := filepath.EvalSymlinks(p)
	must(t, err)
	snap, err := filepath.EvalSymlinks(h.SnapshotPath(Target, TargetDataset, want))
	must(t, err)
	if got != snap {
		t.Fatalf("view entry %s resolves to %s, want snapshot %s at %s", entry, got, want, snap)
	}
	if a, b := readBack(t, p+"/"), readBack(t, h.SnapshotPath(Source, SourceDataset, want)); !slices.Equal(a, b) {
		t.Fatalf("files read through view entry %s differ from the source's %s:\nview   %q\nsource %q", entry, want, a, b)
	}
}

// readBack lists every path under root with what a reader gets from it: a
// regular file's content hash, a symlink's target (the root itself is
// followed, as a person browsing the share does).
func readBack(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	must(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		line := rel + " " + d.Type().String()
		switch {
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %x", sha256.Sum256(b))
		case d.Type() == fs.ModeSymlink:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " -> " + l
		}
		out = append(out, line)
		return nil
	}))
	return out
}

func requireNoEntry(t testing.TB, h *Harness, entry string) {
	t.Helper()
	p := filepath.Join(viewPath(h, TargetDataset), entry)
	if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("view entry %s still there (%v)", p, err)
	}
}

// viewEntries lists the view's entries besides its marker.
func viewEntries(t testing.TB, h *Harness) []string {
	t.Helper()
	es, err := os.ReadDir(viewPath(h, TargetDataset))
	must(t, err)
	var out []string
	for _, e := range es {
		if e.Name() != replicaview.Marker {
			out = append(out, e.Name())
		}
	}
	return out
}

func testReplicaView(t *testing.T, h *Harness) {
	if !h.ReplicaView {
		t.Skip("the backend does not show the replica through storage/replicaview")
	}
	if h.RootDir == nil || h.SnapshotPath == nil {
		t.Skip("the harness does not expose its roots")
	}
	live := source(t, h)
	s1 := snapshot(t, h, "snap1")
	receive(t, h, sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap1"}), s1, "", "")
	requireEntry(t, h, replicaview.Latest, "snap1")
	requireEntry(t, h, "snap1", "snap1")

	MutateTree(t, live, 1)
	s2 := snapshot(t, h, "snap2")
	receive(t, h, sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, From: "snap1", To: "snap2"}), s2, "snap1", s1.GUID)
	requireEntry(t, h, replicaview.Latest, "snap2")
	requireEntry(t, h, "snap1", "snap1")
	requireEntry(t, h, "snap2", "snap2")
	if got, want := viewEntries(t, h), []string{replicaview.Latest, "snap1", "snap2"}; !slices.Equal(got, want) {
		t.Fatalf("view holds %q, want %q", got, want)
	}
	if fi, err := os.Stat(viewPath(h, TargetDataset)); err != nil || fi.Mode().Perm()&0o222 != 0 {
		t.Fatalf("view directory is not read-only: %v %v", fi.Mode(), err)
	}

	// The source's live dataset is never made a view, and a view is not a
	// live dataset to snapshot, nor anything greet reports.
	if replicaview.IsView(live) {
		t.Fatal("the source's live dataset was made a view")
	}
	_, err := h.Target.CreateSnapshot(ctx, TargetDataset, "snap-of-view")
	kindIs(t, err, storage.KindConflict)
	if !strings.Contains(err.Error(), viewPath(h, TargetDataset)) {
		t.Fatalf("refusal does not name the view: %v", err)
	}
	if as, err := h.Target.Anomalies(ctx, TargetDataset); err != nil || len(as) != 0 {
		t.Fatalf("the view shows up as anomalies %+v (%v)", as, err)
	}
	if ps, err := h.Target.Partials(ctx, TargetDataset); err != nil || len(ps) != 0 {
		t.Fatalf("the view shows up as partials %+v (%v)", ps, err)
	}

	// Destroying an older snapshot removes its entry; latest stays.
	must(t, h.Target.DestroySnapshot(ctx, TargetDataset, "snap1"))
	requireNoEntry(t, h, "snap1")
	requireEntry(t, h, replicaview.Latest, "snap2")

	// Damage by hand: latest gone, snap2 pointing elsewhere, a stale entry
	// of ours, and a file of someone's, which stays. A mark repairs it.
	view := viewPath(h, TargetDataset)
	must(t, os.Chmod(view, 0o755))
	must(t, os.Remove(filepath.Join(view, replicaview.Latest)))
	area := "../../" + storage.MetaDir + "/snapshots/" + storage.EscapeDataset(TargetDataset)
	must(t, os.Remove(filepath.Join(view, "snap2")))
	must(t, os.Symlink(area+"/snap1", filepath.Join(view, "snap2")))
	must(t, os.Symlink(area+"/gone", filepath.Join(view, "gone")))
	must(t, os.WriteFile(filepath.Join(view, "notes.txt"), []byte("mine\n"), 0o644))
	must(t, h.Target.SetMark(ctx, TargetDataset, "received.job", "snap2"))
	requireEntry(t, h, replicaview.Latest, "snap2")
	requireEntry(t, h, "snap2", "snap2")
	requireNoEntry(t, h, "gone")
	if b, err := os.ReadFile(filepath.Join(view, "notes.txt")); err != nil || string(b) != "mine\n" {
		t.Fatalf("the repair touched a file ferry did not make: %q %v", b, err)
	}

	// The whole view removed: the next mark makes it again.
	must(t, os.Chmod(view, 0o755))
	must(t, os.Chmod(filepath.Dir(view), 0o755)) // ferry's read-only parent, when not root
	must(t, os.RemoveAll(view))
	must(t, h.Target.SetMark(ctx, TargetDataset, "received.job", "snap2"))
	requireEntry(t, h, replicaview.Latest, "snap2")

	// A modified snapshot the backend no longer lists leaves the view, and
	// latest goes back to the newest listed one: the view shows exactly
	// what ListSnapshots gives.
	if h.Tamper != nil {
		MutateTree(t, live, 2)
		s3 := snapshot(t, h, "snap3")
		receive(t, h, sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, From: "snap2", To: "snap3"}), s3, "snap2", s2.GUID)
		requireEntry(t, h, replicaview.Latest, "snap3")
		h.Tamper(t, Target, TargetDataset, "snap3")
		must(t, h.Target.DestroySnapshot(ctx, TargetDataset, "never-made"))
		requireViewIsList(t, h)
	}
}

// requireViewIsList checks that the view holds one entry per listed
// snapshot and latest at the last of them, nothing else of ferry's.
func requireViewIsList(t testing.TB, h *Harness) {
	t.Helper()
	list, err := h.Target.ListSnapshots(ctx, TargetDataset)
	must(t, err)
	want := []string{}
	for _, s := range list {
		want = append(want, s.Name)
	}
	got := slices.DeleteFunc(viewEntries(t, h), func(n string) bool { return n == replicaview.Latest })
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("view holds %q, the target lists %q", got, want)
	}
	if len(list) > 0 {
		link, err := filepath.EvalSymlinks(filepath.Join(viewPath(h, TargetDataset), replicaview.Latest))
		must(t, err)
		snap, err := filepath.EvalSymlinks(h.SnapshotPath(Target, TargetDataset, list[len(list)-1].Name))
		must(t, err)
		if link != snap {
			t.Fatalf("latest resolves to %s, the newest listed is %s", link, snap)
		}
	}
}

// testViewRefusesForeignPath: a receive into a dataset whose path already
// holds someone's data is refused naming the path, and changes nothing.
func testViewRefusesForeignPath(t *testing.T, h *Harness) {
	if !h.ReplicaView {
		t.Skip("the backend does not show the replica through storage/replicaview")
	}
	if h.RootDir == nil {
		t.Skip("the harness does not expose its roots")
	}
	source(t, h)
	s1 := snapshot(t, h, "snap1")
	data := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap1"})
	theirs := viewPath(h, TargetDataset)
	must(t, os.MkdirAll(theirs, 0o755))
	must(t, os.WriteFile(filepath.Join(theirs, "report.txt"), []byte("not ferry's\n"), 0o644))
	before := state(t, h.RootDir(Target))
	_, err := h.Target.Receive(ctx, storage.ReceiveRequest{Dataset: TargetDataset, Name: "snap1", SourceGUID: s1.GUID}, Stream(t, data, resume.Position{}))
	kindIs(t, err, storage.KindConflict)
	if !strings.Contains(err.Error(), theirs) {
		t.Fatalf("refusal does not name %s: %v", theirs, err)
	}
	if after := state(t, h.RootDir(Target)); !slices.Equal(before, after) {
		t.Fatalf("refused receive changed the target:\nbefore %q\nafter  %q", before, after)
	}
	if listed(t, h.Target, TargetDataset, "snap1") {
		t.Fatal("a refused receive is listed")
	}
	if b, err := os.ReadFile(filepath.Join(theirs, "report.txt")); err != nil || string(b) != "not ferry's\n" {
		t.Fatalf("their file changed: %q %v", b, err)
	}
}
