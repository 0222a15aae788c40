package workflows

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// TestReplayRecordedHistories replays histories recorded from real runs
// (`ferry demo`): -v0 before snapshot names carried milliseconds (a full run,
// an incremental run, and a run that failed on a diverged target and
// compensated), -v1 after (a full and an incremental run), -v2 recorded by
// the e2e tests of issue 7 (FERRY_E2E_RECORD): a run whose receiver stayed
// down (HostUnavailable, partial kept), the next run resuming the kept full
// receive, and a run whose source snapshot disappeared mid-stream
// (NotFound), -v3 a run after the source deleted its cursor (the
// target's replica kept as history), and -v4 a run refused at greet for a
// modified replica (Conflict) and a run that left foreign items alone, -v5
// a run whose prune step pruned both sides and a `ferry prune`
// (PruneWorkflow), -v6 hooks around the snapshot (a failed pre hook, both
// hooks around a good snapshot) and notifications (failed, recovered), -v7 a run whose verify failed on every
// attempt, -v8 an incremental run that took the source's inventory with its
// snapshot and the target's alongside it (greet-with-snapshot); restore-*-v1 a `ferry restore` (RestoreWorkflow), one
// whose receiving worker was killed mid-stream. A change to ReplicateWorkflow that is not deterministic
// against them — one not guarded by workflow.GetVersion — fails here before
// it can break runs in flight.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 5, "recorded histories are missing from testdata/")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(ReplicateWorkflow, workflow.RegisterOptions{Name: ReplicateWorkflowName})
			r.RegisterWorkflowWithOptions(PruneWorkflow, workflow.RegisterOptions{Name: PruneWorkflowName})
			r.RegisterWorkflowWithOptions(RestoreWorkflow, workflow.RegisterOptions{Name: RestoreWorkflowName})
			require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(nil, f))
		})
	}
}
