package starter

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/client"
)

// runStartTimeout bounds how long Run waits for the schedule to show the
// run its trigger started (or skipped).
const runStartTimeout = 30 * time.Second

// runPoll is how often Run looks at the schedule after triggering it.
const runPoll = 200 * time.Millisecond

// Started is the run `ferry run` set off, or the one it found in progress.
type Started struct {
	Job        string `json:"job"`
	ScheduleID string `json:"schedule_id"`
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
	// AlreadyRunning: a run was in progress, so the schedule's overlap
	// policy skipped the trigger; WorkflowID/RunID name that run.
	AlreadyRunning bool `json:"already_running"`
	// Paused: the schedule is paused (a manual job, or paused by hand); the
	// trigger started the run anyway and the schedule stays paused.
	Paused bool `json:"paused"`
}

// Run triggers job's schedule now, as `temporal schedule trigger
// --schedule-id ferry-<job>` does, and returns the run it started. A
// trigger runs even when the schedule is paused (Temporal takes manual
// actions regardless of the pause), so manual jobs need nothing special.
// If a run is already in progress the overlap policy (skip) drops the
// trigger: Run then returns that run with AlreadyRunning set.
//
// The schedule must exist (see Apply); otherwise Run returns a
// *NotAppliedError.
func Run(ctx context.Context, c client.Client, job string) (Started, error) {
	id := ScheduleID(job)
	st := Started{Job: job, ScheduleID: id}
	h := c.ScheduleClient().GetHandle(ctx, id)
	before, err := h.Describe(ctx)
	if isNotFound(err) {
		return st, &NotAppliedError{Job: job}
	}
	if err != nil {
		return st, fmt.Errorf("describe schedule %s: %w", id, err)
	}
	st.Paused = before.Schedule.State != nil && before.Schedule.State.Paused
	known := map[string]bool{}
	for _, a := range before.Info.RecentActions {
		if r := a.StartWorkflowResult; r != nil {
			known[r.WorkflowID+"/"+r.FirstExecutionRunID] = true
		}
	}
	for _, r := range before.Info.RunningWorkflows {
		known[r.WorkflowID+"/"+r.FirstExecutionRunID] = true
	}
	skippedBefore := before.Info.NumActionsSkippedOverlap

	if err := h.Trigger(ctx, client.ScheduleTriggerOptions{}); err != nil {
		return st, fmt.Errorf("trigger schedule %s: %w", id, err)
	}

	ctx, cancel := context.WithTimeout(ctx, runStartTimeout)
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("schedule %s was triggered but showed no new run within %s: %w", id, runStartTimeout, ctx.Err())
		case <-time.After(runPoll):
		}
		desc, err := h.Describe(ctx)
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			return st, fmt.Errorf("describe schedule %s: %w", id, err)
		}
		// A run the schedule started since the trigger (newest first).
		for i := len(desc.Info.RecentActions) - 1; i >= 0; i-- {
			r := desc.Info.RecentActions[i].StartWorkflowResult
			if r != nil && !known[r.WorkflowID+"/"+r.FirstExecutionRunID] {
				st.WorkflowID, st.RunID = r.WorkflowID, r.FirstExecutionRunID
				return st, nil
			}
		}
		if desc.Info.NumActionsSkippedOverlap > skippedBefore {
			st.AlreadyRunning = true
			if n := len(desc.Info.RunningWorkflows); n > 0 {
				r := desc.Info.RunningWorkflows[n-1]
				st.WorkflowID, st.RunID = r.WorkflowID, r.FirstExecutionRunID
				return st, nil
			}
			// It finished between the skip and now: name the last run.
			if n := len(desc.Info.RecentActions); n > 0 && desc.Info.RecentActions[n-1].StartWorkflowResult != nil {
				r := desc.Info.RecentActions[n-1].StartWorkflowResult
				st.WorkflowID, st.RunID = r.WorkflowID, r.FirstExecutionRunID
				return st, nil
			}
			return st, fmt.Errorf("schedule %s skipped the trigger (a run was in progress) but names no run", id)
		}
	}
}
