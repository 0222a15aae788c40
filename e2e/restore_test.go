package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/starter"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/workflows"
)

// loseSource simulates the source's disk being replaced: its worker is
// stopped, everything under its root (the live share and ferry's own
// area) is removed, and the worker starts again on the empty root.
func (e *env) loseSource() {
	e.t.Helper()
	e.kill(source)
	require.NoError(e.t, removeAll(e.roots[source]))
	require.NoError(e.t, os.MkdirAll(e.roots[source], 0o755))
	e.restart(source)
}

// restoreRun is the restore `ferry restore --to dest` starts.
func (e *env) restoreRun(dest workflows.Endpoint) starter.Started {
	e.t.Helper()
	id := workflows.RestoreWorkflowID(dest)
	d, err := tc.DescribeWorkflowExecution(e.ctx, id, "")
	require.NoError(e.t, err, "no restore %s", id)
	st := starter.Started{Job: e.job, WorkflowID: id, RunID: d.GetWorkflowExecutionInfo().GetExecution().GetRunId()}
	e.track(st)
	return st
}

// requireRestored checks the restore's output (three equal digests) and
// that the live tree at the source's share has the source's content.
func (e *env) requireRestored(out cliResult, want string) {
	e.t.Helper()
	require.Equal(e.t, 0, out.Code, "ferry restore failed:\n%s", out.Out)
	require.Equal(e.t, 2, strings.Count(out.Out, "  match"), "the restore does not end with matching digests:\n%s", out.Out)
	require.NotContains(e.t, out.Out, "DIFFERS")
	require.Contains(e.t, out.Out, want, "the digests printed are not the source's")
	got, err := storage.TreeDigest(e.share, nil)
	require.NoError(e.t, err)
	require.Equal(e.t, want, got, "the restored share %s does not have the source's content", e.share)
	// Writable: the restored dataset is live, not a read-only view.
	require.NoError(e.t, os.WriteFile(filepath.Join(e.share, "written-after-restore"), []byte("x"), 0o644))
}

// TestRestoreAfterSourceLost: a share is replicated, the source's disk is
// lost, and `ferry restore` brings the share back to where it was with the
// source's content digest; a second restore into it (it exists now), and
// one onto the target's replica view, are refused and change nothing on
// either host. It logs the replication's and the restore's throughput.
func TestRestoreAfterSourceLost(t *testing.T) {
	e := newEnv(t, envOptions{ShareSize: 128 << 20})
	e.apply()
	begin := time.Now()
	out, st := e.runCLI()
	repTook := time.Since(begin)
	require.Equal(t, 0, out.Code, out.Out)
	res := e.mustSucceed(st)
	want, err := e.backend(source).ContentDigest(e.ctx, srcDataset, res.Snapshot)
	require.NoError(t, err)

	e.loseSource()
	begin = time.Now()
	rout := e.ferry("restore", e.job, "--to", source+":"+srcDataset)
	resTook := time.Since(begin)
	e.recordHistory(e.restoreRun(workflows.Endpoint{Host: source, Dataset: srcDataset}), "restore-v1.json")
	e.requireRestored(rout, want)
	require.Contains(t, rout.Out, "restored "+res.Snapshot)
	mb := float64(e.shareSize) / (1 << 20)
	t.Logf("throughput on a %.0f MiB share: replication (ferry run --wait) %.1f MiB/s over %s, restore (ferry restore) %.1f MiB/s over %s",
		mb, mb/repTook.Seconds(), repTook.Round(time.Millisecond), mb/resTook.Seconds(), resTook.Round(time.Millisecond))

	// The restored dataset exists now: restoring into it again is refused,
	// naming it and the fix, and neither host changes.
	skip := []string{"written-after-restore"}
	srcBefore, tgtBefore := treeListing(t, e.roots[source], skip...), treeListing(t, e.roots[target])
	again := e.ferry("restore", e.job, "--to", source+":"+srcDataset)
	require.NotEqual(t, 0, again.Code)
	require.Contains(t, again.Out, "Conflict")
	require.Contains(t, again.Out, e.share, "the refusal does not name the dataset's path")
	require.Contains(t, again.Out, "does not exist yet", "the refusal does not say the fix")
	onView := e.ferry("restore", e.job, "--to", target+":"+tgtDataset)
	require.NotEqual(t, 0, onView.Code)
	require.Contains(t, onView.Out, filepath.Join(e.roots[target], tgtDataset))
	require.Empty(t, listingDiff(srcBefore, treeListing(t, e.roots[source], skip...)), "a refused restore changed the source host")
	require.Empty(t, listingDiff(tgtBefore, treeListing(t, e.roots[target])), "a refused restore changed the target host")

	// The restored dataset is a new dataset (its own identity): the job,
	// unchanged, refuses to put its snapshots beside the old replicas,
	// which came from another dataset, and changes nothing on the target
	// (docs/restore.md, step 5).
	tgtBefore = treeListing(t, e.roots[target])
	next, _ := e.runCLI()
	require.NotEqual(t, 0, next.Code)
	require.Contains(t, next.Out, "Conflict")
	require.Contains(t, next.Out, "did not come from this source")
	require.Empty(t, listingDiff(tgtBefore, treeListing(t, e.roots[target])), "the refused run changed the target host")

	// --to must name a host of the replica's backend and a valid dataset.
	bad := e.ferry("restore", e.job, "--to", source+":/abs")
	require.NotEqual(t, 0, bad.Code)
	require.Contains(t, bad.Out, "absolute path")
}

