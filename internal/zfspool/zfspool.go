// Package zfspool makes throw-away ZFS pools on sparse files for tests
// (zfs-fuse or OpenZFS): each is named ferrytest<pid>x<random>, mounted
// under the test's temp dir and destroyed with its image on cleanup; pools
// of test processes that died before their cleanup are reaped.
package zfspool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/internal/prereq"
	"github.com/ferry-nas/ferry/internal/zfsimage"
)

// Prefix starts the name of every test pool.
const Prefix = "ferrytest"

// Need skips the test (or fails it, with FERRY_REQUIRE naming zfs) without
// root, the zfs tools or a running ZFS service (zfs-fuse's daemon).
func Need(t testing.TB) {
	t.Helper()
	prereq.Need(t, "zfs", prereq.All(prereq.Root, prereq.Commands("zfs", "zpool"), func() error {
		if out, err := exec.Command("zpool", "list", "-H").CombinedOutput(); err != nil {
			return fmt.Errorf("zpool list: %v: %s (start zfs-fuse, or load the zfs module)", err, strings.TrimSpace(string(out)))
		}
		return nil
	}))
}

// Pool is a test pool.
type Pool struct {
	Name  string
	Mount string // where the pool's top dataset is mounted
}

// lockPath serialises the tests that use ZFS across test processes:
// zfs-fuse deadlocks (mounts stop answering, `zfs create` hangs in the
// kernel) when two processes create and mount pools at once, which
// `go test ./...` does by running packages in parallel.
var lockPath = filepath.Join(os.TempDir(), Prefix+"-zfs.lock")

var (
	lockMu sync.Mutex
	locked = map[testing.TB]bool{}
)

// serialise holds the cross-process lock for the rest of t (released by a
// cleanup that runs after every pool of t is destroyed).
func serialise(t testing.TB) {
	t.Helper()
	lockMu.Lock()
	defer lockMu.Unlock()
	if locked[t] {
		return
	}
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("zfs test lock: %v", err)
	}
	start := time.Now()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("zfs test lock %s: %v", lockPath, err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Logf("waited %v for the other ZFS tests (%s)", waited.Round(time.Second), lockPath)
	}
	locked[t] = true
	t.Cleanup(func() {
		f.Close() // releases the flock
		lockMu.Lock()
		delete(locked, t)
		lockMu.Unlock()
	})
}

// Lock holds the ZFS test lock for the rest of t, for a test whose code
// under test makes its own pools (the zfs demo): no other test process
// makes or mounts pools meanwhile.
func Lock(t testing.TB) { serialise(t) }

// New makes a pool of size bytes (at least 64 MiB) on a sparse file. The
// test holds the ZFS test lock from its first pool to its end.
func New(t testing.TB, size int64) Pool {
	t.Helper()
	serialise(t)
	ReapStale(t)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := fmt.Sprintf("%s%dx%s", Prefix, os.Getpid(), hex.EncodeToString(rnd[:]))
	img := filepath.Join(os.TempDir(), name+".img")
	mount := filepath.Join(t.TempDir(), "mnt")
	t.Cleanup(func() {
		if err := zfsimage.Destroy(name); err != nil {
			t.Errorf("%v", err)
		}
		os.Remove(img)
	})
	if err := zfsimage.Create(context.Background(), name, img, mount, size); err != nil {
		t.Fatal(err)
	}
	return Pool{Name: name, Mount: mount}
}

// ReapStale destroys test pools whose process is gone, and their images.
func ReapStale(t testing.TB) {
	out, err := exec.Command("zpool", "list", "-H", "-o", "name").Output()
	if err != nil {
		return
	}
	for _, name := range strings.Fields(string(out)) {
		rest, ok := strings.CutPrefix(name, Prefix)
		if !ok {
			continue
		}
		pid, _, _ := strings.Cut(rest, "x")
		n, err := strconv.Atoi(pid)
		if err != nil || n == os.Getpid() || syscall.Kill(n, 0) == nil {
			continue
		}
		if err := zfsimage.Destroy(name); err != nil {
			t.Logf("reaping stale pool: %v", err)
			continue
		}
		os.Remove(filepath.Join(os.TempDir(), name+".img"))
		t.Logf("reaped stale test pool %s", name)
	}
}

// Zfs runs zfs with args and returns its output; a failure fails the test.
func Zfs(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("zfs", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("zfs %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
