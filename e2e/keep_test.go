package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/starter"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/workflows"
)

// TestTargetDownKeepsItsPartialForTheNextRun (issue 7, item 4): the
// receiving worker is killed mid-stream of a first replication and stays
// down; the run fails as HostUnavailable after timeouts.host (not
// timeouts.stream) and keeps the resumable partial; with the worker back,
// the next run resumes it — a full step to the first run's snapshot from the
// kept checkpoint, then an incremental to its own — so the share crosses the
// relay about once in total.
func TestTargetDownKeepsItsPartialForTheNextRun(t *testing.T) {
	e := newEnv(t, envOptions{ShareSize: slowShare, BWLimit: slowRate, HostTimeout: keepHostTimeout.String()})
	requireKeptPartialResumed(t, e, func(starter.Started) int64 { return e.shareSize })
}

// TestBtrfsTargetDownKeepsItsPartialForTheNextRun: the same on btrfs with
// `stream.resume: staged`, where the kept partial is the spool of the first
// run's `btrfs send` stream and the bound is on the stream's size.
func TestBtrfsTargetDownKeepsItsPartialForTheNextRun(t *testing.T) {
	e := newBtrfsEnv(t, envOptions{ShareSize: seedShare, BWLimit: seedRate, Resume: string(storage.ResumeStaged), Images: seedImages,
		HostTimeout: keepHostTimeout.String()})
	kept, latest := requireKeptPartialResumed(t, e, e.streamSize)
	e.requireReceivedSubvolume(kept)
	e.requireReceivedSubvolume(latest)
}

// keepHostTimeout is the jobs' timeouts.host in the tests above.
const keepHostTimeout = 10 * time.Second

// requireKeptPartialResumed runs the scenario and returns the first run's
// snapshot (resumed by the second) and the second's; size is what the bytes
// through the relay are bounded against (1.3x), given the first run.
func requireKeptPartialResumed(t *testing.T, e *env, size func(starter.Started) int64) (kept, latest string) {
	const hostTimeout = keepHostTimeout
	e.apply()
	first := e.start()
	p := e.waitStreaming(first, 0.25)
	e.kill(target)
	t.Logf("killed %s with %d bytes through the relay (%d of %d expected at the last heartbeat)", target, e.relay.Upstream.Load(), p.Bytes, p.Expected)

	_, err := e.result(first)
	var ae *temporal.ApplicationError
	require.ErrorAs(t, err, &ae, "the run with its receiver down did not fail")
	require.Equal(t, activities.ErrHostUnavailable, ae.Type())
	require.Contains(t, ae.Message(), "host "+target)
	require.Contains(t, ae.Message(), "host "+target+" stopped answering during \"receive ", "the message does not say the receiver went away mid-stream")
	require.Contains(t, ae.Message(), "did not come back within timeouts.host ("+hostTimeout.String()+")", "the run did not fail on timeouts.host")
	require.Contains(t, ae.Message(), " is kept: start `ferry worker --host "+target+"` and run the job again to resume it")
	// The receive's attempts wait at most timeouts.host for a worker.
	rcv := e.activities(first, starter.ReceiveActivity)
	require.NotEmpty(t, rcv)
	require.Equal(t, hostTimeout, rcv[0].Scheduled.GetScheduleToStartTimeout().AsDuration())
	require.NotNil(t, rcv[len(rcv)-1].TimedOut, "the receive did not time out waiting for %s", target)

	e.recordHistory(first, "target-down-keeps-v2.json")

	left, err := e.backend(target).Partials(e.ctx, tgtDataset)
	require.NoError(t, err)
	require.Len(t, left, 1, "the failed run did not keep exactly its partial receive")
	require.NotNil(t, left[0].Resume, "the left partial is not resumable")
	require.Positive(t, left[0].Resume.Offset)
	require.True(t, strings.HasPrefix(left[0].Name, workflows.SnapshotPrefix(e.job)))
	atFail := e.relay.Upstream.Load()
	t.Logf("left %s, resumable at byte %d; %d bytes through the relay so far", left[0].Name, left[0].Resume.Offset, atFail)

	again := e.restart(target)
	cli, second := e.runCLI()
	require.Zero(t, cli.Code, "ferry run --wait failed resuming the kept partial:\n%s", cli.Out)
	res := e.mustSucceed(second)
	// run --wait names the step being streamed (the first run's snapshot,
	// resumed), never the second run's own for step 1, and says what it resumed.
	require.NotContains(t, cli.Out, "stream step 1/2 "+res.Snapshot)
	require.Contains(t, cli.Out, ", 2 step(s): ")
	require.Contains(t, cli.Out, " on the wire (resumed "+starter.FormatBytes(left[0].Resume.Offset)+" kept by an earlier run)")
	total := e.relay.Upstream.Load()
	t.Logf("share %d bytes; %d through the relay in total (%.2fx), %d by the second run; plan %+v",
		e.shareSize, total, float64(total)/float64(e.shareSize), total-atFail, res.Plan)

	e.recordHistory(second, "resume-left-full-v2.json")

	require.Len(t, res.Plan.Steps, 2)
	resumed := res.Plan.Steps[0]
	require.Equal(t, left[0].Name, resumed.To)
	require.Empty(t, resumed.From, "the first step is the first run's full receive")
	require.NotNil(t, resumed.Resume)
	require.Equal(t, left[0].ID, resumed.Resume.ID)
	require.Equal(t, left[0].Name, res.Plan.Steps[1].From)
	require.Equal(t, res.Snapshot, res.Plan.Steps[1].To)
	require.Empty(t, res.Plan.Discard)

	lines := logLines(again.log, "resuming partial receive")
	require.NotEmpty(t, lines, "the restarted %s did not resume the left partial", target)
	require.Equal(t, float64(left[0].Resume.Offset), lines[0]["offset"], "the resume did not start at the left checkpoint")
	ref := size(first)
	t.Logf("%d bytes through the relay against %d (%.2fx)", total, ref, float64(total)/float64(ref))
	require.Less(t, float64(total), 1.3*float64(ref), "the left partial was not resumed: too many bytes sent")

	e.requireSameContent(left[0].Name)
	e.requireSameContent(res.Snapshot)
	e.requireNoPartials()
	return left[0].Name, res.Snapshot
}