// TestRestoreReceiverKilledMidStream: the worker receiving a restore is
// killed with SIGKILL mid-stream and started again; the restore resumes
// its partial receive instead of starting over and ends with the source's
// content.
func TestRestoreReceiverKilledMidStream(t *testing.T) {
	e := newEnv(t, envOptions{ShareSize: slowShare, BWLimit: slowRate})
	e.apply()
	res := e.mustSucceed(e.start())
	want, err := e.backend(source).ContentDigest(e.ctx, srcDataset, res.Snapshot)
	require.NoError(t, err)
	e.loseSource()

	dest := workflows.Endpoint{Host: source, Dataset: srcDataset}
	cmd := exec.CommandContext(e.ctx, ferryBin, "restore", e.job, "--to", dest.String(), "--config", e.cfgPath)
	var buf strings.Builder
	cmd.Stdout, cmd.Stderr = &buf, &buf
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var st starter.Started
	// The workflow id is the destination's, so another test's restore into
	// nas-a:share may already have ended under it: wait for a running one.
	e.waitFor(time.Minute, "the restore to start", func() (bool, error) {
		d, err := tc.DescribeWorkflowExecution(e.ctx, workflows.RestoreWorkflowID(dest), "")
		return err == nil && d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil
	})
	st = e.restoreRun(dest)
	var p starter.Progress
	e.waitFor(time.Minute, "the restore's receive to report progress", func() (bool, error) {
		var err error
		p, err = starter.Inspect(e.ctx, tc, st.WorkflowID, st.RunID)
		if err != nil || !p.Running() {
			return false, err
		}
		return p.Phase == workflows.PhaseStream && p.Bytes > 0 && p.Expected > 0, nil
	})
	require.Less(t, float64(p.Bytes), 0.8*float64(p.Expected), "the restore nearly finished before it could be interrupted")
	e.kill(source)
	t.Logf("killed %s at %d of %d bytes (last heartbeat)", source, p.Bytes, p.Expected)
	again := e.restart(source)

	select {
	case err := <-done:
		t.Logf("$ ferry restore %s --to %s\n%s", e.job, dest, buf.String())
		require.NoError(t, err, "ferry restore failed")
	case <-e.ctx.Done():
		t.Fatalf("ferry restore did not end: %s", buf.String())
	}
	e.requireRestored(cliResult{Out: buf.String()}, want)

	resumed := logLines(again.log, "resuming partial receive")
	require.NotEmpty(t, resumed, "the restarted %s did not resume the restore's partial receive", source)
	require.Greater(t, resumed[0]["offset"], float64(0))
	rcv := e.activities(st, starter.ReceiveActivity)
	var rr activities.ReceiveResult
	require.NoError(t, rcv[len(rcv)-1].decode(&rr))
	require.True(t, rr.Resumed, "the Receive that completed did not resume")
	require.Less(t, rr.Bytes, e.shareSize, "the completing Receive moved the whole share again")
	e.recordHistory(st, "restore-receiver-killed-v1.json")
}

// TestBtrfsRestoreAfterShareDeleted: on btrfs, the share's subvolume is
// deleted (its snapshots survive on the source, so its name is not new)
// and `ferry restore` brings it back under a new name from the target's
// received subvolume — which btrfs sends only for a restore — as a
// writable subvolume with the source's content digest.
func TestBtrfsRestoreAfterShareDeleted(t *testing.T) {
	e := newBtrfsEnv(t, envOptions{})
	e.apply()
	res := e.mustSucceed(e.start())
	want, err := e.backend(source).ContentDigest(e.ctx, srcDataset, res.Snapshot)
	require.NoError(t, err)
	out, err := exec.Command("btrfs", "subvolume", "delete", e.share).CombinedOutput()
	require.NoError(t, err, "btrfs subvolume delete: %s", out)

	same := e.ferry("restore", e.job, "--to", source+":"+srcDataset)
	require.NotEqual(t, 0, same.Code, "a restore over the share's surviving snapshots was not refused")
	require.Contains(t, same.Out, "ferry holds")

	rout := e.ferry("restore", e.job, "--to", source+":share-restored")
	e.restoreRun(workflows.Endpoint{Host: source, Dataset: "share-restored"})
	e.share = filepath.Join(e.roots[source], "share-restored")
	e.requireRestored(rout, want)
	show, err := exec.Command("btrfs", "subvolume", "show", e.share).CombinedOutput()
	require.NoError(t, err, "the restored dataset is not a subvolume: %s", show)
	require.NotRegexp(t, `Flags:\s+readonly`, string(show))
}
