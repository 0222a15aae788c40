package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/ferry-nas/ferry/activities"
)

// PruneWorkflowName is the registered type of PruneWorkflow.
const PruneWorkflowName = "PruneWorkflow"

// PruneWorkflowID is the workflow ID of a job's prune that deletes: one at
// a time per job (`ferry prune`). Dry runs and listings take their own IDs.
func PruneWorkflowID(job string) string { return "ferry-prune-" + job }

// PruneRequest is one job's prune or listing, as `ferry prune` and `ferry
// snapshots` start it.
type PruneRequest struct {
	Job    string   `json:"job"`
	Source Endpoint `json:"source"`
	Target Endpoint `json:"target"`
	// RetentionSource and RetentionTarget are the job's grids (empty:
	// keep everything on that side).
	RetentionSource string `json:"retention_source,omitempty"`
	RetentionTarget string `json:"retention_target,omitempty"`
	// DryRun decides and reports but deletes nothing (also what a listing is).
	DryRun      bool          `json:"dry_run,omitempty"`
	HostTimeout time.Duration `json:"host_timeout,omitempty"`
}

// PruneOutcome is each side's verdicts (and deletions), and the time the
// grids counted against.
type PruneOutcome struct {
	Job    string                 `json:"job"`
	Now    time.Time              `json:"now"`
	DryRun bool                   `json:"dry_run"`
	Source activities.PruneResult `json:"source"`
	Target activities.PruneResult `json:"target"`
}

// PruneWorkflow applies (or, with DryRun, only decides) a job's retention on
// both hosts: the target first, so that the source learns which of its
// snapshots the target's partial receives still need, then the source.
// It is safe beside a replication of the same job: everything a run in
// flight uses is protected (marks, snapshots newer than them, partial
// bases, open send sessions), and the backends serialise each deletion
// with the dataset's other operations.
func PruneWorkflow(ctx workflow.Context, in PruneRequest) (PruneOutcome, error) {
	if in.HostTimeout <= 0 {
		in.HostTimeout = DefaultHostTimeout
	}
	out := PruneOutcome{Job: in.Job, Now: workflow.Now(ctx), DryRun: in.DryRun}
	r := &replication{in: ReplicateInput{Job: in.Job, Source: in.Source, Target: in.Target, HostTimeout: in.HostTimeout}}
	verb := "prune"
	if in.DryRun {
		verb = "list"
	}
	if err := r.call(ctx, in.Target.Host, verb+" target", act.Prune, activities.PruneInput{Job: in.Job, Dataset: in.Target.Dataset,
		Side: activities.SideTarget, Grid: in.RetentionTarget, Now: out.Now, DryRun: in.DryRun}, &out.Target); err != nil {
		return out, pruneFailure(in.Job, verb, in.Target, err)
	}
	if err := r.call(ctx, in.Source.Host, verb+" source", act.Prune, activities.PruneInput{Job: in.Job, Dataset: in.Source.Dataset,
		Side: activities.SideSource, Grid: in.RetentionSource, Now: out.Now, DryRun: in.DryRun,
		Protect: partialProtections(in.Target.Host, out.Target.Partials)}, &out.Source); err != nil {
		return out, pruneFailure(in.Job, verb, in.Source, err)
	}
	return out, nil
}

// pruneFailure names the job and side, keeping the cause's error type.
func pruneFailure(job, verb string, ep Endpoint, err error) error {
	errType := "PruneFailed"
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		errType = ae.Type()
	}
	return temporal.NewApplicationErrorWithOptions(fmt.Sprintf("job %s: %s %s: %v", job, verb, ep, err), errType,
		temporal.ApplicationErrorOptions{NonRetryable: true, Cause: err})
}
