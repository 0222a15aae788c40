package storagetest

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
)

// What a NAS share carries beyond file bytes, which every backend keeps:
// hard links, extended attributes, POSIX ACLs and sparse files.

// Paths of MakeTree's fidelity content.
const (
	HardLinkA  = "links/a" // with links/b and other-dir/c: one inode, three paths
	HardLinkB  = "links/b"
	HardLinkC  = "other-dir/c"
	SparseFile = "sparse.img" // 8 MiB: a hole, 64 KiB of data at 1 MiB, a hole
	HoleFile   = "all-hole"   // 1 MiB, no data at all
	xattrFile  = "attrs/file"
	xattrDir   = "attrs"
	aclFile    = "attrs/acl-file"
	aclDir     = "attrs/acl-dir"
)

const sparseSize = 8 << 20

// ACL encodes a POSIX ACL as its system.posix_acl_* xattr value: owner
// with perm owner, named user uid with perm user, group r, mask, other none.
func ACL(owner uint16, uid uint32, user, mask uint16) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	const none = 0xffffffff
	for _, e := range []struct {
		tag, perm uint16
		id        uint32
	}{{0x01, owner, none}, {0x02, user, uid}, {0x04, 4, none}, {0x10, mask, none}, {0x20, 0, none}} {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b
}

// SetXattr sets an extended attribute (not following a symlink).
func SetXattr(t testing.TB, p, name string, value []byte) {
	t.Helper()
	if err := unix.Lsetxattr(p, name, value, 0); err != nil {
		t.Fatalf("set xattr %s on %s: %v", name, p, err)
	}
}

// makeFidelity adds MakeTree's hard links, xattrs, ACLs and sparse files
// (security.* and trusted.* only as root).
func makeFidelity(t testing.TB, root string) {
	t.Helper()
	p := func(rel string) string { return filepath.Join(root, filepath.FromSlash(rel)) }
	WriteFile(t, p(HardLinkA), []byte("one inode, three names\n"), 0o644, 60)
	must(t, os.MkdirAll(p("other-dir"), 0o755))
	must(t, os.Link(p(HardLinkA), p(HardLinkB)))
	must(t, os.Link(p(HardLinkA), p(HardLinkC)))
	WriteFile(t, p("links/x"), []byte("two names\n"), 0o600, 61)
	must(t, os.Link(p("links/x"), p("links/y")))
	WriteFile(t, p(xattrFile), []byte("with xattrs\n"), 0o644, 62)
	WriteFile(t, p(aclFile), []byte("with an ACL\n"), 0o640, 63)
	must(t, os.Mkdir(p(aclDir), 0o750))
	if XattrsSupported(root) {
		makeXattrs(t, p)
	}
	WriteFile(t, p(aclDir+"/inherits"), []byte("inherits the default ACL\n"), 0o640, 64)
	SetMtime(t, p(aclDir), baseTime)
	SetMtime(t, p(xattrDir), baseTime)
	SetMtime(t, p("links"), baseTime)
	SetMtime(t, p("other-dir"), baseTime)
	makeSparse(t, p)
}

// makeXattrs adds MakeTree's xattrs and ACLs.
func makeXattrs(t testing.TB, p func(string) string) {
	SetXattr(t, p("links/x"), "user.on-a-link", []byte("shared by both names"))
	SetXattr(t, p(xattrFile), "user.comment", []byte("hello"))
	SetXattr(t, p(xattrFile), "user.binary", []byte{0, 1, 2, 0xff, 0})
	SetXattr(t, p(xattrFile), "user.DOSATTRIB", []byte("0x20\x00"))
	SetXattr(t, p(xattrFile), "user.empty", nil)
	SetXattr(t, p(xattrDir), "user.on-a-dir", []byte("dir"))
	SetXattr(t, p(aclFile), storage.ACLAccess, ACL(6, 1234, 6, 6))
	SetXattr(t, p(aclDir), storage.ACLAccess, ACL(7, 1234, 7, 7))
	SetXattr(t, p(aclDir), storage.ACLDefault, ACL(7, 4321, 6, 6))
	if IsRoot() {
		SetXattr(t, p(xattrFile), "security.NTACL", Random(9, 200))
		SetXattr(t, p(xattrFile), "trusted.ferry-test", []byte("trusted"))
	}
}

