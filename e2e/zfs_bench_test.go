package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-nas/ferry/internal/zfspool"
	"github.com/ferry-nas/ferry/storage"
)

// BenchmarkZFSThroughput compares, between two pools on sparse files, a
// full replication of a 1 GiB share of incompressible data through ferry
// (embedded server, both workers as processes, the data plane over
// loopback TLS straight to the source's data server, compress none, no
// rate limit, stream.resume off) with a plain `zfs send <snapshot> | zfs
// receive <dataset>` of the same snapshot between the same pools. ferry's
// figure is the wall time from the trigger to the run's result; the
// pipe's is the pipe's wall time (zfs receive returns once the snapshot is
// committed). MB/s is the share's size over that time.
//
// Root, the zfs tools and the ZFS service (zfs-fuse) only; one iteration:
// `make bench-zfs`.
func BenchmarkZFSThroughput(b *testing.B) {
	e := newZFSEnv(b, envOptions{
		ShareSize:  benchShare,
		Resume:     string(storage.ResumeOff),
		Direct:     true,
		WriteShare: writeIncompressible,
		Timeout:    30 * time.Minute,
		Images:     map[string]int64{source: 2 << 30, target: 3 << 30},
	})
	e.apply()
	var snapshot string
	b.Run("ferry", func(b *testing.B) {
		defer e.as(b)()
		b.ResetTimer()
		began := time.Now()
		res := e.mustSucceed(e.start())
		took := time.Since(began)
		b.StopTimer()
		require.Len(b, res.Plan.Steps, 1)
		require.Empty(b, res.Plan.Steps[0].From, "not a full replication")
		report(b, took, res.Bytes)
		snapshot = res.Snapshot
		e.requireSameContent(res.Snapshot)
	})
	b.Run("pipe", func(b *testing.B) {
		defer e.as(b)()
		require.NotEmpty(b, snapshot, "no ferry run made the snapshot to send")
		src := e.cfg.Hosts[source].Root + "/" + srcDataset + "@" + snapshot
		dst := e.cfg.Hosts[target].Root + "/pipe"
		b.ResetTimer()
		began := time.Now()
		zfsPipe(b, src, dst+"@"+snapshot)
		took := time.Since(began)
		b.StopTimer()
		report(b, took, 0)
		// The piped copy is the same snapshot: zfs keeps its guid.
		guid := func(s string) string {
			return strings.TrimSpace(zfspool.Zfs(b, "get", "-H", "-p", "-o", "value", "guid", s))
		}
		require.Equal(b, guid(src), guid(dst+"@"+snapshot), "the piped snapshot is another one")
	})
}

// zfsPipe runs `zfs send src | zfs receive dst`: one pipe between the two processes.
func zfsPipe(b *testing.B, src, dst string) {
	cmd := exec.Command("sh", "-c", `zfs send "$1" | zfs receive "$2"`, "sh", src, dst)
	out, err := cmd.CombinedOutput()
	require.NoError(b, err, "zfs send | zfs receive: %s", out)
}
