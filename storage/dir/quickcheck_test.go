package dir

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/storagetest"
)

// unwrittenFiles counts the files of snapshot name that Verify would take
// unread (as committed: inode, size, mtime and ctime), and all its files.
func unwrittenFiles(t *testing.T, b *Backend, ds, name string) (unread, files int) {
	t.Helper()
	il, err := b.openInodes(ds, name)
	ok(t, err)
	defer il.close()
	m, err := openManifest(b.manifestPath(ds, name))
	ok(t, err)
	defer m.close()
	ok(t, walkTree(b.snapTree(ds, name), func(rel string, fi fs.FileInfo) error {
		se, err := seek(m, rel, nil)
		if err != nil || se == nil || se.Type != typeFile {
			return err
		}
		files++
		if il.unwritten(rel, statInfo(fi), se) {
			unread++
		}
		return nil
	}))
	return unread, files
}

// TestVerifyQuickCheck: Verify takes the files ferry committed and nothing
// wrote since unread, re-reads those whose ctime moved (ferry's own hard
// links move it), and still finds content changed in place with the size,
// mode and mtime put back.
func TestVerifyQuickCheck(t *testing.T) {
	src, dst := newTestBackend(t), newTestBackend(t)
	storagetest.MakeTree(t, src.live("ds"))
	replicate(t, src, dst, "s1", "s2")
	verify := func(name string) error {
		m, okm, err := dst.loadMeta("ds", name)
		ok(t, err)
		if !okm {
			t.Fatalf("no %s", name)
		}
		_, err = dst.Verify(bg, storage.VerifyRequest{Dataset: "ds", Name: name, SourceGUID: m.ReceivedGUID, Digest: m.Digest})
		return err
	}
	if unread, files := unwrittenFiles(t, dst, "ds", "s2"); unread != files || files == 0 {
		t.Fatalf("right after commit %d of %d files are as committed, want all", unread, files)
	}
	ok(t, verify("s2"))
	// Destroying s1 unlinks the files s2 shares with it: their ctime moves,
	// so Verify reads them, and finds them intact.
	ok(t, dst.DestroySnapshot(bg, "ds", "s1"))
	if unread, files := unwrittenFiles(t, dst, "ds", "s2"); unread == files {
		t.Fatalf("after destroying s1 all %d files of s2 are as committed: the destroy moved no ctime?", files)
	}
	ok(t, verify("s2"))
	tamper(t, dst.snapTree("ds", "s2"))
	err := verify("s2")
	wantKind(t, err, storage.KindConflict)
	t.Log(err)
}

// TestBaseChangedInPlaceRefusesIncremental: a base file whose content was
// changed in place (size, mode and mtime put back) since its commit is
// found before a receive links it (its ctime moved, so it is re-read):
// the new snapshot takes its base's hashes unread.
func TestBaseChangedInPlaceRefusesIncremental(t *testing.T) {
	src, dst := newTestBackend(t), newTestBackend(t)
	storagetest.MakeTree(t, src.live("ds"))
	replicate(t, src, dst, "s1")
	storagetest.MutateTree(t, src.live("ds"), 1)
	s2, err := src.CreateSnapshot(bg, "ds", "s2")
	ok(t, err)
	tamper(t, dst.snapTree("ds", "s1"))
	if as, err := dst.Anomalies(bg, "ds"); err != nil || len(as) != 0 {
		t.Fatalf("an in-place change is seen at listing (%+v %v): this test needs one that is not", as, err)
	}
	var buf bytes.Buffer
	ok(t, src.Send(bg, storage.SendRequest{Dataset: "ds", From: "s1", To: "s2"}, &buf))
	_, err = dst.Receive(bg, storage.ReceiveRequest{Dataset: "ds", Name: "s2", SourceGUID: s2.GUID, Parent: "s1"}, storagetest.Stream(t, buf.Bytes(), resume.Position{}))
	wantKind(t, err, storage.KindConflict)
	if !strings.Contains(err.Error(), "changed after commit") {
		t.Fatalf("the refusal does not say what changed: %v", err)
	}
	t.Log(err)
}

