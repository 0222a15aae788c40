package starter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// runStartTimeout bounds how long Run waits for the schedule to show the
// run its trigger started (or skipped).
const runStartTimeout = 30 * time.Second

// Run looks at the schedule runPollFirst after triggering it, then twice as
// long each time up to runPollMax: the scheduler starts the run within
// milliseconds, and a fixed 200 ms wait was most of a no-change run's latency.
const (
	runPollFirst = 5 * time.Millisecond
	runPollMax   = 200 * time.Millisecond
)

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
	before, err := describeSchedule(ctx, h)
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
	for wait := runPollFirst; ; wait = min(2*wait, runPollMax) {
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("schedule %s was triggered but showed no new run within %s: %w", id, runStartTimeout, ctx.Err())
		case <-time.After(wait):
		}
		desc, err := h.Describe(ctx)
		if err != nil {
			if ctx.Err() != nil || busy(err) {
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

// busy reports whether err is the server failing to answer in time or
// shedding load, which the next try may not meet. DescribeSchedule queries
// the schedule's own workflow, so with many schedules triggered at once
// (measured: 100) some describes time out or are cancelled server-side.
func busy(err error) bool {
	if unreachable(err) {
		return true
	}
	switch status.Code(err) {
	case codes.Canceled, codes.ResourceExhausted:
		return true
	}
	var re *serviceerror.ResourceExhausted
	var ce *serviceerror.Canceled
	return errors.As(err, &re) || errors.As(err, &ce) || strings.Contains(err.Error(), "RST_STREAM")
}

// describeSchedule describes the schedule, trying again while the server is
// busy (see busy) until runStartTimeout.
func describeSchedule(ctx context.Context, h client.ScheduleHandle) (*client.ScheduleDescription, error) {
	ctx, cancel := context.WithTimeout(ctx, runStartTimeout)
	defer cancel()
	for wait := runPollFirst; ; wait = min(2*wait, runPollMax) {
		desc, err := h.Describe(ctx)
		if err == nil || !busy(err) || ctx.Err() != nil {
			return desc, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
	}
}
