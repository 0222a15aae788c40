package dir

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/storagetest"
)

// writable runs change with the snapshot directory dir made writable, as
// an administrator would, and makes it read-only again.
func writable(t testing.TB, dir string, change func()) {
	t.Helper()
	fi, err := os.Lstat(dir)
	ok(t, err)
	ok(t, os.Chmod(dir, fi.Mode()|0o700))
	change()
	ok(t, os.Chmod(dir, fi.Mode()))
}

// replicate snapshots the source dataset "ds" under each name in turn and
// receives each into the target's "ds", incrementally after the first.
func replicate(t testing.TB, src, dst *Backend, names ...string) {
	t.Helper()
	prev := ""
	for _, n := range names {
		s, err := src.CreateSnapshot(bg, "ds", n)
		ok(t, err)
		var buf bytes.Buffer
		ok(t, src.Send(bg, storage.SendRequest{Dataset: "ds", From: prev, To: n}, &buf))
		_, err = dst.Receive(bg, storage.ReceiveRequest{Dataset: "ds", Name: n, SourceGUID: s.GUID, Parent: prev}, storagetest.Stream(t, buf.Bytes(), resume.Position{}))
		ok(t, err)
		prev = n
	}
}

// TestModifiedSnapshotsAreNotListed: each kind of change to a received
// snapshot's tree takes it out of ListSnapshots and Anomalies reports it
// as modified, saying what changed; replicas that ferry itself shared
// files with (hard links of a later incremental, a destroyed one) stay
// intact.
func TestModifiedSnapshotsAreNotListed(t *testing.T) {
	b := newTestBackend(t)
	live := b.live("ds")
	storagetest.MakeTree(t, live)
	cases := []struct {
		name   string
		change func(tree string)
		want   string
	}{
		{"added", func(tree string) {
			writable(t, tree, func() { ok(t, os.WriteFile(filepath.Join(tree, "injected.txt"), []byte("x"), 0o444)) })
		}, `"injected.txt" was added`},
		{"removed", func(tree string) {
			writable(t, filepath.Join(tree, "docs"), func() { ok(t, os.Remove(filepath.Join(tree, "docs", "big.bin"))) })
		}, `"docs/big.bin" was removed`},
		{"appended", func(tree string) {
			p := filepath.Join(tree, "docs", "big.bin")
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			ok(t, err)
			_, err = f.Write([]byte("more"))
			ok(t, err)
			ok(t, f.Close())
		}, `"docs/big.bin" is`},
		{"chmod", func(tree string) { ok(t, os.Chmod(filepath.Join(tree, "docs", "big.bin"), 0o400)) }, `"docs/big.bin" has mode`},
		{"replaced", func(tree string) {
			p := filepath.Join(tree, "docs", "big.bin")
			fi, err := os.Lstat(p)
			ok(t, err)
			data, err := os.ReadFile(p)
			ok(t, err)
			writable(t, filepath.Join(tree, "docs"), func() {
				data[0] ^= 0xff
				ok(t, os.WriteFile(p+".new", data, fi.Mode()))
				ok(t, os.Chtimes(p+".new", fi.ModTime(), fi.ModTime()))
				ok(t, os.Rename(p+".new", p))
			})
		}, `"docs/big.bin" was replaced`},
		{"directory touched and put back", func(tree string) {
			writable(t, filepath.Join(tree, "docs"), func() {
				p := filepath.Join(tree, "docs", "tmp")
				ok(t, os.WriteFile(p, nil, 0o644))
				ok(t, os.Remove(p))
			})
			fi, err := os.Lstat(filepath.Join(tree, "docs"))
			ok(t, err)
			ok(t, os.Chtimes(filepath.Join(tree, "docs"), fi.ModTime(), fi.ModTime())) // no effect on ctime
		}, `directory "docs" changed after commit`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src, b := newTestBackend(t), newTestBackend(t)
			storagetest.MakeTree(t, src.live("ds"))
			// ferry's own sharing moves file ctimes: a later incremental
			// hard-links the unchanged files, a destroyed one unlinks them.
			replicate(t, src, b, "s1", "later", "gone")
			ok(t, b.DestroySnapshot(bg, "ds", "gone"))
			if as, err := b.Anomalies(bg, "ds"); err != nil || len(as) != 0 {
				t.Fatalf("ferry's own hard links made snapshots look modified: %+v %v", as, err)
			}
			c.change(b.snapTree("ds", "s1"))
			listed, err := b.ListSnapshots(bg, "ds")
			ok(t, err)
			for _, l := range listed {
				if l.Name == "s1" {
					t.Fatalf("the modified snapshot is listed: %+v", listed)
				}
			}
			as, err := b.Anomalies(bg, "ds")
			ok(t, err)
			var a *storage.Anomaly
			for i := range as {
				if as[i].Name == "s1" {
					a = &as[i]
				}
			}
			if a == nil || a.Kind != storage.Modified || !strings.Contains(a.What, c.want) {
				t.Fatalf("anomalies %+v, want s1 modified with %q", as, c.want)
			}
			// The greet's one scan says the same as the two calls.
			snaps, as2, err := b.SnapshotsAndAnomalies(bg, "ds")
			ok(t, err)
			if !reflect.DeepEqual(snaps, listed) || !reflect.DeepEqual(as2, as) {
				t.Fatalf("SnapshotsAndAnomalies %+v %+v, ListSnapshots and Anomalies %+v %+v", snaps, as2, listed, as)
			}
			// A change to a file shared by hard links shows in both snapshots.
			t.Logf("%s %s: %s (%d snapshot(s) modified)", a.Kind, a.ID, a.What, len(as))
			if ps, err := b.Partials(bg, "ds"); err != nil || len(ps) != 0 {
				t.Fatalf("modified snapshots reported as partials: %+v %v", ps, err)
			}
			wantKind(t, b.DiscardPartial(bg, storage.Partial{Dataset: "ds", ID: a.ID}), storage.KindConflict)
		})
	}
}

