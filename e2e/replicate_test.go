package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/internal/sampleshare"
	"github.com/ferry-nas/ferry/metrics"
	"github.com/ferry-nas/ferry/starter"
)

// Interrupted streams are slowed down so that a kill lands mid-stream: the
// first heartbeat comes 2 s into the receive, a 48 MiB share at 8 MiB/s
// takes 6 s.
const (
	slowShare = 48 << 20
	slowRate  = "8MiB"
)

// TestFullThenIncremental: a full run, then an incremental one after the
// share changed, both through `ferry run --wait`; the replica's content
// equals the source's, the incremental moves far fewer bytes, and the
// target shows both snapshots and latest at <root>/<dataset>.
func TestFullThenIncremental(t *testing.T) {
	e := newEnv(t, envOptions{ShareSize: 32 << 20})

	ap := e.ferry("apply")
	require.Equal(t, 0, ap.Code, "ferry apply failed")
	require.Contains(t, ap.Out, e.job)

	out, st := e.runCLI()
	require.Equal(t, 0, out.Code, "ferry run --wait failed")
	full := e.mustSucceed(st)
	require.Contains(t, out.Out, "snapshot "+full.Snapshot)
	require.Len(t, full.Plan.Steps, 1)
	require.Empty(t, full.Plan.Steps[0].From, "the first run is a full send")
	fullWire := e.relay.Upstream.Load()
	require.GreaterOrEqual(t, fullWire, e.shareSize, "a full send carries the whole share")
	e.requireSameContent(full.Snapshot)
	e.requireReplicaView(full.Snapshot)

	changes, err := sampleshare.Change(e.share, uint64(time.Now().UnixNano()))
	require.NoError(t, err)
	t.Logf("changed the share: %v", changes)

	out, st = e.runCLI()
	require.Equal(t, 0, out.Code, "ferry run --wait failed")
	incr := e.mustSucceed(st)
	e.recordHistory(st, "greet-with-snapshot-v8.json")
	require.Contains(t, out.Out, "snapshot "+incr.Snapshot)
	require.NotEqual(t, full.Snapshot, incr.Snapshot)
	require.Len(t, incr.Plan.Steps, 1)
	require.Equal(t, full.Snapshot, incr.Plan.Steps[0].From, "the second run is an incremental from the first")
	incrWire := e.relay.Upstream.Load() - fullWire
	t.Logf("share %d bytes; full run %d bytes on the wire (result %d), incremental %d (result %d)",
		e.shareSize, fullWire, full.Bytes, incrWire, incr.Bytes)
	require.Greater(t, incrWire, int64(2<<20), "the incremental carries at least the new 2 MiB file")
	require.Less(t, incrWire, e.shareSize/4, "the incremental moved far fewer bytes than the share")
	require.Less(t, incr.Bytes, e.shareSize/4)
	e.requireSameContent(incr.Snapshot)
	e.requireReplicaView(full.Snapshot, incr.Snapshot)
	require.Contains(t, out.Out, "replica: "+target+":"+filepath.Join(e.roots[target], filepath.FromSlash(tgtDataset), "latest"),
		"ferry run --wait says where the replica is")
}

// TestReceiverKilledMidStream: the receiving worker is killed with SIGKILL
// mid-stream and started again; the same run resumes the partial receive
// and completes without sending the share twice; the restarted receiver's
// metrics count the resume and only what it received.
func TestReceiverKilledMidStream(t *testing.T) {
	e := newEnv(t, envOptions{ShareSize: slowShare, BWLimit: slowRate, Metrics: true})
	e.apply()
	st := e.start()
	p := e.waitStreaming(st, 0.25)

	// The job's timeouts.heartbeat is what lets a dead receiver be noticed
	// in seconds: it must reach the Receive activity.
	rcv := e.activities(st, starter.ReceiveActivity)
	require.NotEmpty(t, rcv)
	require.Equal(t, heartbeat, rcv[0].Scheduled.GetHeartbeatTimeout().AsDuration(),
		"the Receive activity's heartbeat timeout is not the job's timeouts.heartbeat")

	e.kill(target)
	atKill := e.relay.Upstream.Load()
	t.Logf("killed %s with %d bytes through the relay (%d of %d expected at the last heartbeat)", target, atKill, p.Bytes, p.Expected)
	again := e.restart(target)

	res := e.mustSucceed(st)
	total := e.relay.Upstream.Load()
	t.Logf("share %d bytes, %d through the relay in total (%.2fx), result says %d", e.shareSize, total, float64(total)/float64(e.shareSize), res.Bytes)
	require.Less(t, float64(total), 1.5*float64(e.shareSize), "the stream was not resumed: too many bytes sent")

	// The restarted receiver resumed the partial the killed one left.
	resumed := logLines(again.log, "resuming partial receive")
	require.NotEmpty(t, resumed, "the restarted %s did not resume the partial receive", target)
	require.Greater(t, resumed[0]["offset"], float64(0))
	rcv = e.activities(st, starter.ReceiveActivity)
	last := rcv[len(rcv)-1]
	var rr activities.ReceiveResult
	require.NoError(t, last.decode(&rr))
	require.True(t, rr.Resumed, "the Receive that completed did not resume")
	require.Less(t, rr.Bytes, e.shareSize, "the completing Receive moved the whole share again")
	dst := e.scrape(target)
	resumes, _ := sample(dst, metrics.NameResumes, map[string]string{metrics.LabelJob: e.job, metrics.LabelPeer: source})
	require.Equal(t, 1.0, resumes, "%s of the restarted %s", metrics.NameResumes, target)
	wire, _ := sample(dst, metrics.NameWireBytes, map[string]string{metrics.LabelJob: e.job, metrics.LabelDirection: string(metrics.Received)})
	require.Equal(t, float64(rr.Bytes), wire, "the restarted %s counted the wire bytes its Receive moved", target)
	e.requireSameContent(res.Snapshot)
	e.requireNoPartials()
}

