package loopfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/internal/prereq"
)

func need(t *testing.T) {
	prereq.Need(t, "btrfs", prereq.All(prereq.Root, prereq.Commands("mkfs.btrfs", "losetup"), prereq.Filesystem("btrfs"), prereq.LoopDevices))
}

func isBtrfs(t *testing.T, p string) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.BTRFS_SUPER_MAGIC {
		t.Fatalf("%s is not btrfs (type %#x)", p, st.Type)
	}
}

func TestCreateClose(t *testing.T) {
	need(t)
	f, err := Create(t.TempDir(), 256<<20)
	if err != nil {
		t.Fatal(err)
	}
	isBtrfs(t, f.Mountpoint)
	if err := os.WriteFile(filepath.Join(f.Mountpoint, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if backingFile(f.Device) != f.Image {
		t.Fatalf("%s is not backed by %s", f.Device, f.Image)
	}
	// A file held open keeps the mount busy: Close falls back to a lazy unmount.
	busy, err := os.Open(filepath.Join(f.Mountpoint, "x"))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if mounted(f.Mountpoint) {
		t.Fatal("still mounted after Close")
	}
	if _, err := os.Stat(f.Dir); !os.IsNotExist(err) {
		t.Fatalf("directory left behind: %v", err)
	}
	busy.Close()
	if b := backingFile(f.Device); b == f.Image {
		// A lazily unmounted busy device is detached once the last user goes.
		if _, err := run("losetup", "--detach", f.Device); err != nil && backingFile(f.Device) == f.Image {
			t.Fatalf("loop device %s still attached to %s", f.Device, f.Image)
		}
	}
}

func TestNewCleansUpWithTheTest(t *testing.T) {
	need(t)
	var mnt string
	t.Run("inner", func(t *testing.T) {
		mnt = New(t, 256<<20)
		isBtrfs(t, mnt)
	})
	if mounted(mnt) {
		t.Fatalf("%s still mounted after the test that made it", mnt)
	}
}

func TestReapStale(t *testing.T) {
	need(t)
	dir := t.TempDir()
	f, err := Create(dir, 256<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	live, err := Create(dir, 256<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { live.Close() })
	// Pretend f's creator crashed long ago: pid 1 never has our start time.
	if err := os.WriteFile(filepath.Join(f.Dir, ownerFile), []byte("1 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reaped, err := ReapStale(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(reaped) != 1 || reaped[0] != f.Dir {
		t.Fatalf("reaped %q, want only %s", reaped, f.Dir)
	}
	if mounted(f.Mountpoint) || backingFile(f.Device) == f.Image {
		t.Fatal("the stale filesystem is still mounted or attached")
	}
	if !mounted(live.Mountpoint) {
		t.Fatal("a live process's filesystem was reaped")
	}
	if !strings.HasPrefix(filepath.Base(live.Dir), Prefix) {
		t.Fatalf("directory %s lacks the prefix", live.Dir)
	}
}

func TestUnescape(t *testing.T) {
	if got := unescape(`/a\040b\011c\134d`); got != "/a b\tc\\d" {
		t.Fatalf("unescape: %q", got)
	}
}

func TestCreateExt4(t *testing.T) {
	// What the btrfs tests need, less btrfs: mkfs.ext4 is e2fsprogs's.
	prereq.Need(t, "btrfs", prereq.All(prereq.Root, prereq.Commands("mkfs.ext4", "losetup"), prereq.LoopDevices))
	f, err := CreateFS(t.TempDir(), 256<<20, "ext4")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Statfs(f.Mountpoint, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.EXT4_SUPER_MAGIC {
		t.Fatalf("%s is not ext4 (type %#x)", f.Mountpoint, st.Type)
	}
	// An inode per 4 KiB, for trees of many small files.
	if st.Files < 60000 {
		t.Fatalf("%d inodes on 256 MiB: want one per 4 KiB", st.Files)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.Dir); !os.IsNotExist(err) {
		t.Fatalf("directory left behind: %v", err)
	}
}

func TestCreateRefusesUnknownFilesystem(t *testing.T) {
	_, err := CreateFS(t.TempDir(), 256<<20, "xfs")
	if err == nil || !strings.Contains(err.Error(), `"xfs"`) {
		t.Fatalf("CreateFS xfs: %v, want an error naming it", err)
	}
}