// TestModifiedBaseRefusesIncremental: an incremental is never received on
// top of a modified base; the target stays as it was.
func TestModifiedBaseRefusesIncremental(t *testing.T) {
	src, dst := newTestBackend(t), newTestBackend(t)
	live := src.live("ds")
	storagetest.MakeTree(t, live)
	s1, err := src.CreateSnapshot(bg, "ds", "s1")
	ok(t, err)
	storagetest.MutateTree(t, live, 1)
	s2, err := src.CreateSnapshot(bg, "ds", "s2")
	ok(t, err)
	stream := func(from, to string) []byte {
		var buf bytes.Buffer
		ok(t, src.Send(bg, storage.SendRequest{Dataset: "ds", From: from, To: to}, &buf))
		return buf.Bytes()
	}
	_, err = dst.Receive(bg, storage.ReceiveRequest{Dataset: "r", Name: "s1", SourceGUID: s1.GUID}, storagetest.Stream(t, stream("", "s1"), resume.Position{}))
	ok(t, err)
	tree := dst.snapTree("r", "s1")
	writable(t, tree, func() { ok(t, os.WriteFile(filepath.Join(tree, "injected.txt"), []byte("x"), 0o444)) })
	before := storagetest.Footprint(t, dst.root)
	_, err = dst.Receive(bg, storage.ReceiveRequest{Dataset: "r", Name: "s2", SourceGUID: s2.GUID, Parent: "s1"}, storagetest.Stream(t, stream("s1", "s2"), resume.Position{}))
	wantKind(t, err, storage.KindConflict)
	if !strings.Contains(err.Error(), `"injected.txt" was added`) || !strings.Contains(err.Error(), "replica") {
		t.Fatalf("the refusal does not say what changed and what to do: %v", err)
	}
	t.Log(err)
	if after := storagetest.Footprint(t, dst.root); strings.Join(before, "\n") != strings.Join(after, "\n") {
		t.Fatalf("the refused receive changed the target:\nbefore %q\nafter  %q", before, after)
	}
}

