package storage

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestComparePathsIsDepthFirst(t *testing.T) {
	want := []string{".", "a", "a/b", "a/b/c", "a/z", "a b", "a-b", "ab", "b"}
	got := slices.Clone(want)
	slices.Reverse(got)
	slices.SortFunc(got, ComparePaths)
	if !slices.Equal(got, want) {
		t.Fatalf("order %q, want %q", got, want)
	}
}

func TestUnixModeRoundTrip(t *testing.T) {
	for _, u := range []uint32{0, 0o644, 0o4755, 0o2775, 0o1777, 0o7777} {
		if got := UnixMode(FileMode(u)); got != u {
			t.Errorf("%o -> %o", u, got)
		}
	}
}

func TestTreeDigest(t *testing.T) {
	mk := func() string {
		root := t.TempDir()
		must(t, os.MkdirAll(filepath.Join(root, "d/e"), 0o755))
		must(t, os.WriteFile(filepath.Join(root, "d/f"), []byte("hello"), 0o640))
		must(t, os.Symlink("d/f", filepath.Join(root, "l")))
		ts := time.Unix(1700000000, 123456789)
		must(t, os.Chtimes(filepath.Join(root, "d/f"), ts, ts))
		tsp := []unix.Timespec{unix.NsecToTimespec(ts.UnixNano()), unix.NsecToTimespec(ts.UnixNano())}
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(root, "l"), tsp, unix.AT_SYMLINK_NOFOLLOW))
		return root
	}
	a, b := mk(), mk()
	da, err := TreeDigest(a, nil)
	must(t, err)
	// Directory mtimes are not covered.
	must(t, os.Chtimes(filepath.Join(b, "d"), time.Unix(1, 0), time.Unix(1, 0)))
	db, err := TreeDigest(b, nil)
	must(t, err)
	if da != db {
		t.Fatalf("equal trees differ: %s %s", da, db)
	}
	changes := []func(root string){
		func(r string) { must(t, os.WriteFile(filepath.Join(r, "d/f"), []byte("hellO"), 0o640)) },
		func(r string) { must(t, os.Chmod(filepath.Join(r, "d/f"), 0o600)) },
		func(r string) { must(t, os.Chtimes(filepath.Join(r, "d/f"), time.Unix(5, 1), time.Unix(5, 1))) },
		func(r string) {
			must(t, os.Remove(filepath.Join(r, "l")))
			must(t, os.Symlink("d/e", filepath.Join(r, "l")))
		},
		func(r string) { must(t, os.Mkdir(filepath.Join(r, "d/e/x"), 0o755)) },
		func(r string) { must(t, os.Chmod(filepath.Join(r, "d"), 0o755|fs.ModeSetgid)) },
	}
	for i, change := range changes {
		c := mk()
		change(c)
		dc, err := TreeDigest(c, nil)
		must(t, err)
		if dc == da {
			t.Errorf("change %d not detected", i)
		}
	}
	// modeOf overrides the on-disk mode.
	c := mk()
	must(t, os.Chmod(filepath.Join(c, "d/f"), 0o440))
	dc, err := TreeDigest(c, func(rel string, fi fs.FileInfo) fs.FileMode {
		if rel == "d/f" {
			return 0o640
		}
		return fi.Mode()
	})
	must(t, err)
	if dc != da {
		t.Fatalf("modeOf not applied")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
