package demo

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-nas/ferry/internal/zfspool"
)

// TestDemoZFS runs the demo on the zfs backend (two pools on sparse files):
// both runs succeed, the incremental moves far less than the full, the
// digests match, and nothing of the demo is left: no pool, no mount.
func TestDemoZFS(t *testing.T) {
	zfspool.Need(t)
	zfspool.Lock(t) // the demo makes pools: not while another test does
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	dir := t.TempDir()
	res, err := Run(ctx, Options{Dir: dir, ShareSize: 24 << 20, Address: "127.0.0.1:0", UIAddress: "127.0.0.1:0", Out: &out, Backend: "zfs"})
	t.Cleanup(func() { destroyLeft(t, res.Pools) })
	require.NoError(t, err, "demo output:\n%s", out.String())
	require.Equal(t, res.SourceDigest, res.TargetDigest)
	require.Less(t, res.IncrBytes*4, res.FullBytes, "the incremental moved too much")
	require.Contains(t, out.String(), "zfs backend")
	require.Contains(t, out.String(), "source and target are identical.")
	require.Len(t, res.Pools, 2)
	pools, err := exec.Command("zpool", "list", "-H", "-o", "name").Output()
	require.NoError(t, err)
	for _, p := range res.Pools {
		require.NotContains(t, strings.Fields(string(pools)), p, "the demo's pool is still there")
	}
	mounts, err := os.ReadFile("/proc/self/mounts")
	require.NoError(t, err)
	require.NotContains(t, string(mounts), dir, "a demo dataset is still mounted")
	imgs, _ := filepath.Glob(filepath.Join(dir, "*.img"))
	require.Empty(t, imgs, "the pools' images are still there")
}

// TestDemoZFSKeep: with --keep the demo says where the replica is and which
// pools it leaves and how to remove them; they are still there after it
// stops, and the printed command removes them.
func TestDemoZFSKeep(t *testing.T) {
	zfspool.Need(t)
	zfspool.Lock(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out := &syncBuffer{}
	dir := t.TempDir()
	var res Result
	done := make(chan error, 1)
	go func() {
		var err error
		res, err = Run(ctx, Options{Dir: dir, ShareSize: 16 << 20, Address: "127.0.0.1:0", UIAddress: "127.0.0.1:0", Out: out, Backend: "zfs", Keep: true})
		done <- err
	}()
	for !strings.Contains(out.String(), "Press Ctrl-C to stop.") {
		select {
		case err := <-done:
			t.Fatalf("the demo ended before waiting: %v\n%s", err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	cancel() // Ctrl-C
	require.NoError(t, <-done, "demo output:\n%s", out.String())
	t.Cleanup(func() { destroyLeft(t, res.Pools) })
	text := out.String()
	t.Logf("demo output:\n%s", text)
	require.Len(t, res.Pools, 2)
	ds := res.Pools[1] + "/ferry/replicas/share01"
	require.Contains(t, text, "the replica on nas-b: zfs dataset "+ds+", mounted read-only at "+res.Replica)
	require.FileExists(t, filepath.Join(res.Replica, "documents", "empty.txt"), "the replica is not where the demo says")
	snaps, err := exec.Command("zfs", "list", "-H", "-r", "-t", "snapshot", "-o", "name", ds).Output()
	require.NoError(t, err, "the kept replica's snapshots")
	require.Contains(t, string(snaps), ds+"@"+res.Snapshot)

	m := regexp.MustCompile(`(?m)^  (zpool destroy \S+ && zpool destroy \S+ && rm -r \S+)$`).FindStringSubmatch(text)
	require.NotNil(t, m, "the demo does not say how to remove what it leaves:\n%s", text)
	require.Contains(t, text, "stay after Ctrl-C")
	for _, p := range res.Pools {
		require.Contains(t, m[1], "zpool destroy "+p)
	}
	// Each printed command in turn; zfs-fuse may hold a just-stopped
	// worker's dataset busy for a moment, so each is retried.
	for _, c := range strings.Split(m[1], " && ") {
		var cmdOut []byte
		for range 20 {
			if cmdOut, err = exec.Command("sh", "-c", c).CombinedOutput(); err == nil {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		require.NoError(t, err, "the printed removal command %q: %s", c, cmdOut)
	}
	pools, err := exec.Command("zpool", "list", "-H", "-o", "name").Output()
	require.NoError(t, err)
	for _, p := range res.Pools {
		require.NotContains(t, strings.Fields(string(pools)), p)
	}
	require.NoDirExists(t, dir)
}

// syncBuffer is a bytes.Buffer the demo writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// destroyLeft destroys demo pools a failed test left.
func destroyLeft(t *testing.T, pools []string) {
	for _, p := range pools {
		if exec.Command("zpool", "list", p).Run() == nil {
			if out, err := exec.Command("zpool", "destroy", "-f", p).CombinedOutput(); err != nil {
				t.Errorf("zpool destroy %s: %v: %s", p, err, out)
			}
		}
	}
}

// TestCheckZFSNamesWhatIsMissing: the zfs demo refuses to start naming what
// the machine lacks: root, the commands, or a ZFS service that answers.
func TestCheckZFSNamesWhatIsMissing(t *testing.T) {
	if os.Geteuid() != 0 {
		err := CheckZFS()
		require.ErrorContains(t, err, "the zfs demo needs root")
		return
	}
	t.Setenv("PATH", t.TempDir())
	require.ErrorContains(t, CheckZFS(), "needs the zfs and zpool command(s), not found on PATH")

	// zfs-fuse's tools without its daemon: zpool fails as they do.
	bin := t.TempDir()
	for _, c := range []string{"zfs", "zpool"} {
		script := "#!/bin/sh\necho 'connect: No such file or directory' >&2\necho 'Please make sure that the zfs-fuse daemon is running.' >&2\nexit 1\n"
		require.NoError(t, os.WriteFile(filepath.Join(bin, c), []byte(script), 0o755))
	}
	t.Setenv("PATH", bin)
	err := CheckZFS()
	require.ErrorContains(t, err, "needs a running ZFS service")
	require.ErrorContains(t, err, "start the zfs-fuse daemon (zfs-fuse) or load the zfs kernel module (modprobe zfs)")
}