// TestForeignItemsAreKept: a directory and a file made by hand in ferry's
// snapshot area, and a directory copied into its staging area, are
// foreign: not listed, not partials, never removed, and
// whatever would replace them (create, receive, destroy, discard of that
// name) fails with Conflict naming them.
func TestForeignItemsAreKept(t *testing.T) {
	b := newTestBackend(t)
	storagetest.WriteFile(t, filepath.Join(b.live("ds"), "f"), []byte("x"), 0o644, 1)
	ok(t, os.MkdirAll(filepath.Join(b.snapTree("ds", "handmade"), "sub"), 0o755))
	ok(t, os.WriteFile(b.snapTree("ds", "notes.txt"), []byte("mine"), 0o644))
	ok(t, os.MkdirAll(filepath.Join(b.stagingDir("ds"), "copied-here", "photos"), 0o755))
	before := storagetest.Footprint(t, b.root)
	as, err := b.Anomalies(bg, "ds")
	ok(t, err)
	if len(as) != 3 || as[0].Name != "handmade" || as[1].Name != "notes.txt" || as[2].Name != "copied-here" {
		t.Fatalf("anomalies %+v, want handmade, notes.txt and copied-here", as)
	}
	for _, a := range as {
		t.Logf("%s %s: %s", a.Kind, a.ID, a.What)
	}
	if ps, err := b.Partials(bg, "ds"); err != nil || len(ps) != 0 {
		t.Fatalf("foreign items reported as partials: %+v %v", ps, err)
	}
	if l, err := b.ListSnapshots(bg, "ds"); err != nil || len(l) != 0 {
		t.Fatalf("foreign items listed: %+v %v", l, err)
	}
	_, err = b.CreateSnapshot(bg, "ds", "handmade")
	wantKind(t, err, storage.KindConflict)
	if !strings.Contains(err.Error(), as[0].ID) || !strings.Contains(err.Error(), "move it out of .ferry/") {
		t.Fatalf("the refusal does not name the item and the fix: %v", err)
	}
	_, err = b.Receive(bg, storage.ReceiveRequest{Dataset: "ds", Name: "handmade"}, storagetest.Stream(t, nil, resume.Position{}))
	wantKind(t, err, storage.KindConflict)
	wantKind(t, b.DestroySnapshot(bg, "ds", "handmade"), storage.KindConflict)
	for _, a := range as {
		if a.Kind != storage.Foreign {
			t.Fatalf("%s is %s, want foreign", a.ID, a.Kind)
		}
		wantKind(t, b.DiscardPartial(bg, storage.Partial{Dataset: "ds", Name: a.Name, ID: a.ID}), storage.KindConflict)
	}
	_, err = b.Receive(bg, storage.ReceiveRequest{Dataset: "ds", Name: "copied-here"}, storagetest.Stream(t, nil, resume.Position{}))
	wantKind(t, err, storage.KindConflict)
	if after := storagetest.Footprint(t, b.root); strings.Join(before, "\n") != strings.Join(after, "\n") {
		t.Fatalf("refusals changed the root:\nbefore %q\nafter  %q", before, after)
	}
	// Other names are not in their way.
	_, err = b.CreateSnapshot(bg, "ds", "s1")
	ok(t, err)
}