// TestCommitInodeListIsTheTrees: the inode list a commit records without
// walking its tree again (taken as its manifest was made) is, line for
// line, the list a walk of the committed tree makes, for a full receive,
// an incremental one (files linked from the base, some rewritten, modes
// changed) and a local snapshot; as root and as a ferry that is not root
// (staged directories kept writable until the commit).
func TestCommitInodeListIsTheTrees(t *testing.T) {
	for _, root := range []bool{true, false} {
		t.Run(fmt.Sprintf("root=%v", root), func(t *testing.T) {
			src, dst := newTestBackend(t), newTestBackend(t)
			src.isRoot, dst.isRoot = src.isRoot && root, dst.isRoot && root
			// Right after each commit: later snapshots linking its files
			// move their ctimes.
			same := func(name string) {
				for _, b := range []*Backend{src, dst} {
					recorded, err := os.ReadFile(b.inodesPath("ds", name))
					ok(t, err)
					ok(t, b.recordInodes("ds", name))
					walked, err := os.ReadFile(b.inodesPath("ds", name))
					ok(t, err)
					if !bytes.Equal(recorded, walked) {
						t.Fatalf("%s's inode list as committed differs from a walk of its tree:\n%s\nwalk:\n%s", name, recorded, walked)
					}
					if n := bytes.Count(recorded, []byte("\n")); n < 10 {
						t.Fatalf("%s's inode list has %d lines: the tree is not the test's", name, n)
					}
				}
			}
			storagetest.MakeTree(t, src.live("ds"))
			replicate(t, src, dst, "s1")
			same("s1")
			storagetest.MutateTree(t, src.live("ds"), 1)
			s2, err := src.CreateSnapshot(bg, "ds", "s2")
			ok(t, err)
			var buf bytes.Buffer
			ok(t, src.Send(bg, storage.SendRequest{Dataset: "ds", From: "s1", To: "s2"}, &buf))
			_, err = dst.Receive(bg, storage.ReceiveRequest{Dataset: "ds", Name: "s2", SourceGUID: s2.GUID, Parent: "s1"}, storagetest.Stream(t, buf.Bytes(), resume.Position{}))
			ok(t, err)
			same("s2")
		})
	}
}

// TestWalksOfALargeDirectory: directories of more entries than a walk
// stats at once (statChunk), where a second goroutine stats them ahead of
// the walk, are snapshotted, received and checked entry for entry: the
// replica verifies, its inode list as committed is the tree's, and a
// change to one entry late in the directory (a mode, content rewritten in
// place) is found by the listing's check and by Verify.
func TestWalksOfALargeDirectory(t *testing.T) {
	src, dst := newTestBackend(t), newTestBackend(t)
	n := 5*statChunk + 7
	for i := range n {
		storagetest.WriteFile(t, filepath.Join(src.live("ds"), "big", fmt.Sprintf("f%04d", i)), []byte(fmt.Sprint(i)), 0o644, 1)
	}
	replicate(t, src, dst, "s1")
	m, okm, err := dst.loadMeta("ds", "s1")
	ok(t, err)
	if !okm || m.Entries != int64(n+2) {
		t.Fatalf("the replica has %d entries (committed %v), want %d", m.Entries, okm, n+2)
	}
	recorded, err := os.ReadFile(dst.inodesPath("ds", "s1"))
	ok(t, err)
	ok(t, dst.recordInodes("ds", "s1"))
	walked, err := os.ReadFile(dst.inodesPath("ds", "s1"))
	ok(t, err)
	if !bytes.Equal(recorded, walked) {
		t.Fatal("the inode list as committed differs from a walk of the tree")
	}
	verify := func() error {
		_, err := dst.Verify(bg, storage.VerifyRequest{Dataset: "ds", Name: "s1", SourceGUID: m.ReceivedGUID, Digest: m.Digest})
		return err
	}
	ok(t, verify())
	late := filepath.Join(dst.snapTree("ds", "s1"), "big", fmt.Sprintf("f%04d", n-3))
	ok(t, os.Chmod(late, 0o404))
	if as, err := dst.Anomalies(bg, "ds"); err != nil || len(as) != 1 || !strings.Contains(as[0].What, fmt.Sprintf("f%04d", n-3)) {
		t.Fatalf("a mode changed late in a large directory: anomalies %+v, %v", as, err)
	}
	wantKind(t, verify(), storage.KindConflict)
	ok(t, os.Chmod(late, 0o444))
	ok(t, verify())
	// Content changed in place, size and times put back.
	fi, err := os.Stat(late)
	ok(t, err)
	ok(t, os.Chmod(late, 0o644))
	ok(t, os.WriteFile(late, []byte(fmt.Sprintf("%0*d", fi.Size(), 0)), 0o644))
	ok(t, os.Chmod(late, 0o444))
	ok(t, os.Chtimes(late, fi.ModTime(), fi.ModTime()))
	wantKind(t, verify(), storage.KindConflict)
}
