package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/certs"
	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/internal/loopfs"
	"github.com/ferry-nas/ferry/starter"
	"github.com/ferry-nas/ferry/workflows"
)

// fanTarget is the second job's target host in the fan-out test.
const fanTarget = "nas-c"

// TestFanOutCatchUpAfterTargetDown (issue 8): one source replicated by two
// jobs to two targets, both with retention `1x1m` on each side. The second
// target's worker is down for two runs of each job: the first job keeps
// replicating and pruning the shared source (never touching the second
// job's snapshots), the second job's runs fail HostUnavailable leaving their
// snapshots on the source. When the worker returns, the second job catches
// up incrementally from its cursor, which survived, moving less than 0.2x
// the share; its replica has the source's content and the first job's
// cursor survives the second job's prune.
func TestFanOutCatchUpAfterTargetDown(t *testing.T) {
	fanOutScenario(t, newEnv(t, fanOutOptions))
}

// TestBtrfsFanOutCatchUpAfterTargetDown: the same on btrfs loop images.
func TestBtrfsFanOutCatchUpAfterTargetDown(t *testing.T) {
	opts := fanOutOptions
	opts.Images = map[string]int64{source: 256 << 20, target: 256 << 20}
	fanOutScenario(t, newBtrfsEnv(t, opts))
}

const fanOutShare = 8 << 20

var fanOutOptions = envOptions{ShareSize: fanOutShare, HostTimeout: "10s", Retention: `{source: "1x1m", target: "1x1m"}`, Timeout: 4 * time.Minute}

func fanOutScenario(t *testing.T, e *env) {
	const share = fanOutShare
	job2 := e.addFanOutJob()

	e.apply()
	first1 := e.mustSucceed(e.start())
	first2 := e.mustSucceed(e.startJob(job2))
	require.Empty(t, first2.Plan.Base, "the second job's first run is a full send")
	cursor2 := first2.Snapshot
	e.kill(fanTarget)

	var failed2 []string
	cursor1 := first1.Snapshot
	for i := range 2 {
		e.changeShare(i)
		res1 := e.mustSucceed(e.start())
		require.Len(t, res1.Plan.Steps, 1)
		cursor1 = res1.Snapshot
		for _, d := range append(res1.Prune.Source.Deleted, res1.Prune.Target.Deleted...) {
			require.True(t, strings.HasPrefix(d, workflows.SnapshotPrefix(e.job)), "job %s pruned %s, not its own", e.job, d)
		}
		st := e.startJob(job2)
		_, err := e.result(st)
		var ae *temporal.ApplicationError
		require.ErrorAs(t, err, &ae, "the second job's run with %s down did not fail", fanTarget)
		require.Equal(t, activities.ErrHostUnavailable, ae.Type())
		snaps := e.snapshotNames(source)
		require.Contains(t, snaps, cursor2, "the second job's cursor was pruned while its target was down")
		name := e.ownSnapshots(job2, snaps)
		failed2 = append(failed2, name[len(name)-1])
	}

	e.restart(fanTarget)
	e.changeShare(2)
	before := e.relay.Upstream.Load()
	st := e.startJob(job2)
	res := e.mustSucceed(st)
	moved := e.relay.Upstream.Load() - before
	require.Equal(t, cursor2, res.Plan.Base, "the catch-up did not start from the second job's cursor")
	var tos []string
	for _, s := range res.Plan.Steps {
		require.NotEmpty(t, s.From, "the catch-up has a full step")
		tos = append(tos, s.To)
	}
	require.Equal(t, append(slices.Clone(failed2), res.Snapshot), tos, "the catch-up does not step through the missed snapshots")
	ratio := float64(res.Bytes) / float64(share)
	t.Logf("catch-up of %s after %d missed runs: %d bytes in %d steps (%.4fx the %d-byte share), %d bytes through the relay",
		job2, len(failed2), res.Bytes, len(res.Plan.Steps), ratio, share, moved)
	require.Less(t, ratio, 0.2)
	require.Less(t, float64(moved), 0.2*share)

	src, err := e.backend(source).ContentDigest(e.ctx, srcDataset, res.Snapshot)
	require.NoError(t, err)
	got, err := e.backend(fanTarget).ContentDigest(e.ctx, tgtDataset, res.Snapshot)
	require.NoError(t, err)
	require.Equal(t, src, got)
	require.Contains(t, e.snapshotNames(source), cursor1, "the second job's prune removed the first job's cursor")
	for _, d := range res.Prune.Source.Deleted {
		require.True(t, strings.HasPrefix(d, workflows.SnapshotPrefix(job2)), "job %s pruned %s, not its own", job2, d)
	}

	// The first job still continues incrementally from its cursor.
	e.changeShare(3)
	again := e.mustSucceed(e.start())
	require.Equal(t, cursor1, again.Plan.Base)
	e.requireSameContent(again.Snapshot)
}

