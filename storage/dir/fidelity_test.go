package dir

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/storagetest"
)

// TestRootDefaultACLIsNotInherited: roots whose directory has a default
// ACL (a Samba share set up to inherit ACLs) pass it on to everything ferry
// creates under .ferry. Snapshot copies and received entries must still get
// exactly the attributes of their source: the snapshot equals the live
// tree, Send does not see a changed snapshot, and the replica equals the
// source after a full and an incremental receive.
func TestRootDefaultACLIsNotInherited(t *testing.T) {
	withDefaultACL := func() *Backend {
		root := t.TempDir()
		t.Cleanup(func() { removeTree(root) })
		storagetest.SetXattr(t, root, storage.ACLDefault, storagetest.ACL(7, 1234, 7, 7))
		b, err := New(root)
		ok(t, err)
		return b
	}
	src, dst := withDefaultACL(), withDefaultACL()
	live := src.live("ds")
	ok(t, os.Mkdir(live, 0o755))
	// The live tree itself inherits nothing: its entries have no ACL.
	ok(t, unix.Lremovexattr(live, storage.ACLDefault))
	ok(t, unix.Lremovexattr(live, storage.ACLAccess))
	storagetest.WriteFile(t, filepath.Join(live, "dir/file"), []byte("plain"), 0o644, 1)
	storagetest.WriteFile(t, filepath.Join(live, "top"), []byte("plain too"), 0o600, 2)
	storagetest.SetXattr(t, filepath.Join(live, "top"), "user.k", []byte("v"))

	ctx := bg
	var parent string
	var parentGUID string
	for i, name := range []string{"s1", "s2"} {
		if i == 1 {
			storagetest.WriteFile(t, filepath.Join(live, "dir/new"), []byte("new"), 0o644, 3)
			ok(t, os.Mkdir(filepath.Join(live, "newdir"), 0o755))
		}
		snap, err := src.CreateSnapshot(ctx, "ds", name)
		ok(t, err)
		want, err := storage.TreeDigest(live, nil)
		ok(t, err)
		if got := mustDigest(t, src, "ds", name); got != want {
			t.Fatalf("%s: the snapshot differs from the live tree (inherited ACLs?)", name)
		}
		var stream bytes.Buffer
		ok(t, src.Send(ctx, storage.SendRequest{Dataset: "ds", From: parent, To: name}, &stream))
		_, err = dst.Receive(ctx, storage.ReceiveRequest{Dataset: "rep", Name: name, SourceGUID: snap.GUID, Parent: parent},
			storagetest.Stream(t, stream.Bytes(), resume.Position{}))
		ok(t, err)
		if got := mustDigest(t, dst, "rep", name); got != want {
			t.Fatalf("%s: the replica differs from the source (inherited ACLs?)", name)
		}
		_, err = dst.Verify(ctx, storage.VerifyRequest{Dataset: "rep", Name: name, SourceGUID: snap.GUID, ParentSourceGUID: parentGUID, Digest: snap.Digest})
		ok(t, err)
		parent, parentGUID = name, snap.GUID
	}
}

// TestUnchangedFileWithoutItsXattrsIsCopied: a snapshot made before ferry
// kept xattrs has copies without them (and manifest lines without x=). The
// next snapshot must not hard-link such a copy for a live file that has
// xattrs but is otherwise unchanged: it copies it, xattrs and all.
func TestUnchangedFileWithoutItsXattrsIsCopied(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to change a read-only snapshot as an older ferry left it")
	}
	b := newTestBackend(t)
	live := b.live("ds")
	storagetest.WriteFile(t, filepath.Join(live, "dos"), []byte("a Samba file"), 0o644, 1)
	storagetest.SetXattr(t, filepath.Join(live, "dos"), "user.DOSATTRIB", []byte("0x20\x00"))
	storagetest.WriteFile(t, filepath.Join(live, "plain"), []byte("no xattrs"), 0o644, 2)
	_, err := b.CreateSnapshot(bg, "ds", "s1")
	ok(t, err)
	// Make s1 what an older ferry made: no xattr on the copy, none in the manifest.
	old := filepath.Join(b.snapTree("ds", "s1"), "dos")
	ok(t, unix.Lremovexattr(old, "user.DOSATTRIB"))
	man, err := os.ReadFile(b.manifestPath("ds", "s1"))
	ok(t, err)
	stripped := regexp.MustCompile(` x=[0-9a-f]+`).ReplaceAll(man, nil)
	if bytes.Equal(stripped, man) {
		t.Fatal("s1's manifest records no xattrs")
	}
	ok(t, os.WriteFile(b.manifestPath("ds", "s1"), stripped, 0o600))

	_, err = b.CreateSnapshot(bg, "ds", "s2")
	ok(t, err)
	want, err := storage.TreeDigest(live, nil)
	ok(t, err)
	if got := mustDigest(t, b, "ds", "s2"); got != want {
		t.Fatal("s2 differs from the live tree: the unchanged file's copy without its xattr was reused")
	}
	if ino(t, old) == ino(t, filepath.Join(b.snapTree("ds", "s2"), "dos")) {
		t.Error("the copy without xattrs was hard-linked into s2")
	}
	if ino(t, filepath.Join(b.snapTree("ds", "s1"), "plain")) != ino(t, filepath.Join(b.snapTree("ds", "s2"), "plain")) {
		t.Error("an unchanged file without xattrs was copied instead of hard-linked")
	}
}
