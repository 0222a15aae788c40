package dir

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferry-nas/ferry/internal/loopfs"
	"github.com/ferry-nas/ferry/internal/prereq"
	"github.com/ferry-nas/ferry/internal/sampleshare"
	"github.com/ferry-nas/ferry/storage"
)

// TestReflinkOnBtrfs runs the real FICLONE path, which the other tests can
// only reach through a stand-in: on a filesystem that supports reflinks,
// every file of a snapshot is cloned, none is copied, and the snapshot's
// content is the live tree's.
func TestReflinkOnBtrfs(t *testing.T) {
	prereq.Need(t, "btrfs", prereq.All(prereq.Root, prereq.Commands("mkfs.btrfs", "losetup"), prereq.Filesystem("btrfs"), prereq.LoopDevices))
	root := loopfs.New(t, 256<<20)
	live := filepath.Join(root, "share")
	if err := os.MkdirAll(live, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := sampleshare.Write(live, 8<<20, 3); err != nil {
		t.Fatal(err)
	}
	b, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	var cloned, failed int
	b.clone = func(dst, src *os.File) error {
		err := ficlone(dst, src)
		if err != nil {
			failed++
		} else {
			cloned++
		}
		return err
	}
	snap, err := b.CreateSnapshot(context.Background(), "share", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if cloned == 0 || failed != 0 || !b.reflink.Load() {
		t.Fatalf("reflink on btrfs: %d files cloned, %d clones failed, reflink still on: %v", cloned, failed, b.reflink.Load())
	}
	got, err := b.ContentDigest(context.Background(), "share", snap.Name)
	if err != nil {
		t.Fatal(err)
	}
	want, err := storage.TreeDigest(live, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("the cloned snapshot's digest %s differs from the live tree's %s", got, want)
	}
}
