package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-nas/ferry/internal/benchrec"
	"github.com/ferry-nas/ferry/internal/prereq"
	"github.com/ferry-nas/ferry/internal/zfspool"
	"github.com/ferry-nas/ferry/storage"
)

const (
	zfsTable    = "zfs"
	zfsFullCase = "full, 512 MiB"
	toolZFSPipe = "zfs send | zfs receive"
	// zfsBenchShare is small: zfs-fuse moves well under 100 MB/s here.
	zfsBenchShare = 512 << 20
)

// BenchmarkRowZFS measures, between two pools on sparse files (zfs-fuse
// here), a full replication of a 512 MiB share of incompressible data
// through ferry (stream.resume off, the data plane over loopback TLS
// straight to the source's data server, compress none) next to a plain
// `zfs send <snapshot> | zfs receive <dataset>` of the same snapshot,
// interleaved run by run. Both filesystems are synced and the page cache
// dropped before each copy. ferry's time runs from the trigger to the run's
// result; the pipe's until zfs receive returns (the snapshot committed).
// Every copy's content digest is checked against the source's.
//
// Root, the zfs tools and a running ZFS (zfs-fuse or the OpenZFS module).
func BenchmarkRowZFS(b *testing.B) {
	cases := map[string][]string{zfsFullCase: {toolFerryOff, toolZFSPipe}}
	if testing.Short() {
		benchrec.Skip(b, zfsTable, "skipped with -short: run make bench without -short", cases)
	}
	if err := prereq.All(prereq.Root, prereq.Commands("zfs", "zpool"), func() error {
		if out, err := exec.Command("zpool", "list", "-H").CombinedOutput(); err != nil {
			return fmt.Errorf("zpool list: %v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	})(); err != nil {
		benchrec.Skip(b, zfsTable, fmt.Sprintf("zfs rows need root and a running ZFS (%v): run make bench as root with zfs-fuse running (apt-get install zfs-fuse) or the OpenZFS module loaded", err), cases)
	}
	e := newZFSEnv(b, envOptions{
		ShareSize:  zfsBenchShare,
		Resume:     string(storage.ResumeOff),
		Direct:     true,
		WriteShare: writeIncompressible,
		Timeout:    20 * time.Minute,
		Images:     map[string]int64{source: 1 << 30, target: 2 << 30},
	})
	e.apply()
	pool := e.cfg.Hosts[target].Root
	var ferryVals, pipeVals []float64
	for i := range benchRuns {
		zfsQuiesce(b, e)
		began := time.Now()
		res := e.mustSucceed(e.start())
		took := time.Since(began)
		require.Len(b, res.Plan.Steps, 1)
		require.Empty(b, res.Plan.Steps[0].From, "not a full replication")
		e.requireSameContent(res.Snapshot)
		ferryVals = append(ferryVals, mbps(zfsBenchShare, took))
		b.Logf("ferry %s: %v", res.Snapshot, took.Round(time.Millisecond))
		// The next run is a full replication again.
		zfspool.Zfs(b, "destroy", "-r", pool+"/"+tgtDataset)

		src := e.cfg.Hosts[source].Root + "/" + srcDataset + "@" + res.Snapshot
		dst := fmt.Sprintf("%s/pipe-%d", pool, i)
		zfsQuiesce(b, e)
		began = time.Now()
		out, err := exec.Command("sh", "-c", `zfs send "$1" | zfs receive "$2"`, "sh", src, dst+"@"+res.Snapshot).CombinedOutput()
		took = time.Since(began)
		require.NoError(b, err, "zfs send | zfs receive: %s", out)
		mp := strings.TrimSpace(zfspool.Zfs(b, "get", "-H", "-o", "value", "mountpoint", dst))
		got, err := storage.TreeDigest(mp+"/.zfs/snapshot/"+res.Snapshot, nil)
		require.NoError(b, err)
		want, err := e.backend(source).ContentDigest(e.ctx, srcDataset, res.Snapshot)
		require.NoError(b, err)
		require.Equal(b, want, got, "the piped copy differs from the source")
		pipeVals = append(pipeVals, mbps(zfsBenchShare, took))
		b.Logf("pipe %s: %v", res.Snapshot, took.Round(time.Millisecond))
		zfspool.Zfs(b, "destroy", "-r", dst)
	}
	benchrec.Record(b, benchrec.Row{Table: zfsTable, Case: zfsFullCase, Tool: toolFerryOff, Unit: benchrec.MBps, Values: ferryVals,
		Compare: []benchrec.Compare{{Tool: toolZFSPipe, Min: 0.90}},
		Note:    "trigger to result, data plane over loopback TLS, zfs-fuse; page cache dropped before each run"})
	benchrec.Record(b, benchrec.Row{Table: zfsTable, Case: zfsFullCase, Tool: toolZFSPipe, Unit: benchrec.MBps, Values: pipeVals,
		Note: "the ceiling: one pipe, until zfs receive returns; page cache dropped before each run"})
}

// zfsQuiesce syncs and drops the page cache before a timed copy.
func zfsQuiesce(t testing.TB, e *env) {
	t.Helper()
	for _, h := range []string{source, target} {
		require.NoError(t, syncFS(e.roots[h]))
	}
	require.NoError(t, exec.Command("sh", "-c", "echo 3 > /proc/sys/vm/drop_caches").Run(), "drop the page cache")
}