// addFanOutJob adds host nas-c and a second job replicating the same
// source to nas-c, restarts nas-a's worker on the new config and starts
// nas-c's; it returns the second job's name.
func (e *env) addFanOutJob() string {
	e.t.Helper()
	job2 := e.job + "-fan"
	root := filepath.Join(e.dir, fanTarget)
	if e.kind == config.BackendBtrfs {
		root = loopfs.New(e.t, 256<<20)
	}
	require.NoError(e.t, os.MkdirAll(root, 0o755))
	_, _, err := certs.Issue(filepath.Join(e.dir, "certs"), fanTarget, certs.IssueOptions{})
	require.NoError(e.t, err)
	e.listen[fanTarget], e.roots[fanTarget] = freeAddr(e.t), root
	data, err := os.ReadFile(e.cfgPath)
	require.NoError(e.t, err)
	text := strings.Replace(string(data), "jobs:\n", fmt.Sprintf("  %s: {data_address: %q, backend: %s, root: %q}\njobs:\n", fanTarget, e.listen[fanTarget], e.kind, root), 1)
	// The second job: the first one's keys, another name and target host.
	i := strings.Index(text, "  "+e.job+":\n")
	require.GreaterOrEqual(e.t, i, 0)
	block := strings.Replace(text[i:], "  "+e.job+":\n", "  "+job2+":\n", 1)
	block = strings.Replace(block, "target: "+target+":", "target: "+fanTarget+":", 1)
	text = strings.TrimRight(text, "\n") + "\n" + block
	require.NoError(e.t, os.WriteFile(e.cfgPath, []byte(text), 0o644))
	e.cfg, err = config.Load(e.cfgPath)
	require.NoError(e.t, err, "%s", text)
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = tc.ScheduleClient().GetHandle(ctx, starter.ScheduleID(job2)).Delete(ctx)
		e.kill(fanTarget)
	})
	e.kill(source)
	e.restart(source)
	e.startWorker(fanTarget)
	return job2
}

// startJob triggers another job of the config (as `ferry run` does).
func (e *env) startJob(job string) starter.Started {
	e.t.Helper()
	st, err := starter.Run(e.ctx, tc, job)
	require.NoError(e.t, err)
	require.False(e.t, st.AlreadyRunning)
	e.track(st)
	return st
}

// changeShare adds a small file to the share, so the next snapshot differs.
func (e *env) changeShare(i int) {
	e.t.Helper()
	require.NoError(e.t, os.WriteFile(filepath.Join(e.share, fmt.Sprintf("change-%d", i)), []byte(strings.Repeat("x", 64<<10)), 0o644))
}

// ownSnapshots keeps job's snapshots of names (sorted: oldest first).
func (e *env) ownSnapshots(job string, names []string) []string {
	var out []string
	for _, n := range names {
		if rest, ok := strings.CutPrefix(n, workflows.SnapshotPrefix(job)); ok && !strings.Contains(rest, "_") {
			out = append(out, n)
		}
	}
	return out
}
