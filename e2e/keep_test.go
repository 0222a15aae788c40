package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/starter"
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
	const hostTimeout = 10 * time.Second
	e := newEnv(t, envOptions{ShareSize: slowShare, BWLimit: slowRate, HostTimeout: hostTimeout.String()})
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
	require.Contains(t, ae.Message(), "within "+hostTimeout.String(), "the run did not fail on timeouts.host")
	// The receive's attempts wait at most timeouts.host for a worker.
	rcv := e.activities(first, starter.ReceiveActivity)
	require.NotEmpty(t, rcv)
	require.Equal(t, hostTimeout, rcv[0].Scheduled.GetScheduleToStartTimeout().AsDuration())
	require.NotNil(t, rcv[len(rcv)-1].TimedOut, "the receive did not time out waiting for %s", target)

	e.recordHistory(first, "target-down-keeps-v2.json")

	kept, err := e.backend(target).Partials(e.ctx, tgtDataset)
	require.NoError(t, err)
	require.Len(t, kept, 1, "the failed run did not keep exactly its partial receive")
	require.NotNil(t, kept[0].Resume, "the kept partial is not resumable")
	require.Positive(t, kept[0].Resume.Offset)
	require.True(t, strings.HasPrefix(kept[0].Name, workflows.SnapshotPrefix(e.job)))
	atFail := e.relay.Upstream.Load()
	t.Logf("kept %s, resumable at byte %d; %d bytes through the relay so far", kept[0].Name, kept[0].Resume.Offset, atFail)

	again := e.restart(target)
	second := e.start()
	res := e.mustSucceed(second)
	total := e.relay.Upstream.Load()
	t.Logf("share %d bytes; %d through the relay in total (%.2fx), %d by the second run; plan %+v",
		e.shareSize, total, float64(total)/float64(e.shareSize), total-atFail, res.Plan)

	e.recordHistory(second, "resume-kept-full-v2.json")

	require.Len(t, res.Plan.Steps, 2)
	resumed := res.Plan.Steps[0]
	require.Equal(t, kept[0].Name, resumed.To)
	require.Empty(t, resumed.From, "the first step is the first run's full receive")
	require.NotNil(t, resumed.Resume)
	require.Equal(t, kept[0].ID, resumed.Resume.ID)
	require.Equal(t, kept[0].Name, res.Plan.Steps[1].From)
	require.Equal(t, res.Snapshot, res.Plan.Steps[1].To)
	require.Empty(t, res.Plan.Discard)

	lines := logLines(again.log, "resuming partial receive")
	require.NotEmpty(t, lines, "the restarted %s did not resume the kept partial", target)
	require.Equal(t, float64(kept[0].Resume.Offset), lines[0]["offset"], "the resume did not start at the kept checkpoint")
	require.Less(t, float64(total), 1.3*float64(e.shareSize), "the kept partial was not resumed: too many bytes sent")

	e.requireSameContent(kept[0].Name)
	e.requireSameContent(res.Snapshot)
	e.requireNoPartials()
}
