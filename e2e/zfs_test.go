package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/internal/sampleshare"
	"github.com/ferry-nas/ferry/internal/zfspool"
	"github.com/ferry-nas/ferry/starter"
)

// The zfs tests run the same system on the zfs backend: each host's root is
// a dataset on its own pool (a sparse file, zfs-fuse or OpenZFS), the share
// a dataset, the workers real processes.

func newZFSEnv(t testing.TB, opts envOptions) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: builds ferry and runs worker processes; skipped with -short")
	}
	zfspool.Need(t)
	opts.Backend = config.BackendZFS
	return newEnv(t, opts)
}

// TestZFSFullIncrementalModifiedTarget: on zfs, through `ferry apply` and
// `ferry run --wait`: a full run, an incremental run (far fewer bytes on
// the wire), then the replica written on the target (readonly turned off by
// hand): the next run fails as Conflict naming the dataset, and the target
// keeps its snapshots and the written file: nothing rolled back or destroyed.
func TestZFSFullIncrementalModifiedTarget(t *testing.T) {
	e := newZFSEnv(t, envOptions{ShareSize: 32 << 20, Images: map[string]int64{source: 256 << 20, target: 256 << 20}})
	require.Equal(t, 0, e.ferry("apply").Code, "ferry apply failed")

	out, st := e.runCLI()
	require.Equal(t, 0, out.Code, "ferry run --wait failed")
	full := e.mustSucceed(st)
	require.Len(t, full.Plan.Steps, 1)
	require.Empty(t, full.Plan.Steps[0].From, "the first run is a full send")
	fullWire := e.relay.Upstream.Load()
	require.GreaterOrEqual(t, fullWire, e.shareSize, "a full send carries the whole share")
	e.requireSameContent(full.Snapshot)

	changes, err := sampleshare.Change(e.share, 1)
	require.NoError(t, err)
	t.Logf("changed the share: %v", changes)
	out, st = e.runCLI()
	require.Equal(t, 0, out.Code, "ferry run --wait failed")
	incr := e.mustSucceed(st)
	require.Len(t, incr.Plan.Steps, 1)
	require.Equal(t, full.Snapshot, incr.Plan.Steps[0].From, "the second run is an incremental from the first")
	incrWire := e.relay.Upstream.Load() - fullWire
	t.Logf("share %d bytes; full %d bytes on the wire, incremental %d", e.shareSize, fullWire, incrWire)
	require.Less(t, incrWire, e.shareSize/4, "the incremental moved far fewer bytes than the share")
	e.requireSameContent(incr.Snapshot)
	e.requireNoPartials()

	// The replica is read-only; someone turns that off and writes into it.
	replica := e.cfg.Hosts[target].Root + "/" + tgtDataset
	zfspool.Zfs(t, "set", "readonly=off", replica)
	injected := filepath.Join(e.roots[target], filepath.FromSlash(tgtDataset), "injected.txt")
	require.NoError(t, os.WriteFile(injected, []byte("not from the source\n"), 0o644))
	before := zfspool.Zfs(t, "list", "-H", "-r", "-t", "snapshot", "-o", "name", replica)

	changeShare(t, e.share, "after-the-target-was-written")
	out, st = e.runCLI()
	require.NotEqual(t, 0, out.Code, "ferry run --wait succeeded on top of a modified replica")
	_, err = e.result(st)
	var ae *temporal.ApplicationError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, activities.ErrConflict, ae.Type(), "run failed with %v", err)
	for _, want := range []string{replica, "modified since its newest snapshot", "ferry never rolls back"} {
		require.Contains(t, err.Error(), want, "the Conflict does not say it")
		require.Contains(t, out.Out, want, "ferry run --wait does not say it")
	}
	after := zfspool.Zfs(t, "list", "-H", "-r", "-t", "snapshot", "-o", "name", replica)
	require.Equal(t, before, after, "the target's snapshots changed")
	got, err := os.ReadFile(injected)
	require.NoError(t, err, "the file written on the target is gone: something rolled the replica back")
	require.Equal(t, "not from the source\n", string(got))
	require.True(t, strings.Contains(before, "@"+incr.Snapshot), "the incremental's snapshot is not on the target: %s", before)
	e.requireNoPartials()
}

// TestZFSReceiverKilledRestartsStep: a 300 MiB share, the receiving worker
// killed with SIGKILL mid-stream and started again. On a pool without
// resume tokens the kill leaves ferry's receive record (a partial, never a
// snapshot); the retried receive discards it and sends the whole stream
// again from byte 0, and the run ends with the share's content on the
// target and nothing left behind.
func TestZFSReceiverKilledRestartsStep(t *testing.T) {
	e := newZFSEnv(t, envOptions{ShareSize: seedShare, BWLimit: seedRate, Images: map[string]int64{source: 1 << 30, target: 1 << 30}})
	e.apply()
	st := e.start()
	p := e.waitStreaming(st, 0.25)
	name := p.Snapshot
	require.NotEmpty(t, name)

	e.kill(target)
	atKill := e.relay.Upstream.Load()
	t.Logf("killed %s with %d bytes through the relay (%.0f%% of %d expected)", target, atKill, 100*float64(atKill)/float64(p.Expected), p.Expected)
	e.requireRunning(st)

	snaps, err := e.backend(target).ListSnapshots(e.ctx, tgtDataset)
	require.NoError(t, err)
	require.NotContains(t, snapshotNames(snaps), name, "the half-received snapshot is listed as complete")
	e.waitFor(30*time.Second, "the killed receive's partial to be reported", func() (bool, error) {
		return len(e.partialsOf(name)) == 1, nil
	})
	left := e.partialsOf(name)
	require.Nil(t, left[0].Resume, "a zfs partial on this pool is not resumable")
	t.Logf("the kill left %s: %s", left[0].ID, left[0].Reason)

	e.restart(target)
	res := e.mustSucceed(st)
	require.Equal(t, name, res.Snapshot)
	total := e.relay.Upstream.Load()
	// The estimate on zfs-fuse is the snapshot's referenced bytes; what the
	// retried receive took is the stream itself.
	rcv := e.activities(st, starter.ReceiveActivity)
	require.NotEmpty(t, rcv)
	var rr activities.ReceiveResult
	require.NoError(t, rcv[len(rcv)-1].decode(&rr))
	require.False(t, rr.Resumed, "a zfs receive on this pool resumed")
	t.Logf("stream %d bytes (estimate %d); %d through the relay in total (%.2fx), %d after the kill",
		rr.Bytes, e.streamSize(st), total, float64(total)/float64(rr.Bytes), total-atKill)
	require.Greater(t, rr.Bytes, atKill, "the retried receive is shorter than what was sent before the kill")
	require.GreaterOrEqual(t, total-atKill, rr.Bytes, "the stream was not sent again from byte 0")
	e.requireSameContent(name)
	e.requireNoPartials()
	leftovers := zfspool.Zfs(t, "list", "-H", "-r", "-t", "all", "-o", "name", e.cfg.Hosts[target].Root)
	require.NotContains(t, leftovers, "%recv", "a %%recv clone is left on the target")
}
