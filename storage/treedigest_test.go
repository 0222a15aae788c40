package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"
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
		// xattrs, on a file and on a directory, and an ACL.
		func(r string) { must(t, unix.Lsetxattr(filepath.Join(r, "d/f"), "user.k", []byte("v"), 0)) },
		func(r string) { must(t, unix.Lsetxattr(filepath.Join(r, "d/e"), "user.k", []byte("v"), 0)) },
		func(r string) { must(t, unix.Lsetxattr(filepath.Join(r, "d/f"), ACLAccess, testACL(0o6, 0o4), 0)) },
		// A hard link where the other tree has a copy of the same file.
		func(r string) { must(t, os.Link(filepath.Join(r, "d/f"), filepath.Join(r, "d/g"))) },
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
	// A copy where the other tree has a hard link.
	x, y := mk(), mk()
	must(t, os.Link(filepath.Join(x, "d/f"), filepath.Join(x, "d/g")))
	data, err := os.ReadFile(filepath.Join(y, "d/f"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(y, "d/g"), data, 0o640))
	must(t, os.Chmod(filepath.Join(y, "d/g"), 0o640))
	ts := time.Unix(1700000000, 123456789)
	must(t, os.Chtimes(filepath.Join(y, "d/g"), ts, ts))
	dx, err := TreeDigest(x, nil)
	must(t, err)
	dy, err := TreeDigest(y, nil)
	must(t, err)
	if dx == dy {
		t.Errorf("a hard link and a copy digest the same")
	}
	// Removing write bits from a file with an ACL rewrites its mask; with the
	// true mode given by modeOf the digest is unchanged.
	x, y = mk(), mk()
	for _, r := range []string{x, y} {
		must(t, unix.Lsetxattr(filepath.Join(r, "d/f"), ACLAccess, testACL(0o6, 0o6), 0))
		must(t, os.Chmod(filepath.Join(r, "d/f"), 0o660))
	}
	must(t, os.Chmod(filepath.Join(y, "d/f"), 0o440))
	dx, err = TreeDigest(x, nil)
	must(t, err)
	dy, err = TreeDigest(y, func(rel string, fi fs.FileInfo) fs.FileMode {
		if rel == "d/f" {
			return 0o660
		}
		return fi.Mode()
	})
	must(t, err)
	if dx != dy {
		t.Errorf("an ACL's mask, rewritten by chmod, changed the digest")
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

// testACL is a system.posix_acl_access value: owner rw, user 1234 with
// perm user, group r, mask with perm mask, other none.
func testACL(user, mask uint16) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range []struct {
		tag, perm uint16
		id        uint32
	}{{0x01, 6, 0xffffffff}, {0x02, user, 1234}, {0x04, 4, 0xffffffff}, {0x10, mask, 0xffffffff}, {0x20, 0, 0xffffffff}} {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestTreeDigestIsStable pins the digest of a fixed tree: digests recorded
// by one version are compared with those another computes (across hosts,
// across upgrades), so its format and order must never change by accident.
// The tree has enough files, of sizes around the read buffer's, in nested
// directories, with a symlink and hard links, for the order of the lines to
// matter however the content sums are computed.
func TestTreeDigestIsStable(t *testing.T) {
	root := t.TempDir()
	ts := time.Unix(1700000000, 123456789)
	for i := range 300 {
		dir := filepath.Join(root, fmt.Sprintf("d%d", i%7), fmt.Sprintf("e%d", i%3))
		must(t, os.MkdirAll(dir, 0o755))
		p := filepath.Join(dir, fmt.Sprintf("f%03d", i))
		data := bytes.Repeat([]byte{byte(i), byte(i >> 8), 'x'}, (i*997)%(300<<10)/3)
		must(t, os.WriteFile(p, data, 0o644))
		must(t, os.Chmod(p, fs.FileMode(0o600+i%2*0o44)))
		must(t, os.Chtimes(p, ts.Add(time.Duration(i)*time.Second), ts.Add(time.Duration(i)*time.Second)))
	}
	must(t, os.Link(filepath.Join(root, "d1/e1/f001"), filepath.Join(root, "d0/h")))
	must(t, os.Link(filepath.Join(root, "d1/e1/f001"), filepath.Join(root, "d6/h")))
	must(t, os.Symlink("d1/e1/f001", filepath.Join(root, "l")))
	tsp := []unix.Timespec{unix.NsecToTimespec(ts.UnixNano()), unix.NsecToTimespec(ts.UnixNano())}
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(root, "l"), tsp, unix.AT_SYMLINK_NOFOLLOW))
	must(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			err = os.Chmod(p, 0o755)
		}
		return err
	}))
	const want = "sha256:552d5c56d3dc5329e0cd06369e1e40f5db286691cc63f32f10cb8718f51fd20c"
	got, err := TreeDigest(root, nil)
	must(t, err)
	if got != want {
		t.Fatalf("the tree digest's format changed: got %s, want %s", got, want)
	}
}
