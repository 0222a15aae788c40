package workflows

import (
	"errors"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// MemoRun is the memo key of a replication run's outcome (RunMemo). The
// visibility list returns every run's memo, so `ferry status` answers for
// all jobs from one list instead of reading each run's history.
const MemoRun = "ferry.run"

// RunMemo is a finished run's outcome as its memo carries it: what a
// completed run replicated, or why a failed one failed.
type RunMemo struct {
	Snapshot string       `json:"snapshot,omitempty"`
	Steps    int          `json:"steps"`
	Bytes    int64        `json:"bytes"`
	Received Received     `json:"received,omitzero"`
	Note     string       `json:"note,omitempty"`
	Prune    *PruneReport `json:"prune,omitempty"`
	// ErrorType and Error of a run that failed (its application error's
	// type and message).
	ErrorType string `json:"error_type,omitempty"`
	Error     string `json:"error,omitempty"`
}

// NewRunMemo is the memo of a run that returned res and err.
func NewRunMemo(res ReplicateResult, err error) RunMemo {
	m := RunMemo{Snapshot: res.Snapshot, Steps: len(res.Plan.Steps), Bytes: res.Bytes, Received: res.Received, Note: res.Note, Prune: res.Prune}
	if err != nil {
		m.Error = err.Error()
		var ae *temporal.ApplicationError
		switch {
		case errors.As(err, &ae):
			m.ErrorType, m.Error = ae.Type(), ae.Message()
		case temporal.IsCanceledError(err):
			// As the client names a cancelled run (starter.RunError).
			m.ErrorType, m.Error = "Canceled", "the run was cancelled"
		}
	}
	return m
}

// memo upserts the run's outcome (changeRunMemo); a failure to do so is
// logged, never the run's failure.
func (r *replication) memo(ctx workflow.Context, res ReplicateResult, err error) {
	if workflow.GetVersion(ctx, changeRunMemo, workflow.DefaultVersion, 1) < 1 {
		return
	}
	if uerr := workflow.UpsertMemo(ctx, map[string]any{MemoRun: NewRunMemo(res, err)}); uerr != nil {
		workflow.GetLogger(ctx).Warn("could not record the run's outcome in its memo", "job", r.in.Job, "error", uerr)
	}
}