// BenchmarkModificationCheck measures what the greet-time check costs on a
// large tree (50,000 files of 4 KiB in 500 directories), beside Verify's
// full re-read of the same snapshot: `go test ./storage/dir/ -run '^$'
// -bench ModificationCheck -benchtime 5x`.
func BenchmarkModificationCheck(b *testing.B) {
	be := newTestBackend(b)
	live := be.live("ds")
	data := make([]byte, 4096)
	for d := 0; d < 500; d++ {
		dir := filepath.Join(live, fmt.Sprintf("d%03d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := 0; f < 100; f++ {
			data[0], data[1] = byte(d), byte(f)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", f)), data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	if _, err := be.CreateSnapshot(bg, "ds", "s1"); err != nil {
		b.Fatal(err)
	}
	b.Run("greet-check", func(b *testing.B) {
		for b.Loop() {
			if what, err := be.modification("ds", "s1", false); err != nil || what != "" {
				b.Fatalf("%q %v", what, err)
			}
		}
	})
	b.Run("verify-reread", func(b *testing.B) {
		for b.Loop() {
			if _, err := be.recomputeDigest("ds", "s1", true); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify-quick", func(b *testing.B) {
		for b.Loop() {
			if _, err := be.recomputeDigest("ds", "s1", false); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestModifiedReplicaGoesAsItsFixSays: the fix of a modified replica names
// every file of the snapshot by its absolute path in one command; running
// it (also after only the tree was removed by hand, which leaves the
// snapshot broken) leaves no anomaly, no partial and the other snapshots
// listed, and the snapshot can be received again.
func TestModifiedReplicaGoesAsItsFixSays(t *testing.T) {
	for _, treeFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("tree removed first: %v", treeFirst), func(t *testing.T) {
			src, b := newTestBackend(t), newTestBackend(t)
			storagetest.MakeTree(t, src.live("ds"))
			replicate(t, src, b, "s1", "s2")
			tree := b.snapTree("ds", "s2")
			writable(t, tree, func() { ok(t, os.WriteFile(filepath.Join(tree, "injected.txt"), []byte("x"), 0o444)) })
			if treeFirst {
				ok(t, os.RemoveAll(tree))
			}
			as, err := b.Anomalies(bg, "ds")
			ok(t, err)
			if len(as) != 1 || as[0].Kind != storage.Modified || as[0].Name != "s2" {
				t.Fatalf("anomalies %+v, want s2 modified", as)
			}
			a := as[0]
			fix := a.Fix()
			if !filepath.IsAbs(b.root) {
				t.Fatalf("root %q is not absolute: the fix's paths would not be", b.root)
			}
			for _, want := range []string{"remove it, then run the job again", a.Remove, b.metaPath("ds", "s2"), b.inodesPath("ds", "s2"), b.manifestPath("ds", "s2")} {
				if !strings.Contains(fix, want) {
					t.Errorf("the fix lacks %q: %s", want, fix)
				}
			}
			if !treeFirst {
				if !strings.HasPrefix(a.What, `first difference found: "injected.txt" was added`) || !strings.Contains(fix, "s2 is a replica (received from the source): removing it deletes only this modified copy") {
					t.Errorf("what %q, fix %q", a.What, fix)
				}
			}
			t.Logf("%s: %s. To fix: %s", a.ID, a.What, fix)
			if out, err := exec.Command("sh", "-c", a.Remove).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v: %s", a.Remove, err, out)
			}
			if as, err := b.Anomalies(bg, "ds"); err != nil || len(as) != 0 {
				t.Fatalf("after the fix: anomalies %+v %v", as, err)
			}
			if ps, err := b.Partials(bg, "ds"); err != nil || len(ps) != 0 {
				t.Fatalf("after the fix: partials %+v %v", ps, err)
			}
			listed, err := b.ListSnapshots(bg, "ds")
			ok(t, err)
			if len(listed) != 1 || listed[0].Name != "s1" {
				t.Fatalf("after the fix: listed %+v, want s1", listed)
			}
			var buf bytes.Buffer
			ok(t, src.Send(bg, storage.SendRequest{Dataset: "ds", From: "s1", To: "s2"}, &buf))
			s2, err := src.ListSnapshots(bg, "ds")
			ok(t, err)
			_, err = b.Receive(bg, storage.ReceiveRequest{Dataset: "ds", Name: "s2", SourceGUID: s2[1].GUID, Parent: "s1"}, storagetest.Stream(t, buf.Bytes(), resume.Position{}))
			ok(t, err)
		})
	}
}
