package replicaview

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ferry-nas/ferry/storage"
)

// fakeView is a view over a root whose "snapshots" are plain directories
// under .ferry/snapshots/<ds>/<name>, as dir lays them out.
func fakeView(t *testing.T, root, ds string, names ...string) View {
	t.Helper()
	v := View{Root: root, Dataset: ds, Target: func(n string) string {
		return storage.MetaDir + "/snapshots/" + storage.EscapeDataset(ds) + "/" + n
	}}
	for _, n := range names {
		p := filepath.Join(root, filepath.FromSlash(v.Target(n)))
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "file"), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

func readThrough(t *testing.T, v View, entry string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(v.Path(), entry, "file"))
	if err != nil {
		t.Fatalf("read through %s: %v", entry, err)
	}
	return string(b)
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func cleanup(t *testing.T, root string) {
	t.Cleanup(func() {
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
}

// TestNested: the view of a/s is made first (its parent a is marked as
// ferry's); a's own view is then made in that parent, beside a/s's view,
// which it leaves alone; neither removes the other's entries.
func TestNested(t *testing.T) {
	root := t.TempDir()
	cleanup(t, root)
	inner := fakeView(t, root, "a/s", "i1")
	outer := fakeView(t, root, "a", "o1", "o2")
	if err := outer.Check("receive"); err != nil {
		t.Fatalf("a does not exist yet: %v", err)
	}
	if _, err := inner.Sync([]string{"i1"}, true); err != nil {
		t.Fatal(err)
	}
	if err := outer.Check("receive"); err != nil {
		t.Fatalf("the parent ferry made for a/s is refused for a: %v", err)
	}
	if _, err := outer.Sync([]string{"o1", "o2"}, true); err != nil {
		t.Fatal(err)
	}
	if got := readThrough(t, outer, Latest); got != "o2" {
		t.Fatalf("a's latest reads %q", got)
	}
	if got := readThrough(t, inner, Latest); got != "i1" {
		t.Fatalf("a/s's latest reads %q", got)
	}
	if got, want := entries(t, outer.Path()), []string{Marker, Latest, "o1", "o2", "s"}; !slices.Equal(got, want) {
		t.Fatalf("a holds %q, want %q", got, want)
	}
	// a's rebuild with nothing left keeps a/s's view.
	if _, err := outer.Sync(nil, false); err != nil {
		t.Fatal(err)
	}
	if got, want := entries(t, outer.Path()), []string{Marker, "s"}; !slices.Equal(got, want) {
		t.Fatalf("a holds %q after its snapshots went, want %q", got, want)
	}
	if got := readThrough(t, inner, Latest); got != "i1" {
		t.Fatalf("a/s's latest reads %q", got)
	}
}

// TestRefusals: a file, a symlink, or a directory of someone's at the
// dataset path, or a symlink as a parent, is a Conflict naming the path,
// and Sync leaves it as it was.
func TestRefusals(t *testing.T) {
	for _, c := range []struct {
		what  string
		make  func(root string) error
		names string // the path the refusal must name, relative to root
	}{
		{"a file", func(r string) error {
			os.Mkdir(filepath.Join(r, "replicas"), 0o755)
			return os.WriteFile(filepath.Join(r, "replicas", "share"), nil, 0o644)
		}, "replicas/share"},
		{"a symlink", func(r string) error {
			os.Mkdir(filepath.Join(r, "replicas"), 0o755)
			return os.Symlink("/etc", filepath.Join(r, "replicas", "share"))
		}, "replicas/share"},
		{"someone's directory", func(r string) error {
			return os.MkdirAll(filepath.Join(r, "replicas", "share"), 0o755)
		}, "replicas/share"},
		{"a symlinked parent", func(r string) error {
			return os.Symlink(t.TempDir(), filepath.Join(r, "replicas"))
		}, "replicas"},
	} {
		t.Run(c.what, func(t *testing.T) {
			root := t.TempDir()
			if err := c.make(root); err != nil {
				t.Fatal(err)
			}
			v := fakeView(t, root, "replicas/share", "s1")
			err := v.Check("receive")
			var se *storage.Error
			if !errors.As(err, &se) || se.Kind != storage.KindConflict || !strings.Contains(err.Error(), filepath.Join(root, c.names)) {
				t.Fatalf("Check: %v, want a Conflict naming %s", err, c.names)
			}
			before := entries(t, filepath.Join(root, "replicas"))
			_, err = v.Sync([]string{"s1"}, true)
			if !errors.As(err, &se) || se.Kind != storage.KindConflict {
				t.Fatalf("Sync over %s: %v, want a Conflict", c.what, err)
			}
			if after := entries(t, filepath.Join(root, "replicas")); !slices.Equal(before, after) {
				t.Fatalf("Sync changed %q into %q", before, after)
			}
		})
	}
}

// TestForeignEntries: inside ferry's view, something of someone's holding a
// snapshot's name or latest is left alone and reported; a leftover
// temporary link of ferry's is removed; an absolute symlink (not ferry's)
// stays.
func TestForeignEntries(t *testing.T) {
	root := t.TempDir()
	cleanup(t, root)
	v := fakeView(t, root, "share", "s1", "s2")
	if _, err := v.Sync([]string{"s1"}, true); err != nil {
		t.Fatal(err)
	}
	os.Chmod(v.Path(), 0o755)
	if err := os.WriteFile(filepath.Join(v.Path(), "s2"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../.ferry/snapshots/share/s1", filepath.Join(v.Path(), tmpPrefix+"left")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(v.Path(), "abs")); err != nil {
		t.Fatal(err)
	}
	skipped, err := v.Sync([]string{"s1", "s2"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(skipped, []string{"s2"}) {
		t.Fatalf("skipped %q, want [s2]", skipped)
	}
	if b, _ := os.ReadFile(filepath.Join(v.Path(), "s2")); string(b) != "mine" {
		t.Fatalf("someone's s2 now reads %q", b)
	}
	if got := readThrough(t, v, Latest); got != "s2" {
		t.Fatalf("latest reads %q, want the newest, s2", got)
	}
	if got, want := entries(t, v.Path()), []string{Marker, "abs", Latest, "s1", "s2"}; !slices.Equal(got, want) {
		t.Fatalf("view holds %q, want %q", got, want)
	}
}

// TestSourceUntouched: Sync never makes a view where a live dataset (a
// directory without the marker) is, nor without create.
func TestSourceUntouched(t *testing.T) {
	root := t.TempDir()
	v := fakeView(t, root, "share", "s1")
	if _, err := v.Sync([]string{"s1"}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(v.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a view was made without create: %v", err)
	}
	if v.Shows("s1") {
		t.Fatal("an absent view shows s1")
	}
	if err := os.Mkdir(v.Path(), 0o755); err != nil {
		t.Fatal(err)
	}
	if !v.Shows("s1") {
		t.Fatal("a live dataset needs a rebuild")
	}
	if err := Refuse("create snapshot", root, "share"); err != nil {
		t.Fatalf("a live dataset is refused as a view: %v", err)
	}
}

// TestRemove: a view of ferry's entries alone goes away whole; one that
// holds someone's file is a Conflict naming it, and stays as it was.
func TestRemove(t *testing.T) {
	root := t.TempDir()
	cleanup(t, root)
	v := fakeView(t, root, "replicas/share", "s1", "s2")
	if _, err := v.Sync([]string{"s1", "s2"}, true); err != nil {
		t.Fatal(err)
	}
	os.Chmod(v.Path(), 0o755)
	if err := os.WriteFile(filepath.Join(v.Path(), "notes"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	before := entries(t, v.Path())
	err := v.Remove("restore")
	var se *storage.Error
	if !errors.As(err, &se) || se.Kind != storage.KindConflict || !strings.Contains(err.Error(), "notes") {
		t.Fatalf("Remove over someone's file: %v", err)
	}
	if after := entries(t, v.Path()); !slices.Equal(before, after) {
		t.Fatalf("a refused Remove changed %q into %q", before, after)
	}
	if err := os.Remove(filepath.Join(v.Path(), "notes")); err != nil {
		t.Fatal(err)
	}
	if err := v.Remove("restore"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(v.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the view is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(v.Target("s2")), "file")); err != nil {
		t.Fatalf("Remove touched a snapshot: %v", err)
	}
}
