package demo

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-nas/ferry/internal/prereq"
)

// TestDemoBtrfs runs the demo on the btrfs backend (two loop-mounted
// images) and checks that nothing is left mounted or attached afterwards.
func TestDemoBtrfs(t *testing.T) {
	prereq.Need(t, "btrfs", prereq.All(prereq.Root, prereq.Commands("btrfs", "mkfs.btrfs", "losetup"), prereq.Filesystem("btrfs"), prereq.LoopDevices))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	dir := t.TempDir()
	res, err := Run(ctx, Options{Dir: dir, ShareSize: 24 << 20, Address: "127.0.0.1:0", UIAddress: "127.0.0.1:0", Out: &out, Backend: "btrfs"})
	require.NoError(t, err, "demo output:\n%s", out.String())
	require.Equal(t, res.SourceDigest, res.TargetDigest)
	require.Less(t, res.IncrBytes*4, res.FullBytes, "the incremental moved too much")
	require.Contains(t, out.String(), "btrfs backend")
	mounts, err := os.ReadFile("/proc/self/mounts")
	require.NoError(t, err)
	require.NotContains(t, string(mounts), dir, "a demo image is still mounted")
	loops, err := exec.Command("losetup", "--list", "--noheadings", "--output", "BACK-FILE").Output()
	require.NoError(t, err)
	require.False(t, strings.Contains(string(loops), dir), "a demo loop device is still attached: %s", loops)
}
