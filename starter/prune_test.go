package starter

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/ferry-nas/ferry/workflows"
)

// TestPruneRequestCarriesTheGrids: the job's grids and host timeout reach
// the prune, and the replication's input carries the same grids.
func TestPruneRequestCarriesTheGrids(t *testing.T) {
	cfg := testConfig(t, `  kept:
    source: nas-a:share01
    target: nas-b:replicas/share01
    retention: {source: "24x1h | 7x1d", target: " 7x1d "}
    timeouts: {host: 20m}
`)
	job := cfg.Jobs["kept"]
	assert.Equal(t, workflows.PruneRequest{Job: "kept",
		Source: workflows.Endpoint{Host: "nas-a", Dataset: "share01"}, Target: workflows.Endpoint{Host: "nas-b", Dataset: "replicas/share01"},
		RetentionSource: "24x1h | 7x1d", RetentionTarget: "7x1d", DryRun: true, HostTimeout: 20 * time.Minute}, PruneRequestFor(job, true))
	in := InputFor(job)
	assert.Equal(t, "24x1h | 7x1d", in.RetentionSource)
	assert.Equal(t, "7x1d", in.RetentionTarget)
}

// TestSecondPruneOfAJobIsRefused: while a job's prune runs (here: no
// worker picks it up), another prune of the job is refused naming the
// first; a dry run is not.
func TestSecondPruneOfAJobIsRefused(t *testing.T) {
	cfg := testConfig(t, `  busy:
    source: nas-a:share01
    target: nas-b:replicas/share01
`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := workflows.PruneWorkflowID("busy")
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "nobody-polls-" + t.Name(),
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL}, workflows.PruneWorkflowName, PruneRequestFor(cfg.Jobs["busy"], false))
	require.NoError(t, err)
	defer func() { _ = tc.TerminateWorkflow(context.Background(), id, run.GetRunID(), "test over") }()

	_, err = Prune(ctx, tc, cfg.Jobs["busy"], false)
	require.ErrorContains(t, err, "a prune of job busy is already running (workflow ferry-prune-busy)")

	// A dry run takes its own ID: it starts (and waits for a worker, so stop waiting).
	short, stop := context.WithTimeout(ctx, 500*time.Millisecond)
	defer stop()
	_, err = Prune(short, tc, cfg.Jobs["busy"], true)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "already running")
}

// TestPruneSummarySaysWhetherItDeletes: the web UI shows a prune run's
// summary; a dry run (also `ferry snapshots`) says it deletes nothing.
func TestPruneSummarySaysWhetherItDeletes(t *testing.T) {
	req := workflows.PruneRequest{Job: "j", Source: workflows.Endpoint{Host: "nas-a", Dataset: "s"}, Target: workflows.Endpoint{Host: "nas-b", Dataset: "r/s"}}
	assert.Equal(t, "ferry prune j: nas-a:s and nas-b:r/s", pruneSummary(req))
	req.DryRun = true
	assert.Equal(t, "ferry prune j, dry run (deletes nothing): nas-a:s and nas-b:r/s", pruneSummary(req))
}