// makeSparse adds MakeTree's sparse and all-hole files.
func makeSparse(t testing.TB, p func(string) string) {
	f, err := os.OpenFile(p(SparseFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	must(t, err)
	_, err = f.WriteAt(Random(10, 64<<10), 1<<20)
	must(t, err)
	must(t, f.Truncate(sparseSize))
	must(t, f.Close())
	SetMtime(t, p(SparseFile), baseTime)
	f, err = os.OpenFile(p(HoleFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	must(t, err)
	must(t, f.Truncate(1<<20))
	must(t, f.Close())
	SetMtime(t, p(HoleFile), baseTime)
}

// mutateFidelity changes the fidelity content for MutateTree's step 1: a
// new link to an existing inode, a name of a group removed, changed and
// removed xattrs, a changed ACL, a grown sparse file.
func mutateFidelity(t testing.TB, root string) {
	t.Helper()
	p := func(rel string) string { return filepath.Join(root, filepath.FromSlash(rel)) }
	must(t, os.Link(p(HardLinkA), p("links/d")))
	must(t, os.Remove(p("links/y")))
	if XattrsSupported(root) {
		SetXattr(t, p(xattrFile), "user.comment", []byte("changed"))
		must(t, unix.Lremovexattr(p(xattrFile), "user.binary"))
		SetXattr(t, p(aclFile), storage.ACLAccess, ACL(6, 1234, 4, 4))
	}
	f, err := os.OpenFile(p(SparseFile), os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt(Random(11, 4096), 12<<20)
	must(t, err)
	must(t, f.Truncate(16<<20))
	must(t, f.Close())
	SetMtime(t, p(SparseFile), baseTime.Add(100))
	SetMtime(t, p("links"), baseTime)
}

// XattrsSupported reports whether the filesystem holding dir keeps user.*
// extended attributes (zfs-fuse, for one, refuses them all).
func XattrsSupported(dir string) bool {
	f, err := os.CreateTemp(dir, ".xattr-probe-")
	if err != nil {
		return true // let the tree's own writes say what is wrong
	}
	defer os.Remove(f.Name())
	defer f.Close()
	err = unix.Fsetxattr(int(f.Fd()), "user.ferry-probe", []byte("1"), 0)
	return !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EOPNOTSUPP)
}

// allocated is the space p takes on disk.
func allocated(t testing.TB, p string) int64 {
	t.Helper()
	fi, err := os.Lstat(p)
	must(t, err)
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

// checkFidelity checks a snapshot's tree (a received one) for what
// ContentDigest does not show: holes are still holes.
func checkFidelity(t testing.TB, h *Harness, side Side, ds, name string) {
	t.Helper()
	if h.SnapshotPath == nil {
		return
	}
	tree := h.SnapshotPath(side, ds, name)
	live := h.LivePath(Source, SourceDataset)
	for _, f := range []string{SparseFile, HoleFile} {
		fi, err := os.Lstat(filepath.Join(tree, f))
		must(t, err)
		if got, want := allocated(t, filepath.Join(tree, f)), allocated(t, filepath.Join(live, f)); want < fi.Size()/2 && got > 2*want+(256<<10) {
			t.Errorf("%s of %s on the %s holds %d bytes on disk, the source %d of %d: its holes were filled", f, name, side, got, want, fi.Size())
		} else if want >= fi.Size()/2 {
			t.Logf("the source filesystem keeps no holes in %s (%d of %d bytes allocated); not checked", f, want, fi.Size())
		}
	}
	a, b, c := inode(t, filepath.Join(tree, HardLinkA)), inode(t, filepath.Join(tree, HardLinkB)), inode(t, filepath.Join(tree, HardLinkC))
	if a != b || a != c {
		t.Errorf("%s, %s and %s of %s on the %s are not one inode (%d %d %d)", HardLinkA, HardLinkB, HardLinkC, name, side, a, b, c)
	}
}

// testFidelity round-trips hard links, xattrs, ACLs and sparse files through
// a full and an incremental receive, and shows that ContentDigest (verify:
// deep) tells a changed xattr and a broken hard link.
func testFidelity(t *testing.T, h *Harness) {
	live := source(t, h)
	switch ok := XattrsSupported(live); {
	case !ok && !h.NoXattrs:
		t.Fatal("the source's filesystem refuses extended attributes: the harness must run on one that keeps them, or say NoXattrs")
	case !ok:
		t.Log("the filesystem holds no xattrs or ACLs (NoXattrs): hard links and sparse files only")
	}
	s1 := snapshot(t, h, "snap1")
	checkFidelity(t, h, Source, SourceDataset, "snap1")
	receive(t, h, sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap1"}), s1, "", "")
	checkFidelity(t, h, Target, TargetDataset, "snap1")

	MutateTree(t, live, 1)
	s2 := snapshot(t, h, "snap2")
	checkFidelity(t, h, Source, SourceDataset, "snap2")
	data := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, From: "snap1", To: "snap2"})
	got, err := h.Target.Receive(ctx, storage.ReceiveRequest{Dataset: TargetDataset, Name: "snap2", SourceGUID: s2.GUID, Parent: "snap1"}, Stream(t, data, resume.Position{}))
	must(t, err)
	checkReceived(t, h, got, s2, s1.GUID)
	checkFidelity(t, h, Target, TargetDataset, "snap2")
	if h.SnapshotPath != nil {
		tree := h.SnapshotPath(Target, TargetDataset, "snap2")
		if inode(t, filepath.Join(tree, "links/d")) != inode(t, filepath.Join(tree, HardLinkA)) {
			t.Error("the link added in snap2 is a copy on the target")
		}
	}

	// The digest tells a changed xattr (where the snapshot can be changed
	// at all: a btrfs snapshot is a read-only subvolume).
	if h.SnapshotPath == nil {
		return
	}
	want := digestOf(t, h.Source, SourceDataset, "snap2")
	p := filepath.Join(h.SnapshotPath(Target, TargetDataset, "snap2"), xattrFile)
	if err := unix.Lsetxattr(p, "user.comment", []byte("tampered"), 0); err != nil {
		t.Logf("cannot change an xattr in a received snapshot (%v); the digest's coverage is shown by storage's own tests", err)
		return
	}
	if d, err := h.Target.ContentDigest(ctx, TargetDataset, "snap2"); err == nil && d == want {
		t.Fatal("ContentDigest did not notice a changed xattr")
	}
	_, err = h.Target.Verify(ctx, storage.VerifyRequest{Dataset: TargetDataset, Name: "snap2", SourceGUID: s2.GUID, ParentSourceGUID: s1.GUID, Digest: s2.Digest})
	kindIs(t, err, storage.KindConflict)
	// A hard link broken into a copy with the same content, mode and times.
	must(t, unix.Lsetxattr(p, "user.comment", []byte("changed"), 0))
	if d := digestOf(t, h.Target, TargetDataset, "snap2"); d != want {
		t.Fatalf("putting the xattr back did not restore the digest: %s, want %s", d, want)
	}
	b := filepath.Join(h.SnapshotPath(Target, TargetDataset, "snap2"), HardLinkB)
	fi, err := os.Lstat(b)
	must(t, err)
	content, err := os.ReadFile(b)
	must(t, err)
	must(t, os.Remove(b))
	must(t, os.WriteFile(b, content, 0o600))
	must(t, os.Chmod(b, fi.Mode()))
	SetMtime(t, b, fi.ModTime())
	if d, err := h.Target.ContentDigest(ctx, TargetDataset, "snap2"); err == nil && d == want {
		t.Fatal("ContentDigest did not notice a hard link replaced by a copy")
	}
	names, err := listXattrNames(p)
	must(t, err)
	if !slices.Contains(names, "user.comment") {
		t.Fatalf("xattrs of %s: %q", p, names)
	}
}

func listXattrNames(p string) ([]string, error) {
	xs, err := storage.ReadXattrs(p)
	var out []string
	for _, x := range xs {
		out = append(out, x.Name)
	}
	return out, err
}
