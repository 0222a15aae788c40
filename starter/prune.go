package starter

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/workflows"
)

// PruneRequestFor maps a configured job to its prune (or, with dryRun, its
// listing).
func PruneRequestFor(job config.Job, dryRun bool) workflows.PruneRequest {
	in := InputFor(job)
	return workflows.PruneRequest{Job: in.Job, Source: in.Source, Target: in.Target,
		RetentionSource: in.RetentionSource, RetentionTarget: in.RetentionTarget, DryRun: dryRun, HostTimeout: in.HostTimeout}
}

// Prune runs job's PruneWorkflow on the workers and waits for its outcome.
// A prune that deletes runs under the job's one prune workflow ID, so two
// never run at once (a second one is refused, naming the first); a dry run
// (also what `ferry snapshots` is) deletes nothing and takes its own ID.
func Prune(ctx context.Context, c client.Client, job config.Job, dryRun bool) (workflows.PruneOutcome, error) {
	req := PruneRequestFor(job, dryRun)
	host := req.HostTimeout
	if host <= 0 {
		host = workflows.DefaultHostTimeout
	}
	id := workflows.PruneWorkflowID(job.Name)
	if dryRun {
		id += "-dry-" + time.Now().UTC().Format("20060102T150405.000000000Z")
	}
	var out workflows.PruneOutcome
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                workflows.WorkflowTaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		// Without it the SDK hands back the running prune instead of refusing.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		// Two host steps, each bounded by timeouts.host; no worker polling
		// ferry-workflows must not leave the command waiting for ever.
		WorkflowExecutionTimeout: 2*host + time.Minute,
		StaticSummary:            pruneSummary(req),
	}, workflows.PruneWorkflowName, req)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return out, fmt.Errorf("a prune of job %s is already running (workflow %s); wait for it to end, or look at it with `temporal workflow show --workflow-id %s`", job.Name, id, id)
	}
	if err != nil {
		return out, fmt.Errorf("start %s: %w", id, err)
	}
	if err := run.Get(ctx, &out); err != nil {
		re := runError(run.GetID(), run.GetRunID(), err)
		if re.Type == "Timeout" {
			re.Message += fmt.Sprintf(": no worker answered in time; is a `ferry worker` connected to Temporal, and are the workers of %s and %s running?", req.Source.Host, req.Target.Host)
		}
		return out, re
	}
	return out, nil
}

// pruneSummary is the run's summary in the web UI (User Metadata), as the
// schedule gives every replication run one.
func pruneSummary(req workflows.PruneRequest) string {
	dry := ""
	if req.DryRun { // `ferry prune --dry-run` and `ferry snapshots`
		dry = ", dry run (deletes nothing)"
	}
	return fmt.Sprintf("ferry prune %s%s: %s and %s", req.Job, dry, req.Source, req.Target)
}