// TestSenderKilledMidStream: the sending worker is killed with SIGKILL
// mid-stream and started again on the same port; its send session is gone,
// so the run opens a new one and the receiver resumes its partial.
func TestSenderKilledMidStream(t *testing.T) {
	e := newEnv(t, envOptions{ShareSize: slowShare, BWLimit: slowRate})
	e.apply()
	st := e.start()
	p := e.waitStreaming(st, 0.25)

	e.kill(source)
	atKill := e.relay.Upstream.Load()
	t.Logf("killed %s with %d bytes through the relay (%d of %d expected at the last heartbeat)", source, atKill, p.Bytes, p.Expected)
	e.restart(source)

	res := e.mustSucceed(st)
	total := e.relay.Upstream.Load()
	t.Logf("share %d bytes, %d through the relay in total (%.2fx), result says %d", e.shareSize, total, float64(total)/float64(e.shareSize), res.Bytes)
	require.Less(t, float64(total), 1.5*float64(e.shareSize), "the stream was not resumed: too many bytes sent")

	// A second send session was opened and the receive through it resumed.
	require.GreaterOrEqual(t, len(e.activities(st, "OpenSend")), 2, "no new send session was opened")
	rcv := e.activities(st, starter.ReceiveActivity)
	require.GreaterOrEqual(t, len(rcv), 2, "the receive was not redone through a new session")
	first := rcv[0]
	require.NotNil(t, first.Failed, "the first Receive should fail when its session is lost")
	require.Equal(t, activities.ErrSessionLost, first.Failed.GetFailure().GetApplicationFailureInfo().GetType())
	var rr activities.ReceiveResult
	require.NoError(t, rcv[len(rcv)-1].decode(&rr))
	require.True(t, rr.Resumed, "the Receive that completed did not resume")
	require.NotEmpty(t, e.workerLogs(target, "resuming partial receive"))
	e.requireSameContent(res.Snapshot)
	e.requireNoPartials()
}

// TestLeftoverPartialDiscarded: a partial receive left by an earlier run
// that never cleaned up (receiver killed, run terminated so no compensation
// ran) and that can no longer be resumed (its snapshot was removed on the
// source since) is discarded by the next run, which succeeds. One that can
// still be resumed is resumed instead (TestTargetDownKeepsItsPartialForTheNextRun).
func TestLeftoverPartialDiscarded(t *testing.T) {
	e := newEnv(t, envOptions{ShareSize: slowShare, BWLimit: slowRate})
	e.apply()
	old := e.start()
	oldSnap := e.waitStreaming(old, 0.25).Snapshot
	e.kill(target)
	require.NoError(t, tc.TerminateWorkflow(e.ctx, old.WorkflowID, old.RunID, "e2e: leave a partial receive behind"))
	e.restart(target)
	require.NoError(t, e.backend(source).DestroySnapshot(e.ctx, srcDataset, oldSnap))

	left, err := e.backend(target).Partials(e.ctx, tgtDataset)
	require.NoError(t, err)
	require.NotEmpty(t, left, "the killed receiver left no partial")
	t.Logf("leftover: %+v", left)

	st := e.start()
	res := e.mustSucceed(st)
	require.GreaterOrEqual(t, res.Discarded, 1, "the leftover partial was not discarded")
	require.NotEmpty(t, res.Plan.Discard)
	require.Equal(t, left[0].ID, res.Plan.Discard[0].ID)
	e.requireNoPartials()
	e.requireSameContent(res.Snapshot)
}

