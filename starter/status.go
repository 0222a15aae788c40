package starter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/visibility"
	"github.com/ferry-nas/ferry/workflows"
)

// JobStatus is one job's state as `ferry status` shows it.
type JobStatus struct {
	Job    string `json:"job"`
	Source string `json:"source"`
	Target string `json:"target"`
	// Schedule is nil when the job's schedule does not exist (not applied).
	Schedule *ScheduleState `json:"schedule"`
	// Current is the run in progress, if any.
	Current *Progress `json:"current,omitempty"`
	// LastSuccess and LastError are the most recent completed run and the
	// most recent run that failed, timed out, was cancelled or terminated.
	LastSuccess *RunSummary `json:"last_success,omitempty"`
	LastError   *RunSummary `json:"last_error,omitempty"`
	// Problems met while gathering the above (the rest is still shown).
	Problems []string `json:"problems,omitempty"`
}

// Applied reports whether the job has a schedule.
func (s JobStatus) Applied() bool { return s.Schedule != nil }

// ScheduleState is a job's schedule as the server describes it.
type ScheduleState struct {
	ID     string `json:"id"`
	Paused bool   `json:"paused"`
	Note   string `json:"note,omitempty"`
	// NextRun is the next scheduled run; zero when paused or none.
	NextRun time.Time `json:"next_run,omitzero"`
}

// RunSummary is a finished run.
type RunSummary struct {
	WorkflowID string    `json:"workflow_id"`
	RunID      string    `json:"run_id"`
	Status     string    `json:"status"`
	StartTime  time.Time `json:"start_time"`
	CloseTime  time.Time `json:"close_time"`
	// Snapshot, Bytes and Steps of a completed run.
	Snapshot string `json:"snapshot,omitempty"`
	Bytes    int64  `json:"bytes,omitempty"`
	Steps    int    `json:"steps,omitempty"`
	// Note is what the run said an administrator should know (replicas
	// kept after the source deleted them).
	Note string `json:"note,omitempty"`
	// Prune is what the run's retention step did on each side.
	Prune *workflows.PruneReport `json:"prune,omitempty"`
	// ErrorType and Error of a run that did not complete.
	ErrorType string `json:"error_type,omitempty"`
	Error     string `json:"error,omitempty"`
}

// Duration is how long the run took.
func (r RunSummary) Duration() time.Duration { return r.CloseTime.Sub(r.StartTime) }

// Visibility queries. SQL visibility (SQLite, MySQL, PostgreSQL) rejects
// ORDER BY but always lists running executions first, then the others by
// close time, newest first, so the first row of each query is the one
// wanted. The status values are the ones the query language spells.
const (
	queryRunning = "%s = %s AND ExecutionStatus = 'Running'"
	querySuccess = "%s = %s AND ExecutionStatus = 'Completed'"
	queryError   = "%s = %s AND ExecutionStatus IN ('Failed', 'TimedOut', 'Canceled', 'Terminated')"
)

// Status reports the state of the named jobs (every job in cfg when names
// is empty), in name order: the schedule, the run in progress with its live
// progress, the last success and the last error. Problems reaching one part
// are recorded in JobStatus.Problems; an error is returned only for an
// unknown job name or a cancelled ctx.
func Status(ctx context.Context, c client.Client, cfg *config.Config, names ...string) ([]JobStatus, error) {
	if len(names) == 0 {
		names = cfg.JobNames()
	}
	var out []JobStatus
	for _, name := range names {
		job, err := cfg.Job(name)
		if err != nil {
			return nil, err
		}
		js := jobStatus(ctx, c, job)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		out = append(out, js)
	}
	return out, nil
}

func jobStatus(ctx context.Context, c client.Client, job config.Job) JobStatus {
	js := JobStatus{Job: job.Name, Source: job.Source.String(), Target: job.Target.String()}
	problem := func(format string, args ...any) { js.Problems = append(js.Problems, fmt.Sprintf(format, args...)) }

	id := ScheduleID(job.Name)
	desc, err := c.ScheduleClient().GetHandle(ctx, id).Describe(ctx)
	switch {
	case isNotFound(err):
	case err != nil:
		problem("schedule %s: %v", id, err)
	default:
		s := &ScheduleState{ID: id}
		if st := desc.Schedule.State; st != nil {
			s.Paused, s.Note = st.Paused, st.Note
		}
		s.NextRun = nextRun(desc)
		js.Schedule = s
	}

	quoted := quote(job.Name)
	if e, err := firstExecution(ctx, c, fmt.Sprintf(queryRunning, visibility.Job, quoted)); err != nil {
		problem("running runs: %v", err)
	} else if e != nil {
		p, err := Inspect(ctx, c, e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId())
		if err != nil {
			problem("current run: %v", err)
		} else {
			js.Current = &p
		}
	}

	if e, err := firstExecution(ctx, c, fmt.Sprintf(querySuccess, visibility.Job, quoted)); err != nil {
		problem("last success: %v", err)
	} else if e != nil {
		s := summary(e)
		var res workflows.ReplicateResult
		if err := c.GetWorkflow(ctx, s.WorkflowID, s.RunID).Get(ctx, &res); err == nil {
			s.Snapshot, s.Bytes, s.Steps, s.Note, s.Prune = res.Snapshot, res.Bytes, len(res.Plan.Steps), res.Note, res.Prune
		}
		js.LastSuccess = &s
	}

	if e, err := firstExecution(ctx, c, fmt.Sprintf(queryError, visibility.Job, quoted)); err != nil {
		problem("last error: %v", err)
	} else if e != nil {
		s := summary(e)
		// The failure is in the run's history (kept for the namespace's
		// retention period), not in visibility.
		err := c.GetWorkflow(ctx, s.WorkflowID, s.RunID).Get(ctx, nil)
		var wee *temporal.WorkflowExecutionError
		if errors.As(err, &wee) {
			re := runError(s.WorkflowID, s.RunID, err)
			s.ErrorType, s.Error = re.Type, re.Message
		} else {
			s.Error = "run ended " + strings.ToLower(s.Status) + " (its history is gone, no message)"
		}
		js.LastError = &s
	}
	return js
}

func firstExecution(ctx context.Context, c client.Client, query string) (*workflowpb.WorkflowExecutionInfo, error) {
	resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, PageSize: 1})
	if err != nil {
		return nil, fmt.Errorf("visibility query %q: %w", query, err)
	}
	if len(resp.GetExecutions()) == 0 {
		return nil, nil
	}
	return resp.GetExecutions()[0], nil
}

func summary(e *workflowpb.WorkflowExecutionInfo) RunSummary {
	return RunSummary{
		WorkflowID: e.GetExecution().GetWorkflowId(),
		RunID:      e.GetExecution().GetRunId(),
		Status:     statusName(e.GetStatus()),
		StartTime:  e.GetStartTime().AsTime(),
		CloseTime:  e.GetCloseTime().AsTime(),
	}
}

// quote renders s as a visibility query string literal.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