// TestDivergedTarget: the target holds a snapshot the source never had; the
// next run fails with Conflict naming it, `ferry run --wait` exits non-zero,
// and nothing on the target changed.
func TestDivergedTarget(t *testing.T) {
	e := newEnv(t, envOptions{ShareSize: 8 << 20})
	e.apply()
	first := e.mustSucceed(e.start())
	e.requireSameContent(first.Snapshot)

	const local = "made-on-nas-b"
	live := filepath.Join(e.roots[target], filepath.FromSlash(tgtDataset))
	// The target's dataset path is ferry's view of the replica, which is
	// never snapshotted: someone replaced it with a directory of their own.
	_, err := e.backend(target).CreateSnapshot(e.ctx, tgtDataset, local)
	require.ErrorContains(t, err, "view of a received replica")
	require.NoError(t, os.Chmod(live, 0o755))
	require.NoError(t, os.RemoveAll(live))
	require.NoError(t, os.MkdirAll(live, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(live, "local-notes.txt"), []byte("written on the target\n"), 0o644))
	_, err = e.backend(target).CreateSnapshot(e.ctx, tgtDataset, local)
	require.NoError(t, err)

	before := treeListing(t, e.roots[target], ".ferry/tmp")
	out, st := e.runCLI()
	require.NotEqual(t, 0, out.Code, "ferry run --wait succeeded against a diverged target")
	require.Contains(t, out.Out, activities.ErrConflict)
	require.Contains(t, out.Out, local)

	_, err = e.result(st)
	var ae *temporal.ApplicationError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, activities.ErrConflict, ae.Type())
	require.Contains(t, ae.Message(), local)
	var named []string
	require.NoError(t, ae.Details(&named))
	require.Equal(t, []string{local}, named)

	after := treeListing(t, e.roots[target], ".ferry/tmp")
	require.Empty(t, listingDiff(before, after), "the failed run changed the target")
}

// TestCancelledRun: a run cancelled while it streams ends Cancelled and
// leaves neither a partial receive nor staging on the target.
func TestCancelledRun(t *testing.T) {
	e := newEnv(t, envOptions{ShareSize: slowShare, BWLimit: slowRate})
	e.apply()
	st := e.start()
	e.waitStreaming(st, 0.25)
	require.NoError(t, tc.CancelWorkflow(e.ctx, st.WorkflowID, st.RunID))

	_, err := e.result(st)
	var ce *temporal.CanceledError
	require.True(t, errors.As(err, &ce), "want a cancelled run, got %v", err)
	d, err := tc.DescribeWorkflowExecution(e.ctx, st.WorkflowID, st.RunID)
	require.NoError(t, err)
	require.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED, d.GetWorkflowExecutionInfo().GetStatus())
	e.requireNoPartials()

	// Compensation ran: the partial was discarded on the target.
	require.NotEmpty(t, e.workerLogs(target, "discarded partial receive"))
	var phases []string
	for _, a := range e.activities(st, "") {
		phases = append(phases, a.Type)
	}
	require.Contains(t, phases, "DiscardPartials")
}

// TestRunRightAfterARun: a run triggered right after the previous one ended,
// in the same second it started (a small share replicates in well under a
// second), must snapshot the share as it is now and replicate the change,
// not find the previous run's snapshot under the same name and report
// success with nothing sent.
func TestRunRightAfterARun(t *testing.T) {
	e := newEnv(t, envOptions{ShareSize: 256 << 10})
	e.apply()
	// Not synchronisation: the first run starts just after a whole second so
	// that it usually ends within that second, which is the case under test.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
	st1 := e.start()
	first := e.mustSucceed(st1)
	changes, err := sampleshare.Change(e.share, 7)
	require.NoError(t, err)
	require.NotEmpty(t, changes)
	st2 := e.start()
	second := e.mustSucceed(st2)
	t.Logf("first run %s made %s; second run %s made %s (%d step(s))",
		st1.WorkflowID, first.Snapshot, st2.WorkflowID, second.Snapshot, len(second.Plan.Steps))

	require.NotEqual(t, first.Snapshot, second.Snapshot,
		"the second run reused the first run's snapshot: the change made before it was triggered was not replicated")
	require.Len(t, second.Plan.Steps, 1)
	require.Equal(t, first.Snapshot, second.Plan.Steps[0].From)
	added := filepath.Join("photos", "new", "IMG_NEW.jpg")
	_, err = os.Lstat(filepath.Join(e.roots[target], ".ferry", "snapshots", "replicas%2Fshare", second.Snapshot, added))
	require.NoError(t, err, "the file added before the second run is not on the target")
	e.requireSameContent(second.Snapshot)
}
