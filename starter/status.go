package starter

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
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
	// Bytes are wire bytes of every receive attempt (an attempt cut short
	// counts up to its last heartbeat); Received the stream bytes, resumes,
	// restarts and reconnects besides.
	Snapshot string             `json:"snapshot,omitempty"`
	Bytes    int64              `json:"bytes,omitempty"`
	Received workflows.Received `json:"received,omitzero"`
	Steps    int                `json:"steps,omitempty"`
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
	querySuccess = "%s = %s AND ExecutionStatus = 'Completed'"
	queryError   = "%s = %s AND ExecutionStatus IN ('Failed', 'TimedOut', 'Canceled', 'Terminated')"

	// The same for every job at once: replication runs, running ones, then
	// closed ones newest first.
	queryAllRunning = "WorkflowType = '" + workflows.ReplicateWorkflowName + "' AND ExecutionStatus = 'Running'"
	queryAllClosed  = "WorkflowType = '" + workflows.ReplicateWorkflowName + "' AND ExecutionStatus != 'Running'"
)

// Bounds of Status's work, whatever the number of jobs and runs.
const (
	// listPage is the page size of Status's visibility lists.
	listPage = 1000
	// maxClosedScan caps the closed runs Status reads from the list while
	// looking for each job's last success and last error; jobs it did not
	// meet by then get a query of their own.
	maxClosedScan = 5000
	// statusParallel bounds the calls Status makes at once for single
	// runs (describe and query a running one, read an old run's history).
	statusParallel = 8
)

// Status reports the state of the named jobs (every job in cfg when names
// is empty), in name order: the schedule, the run in progress with its live
// progress, the last success and the last error. Problems reaching one part
// are recorded in JobStatus.Problems; an error is returned only for an
// unknown job name, a cancelled ctx, or an *UnreachableError when Temporal
// does not answer at all.
//
// It makes a bounded number of Temporal calls, not a few per job: one
// schedule list, one list of running runs and a list of closed runs read
// newest first, each run's outcome from its memo (runs that ended before
// runs recorded it fall back to their history). Only running runs are
// described and queried one by one, statusParallel at a time.
func Status(ctx context.Context, c client.Client, cfg *config.Config, names ...string) ([]JobStatus, error) {
	if len(names) == 0 {
		names = cfg.JobNames()
	}
	out := make([]JobStatus, 0, len(names))
	index := map[string]int{}
	for _, name := range names {
		job, err := cfg.Job(name)
		if err != nil {
			return nil, err
		}
		if _, dup := index[job.Name]; dup {
			continue
		}
		index[job.Name] = len(out)
		out = append(out, JobStatus{Job: job.Name, Source: job.Source.String(), Target: job.Target.String()})
	}
	g := &gather{c: c, out: out, index: index, sem: make(chan struct{}, statusParallel)}
	g.schedules(ctx)
	if g.down != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &UnreachableError{Err: g.down}
	}
	g.running(ctx)
	g.closed(ctx)
	g.wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	for i := range out {
		sort.Strings(out[i].Problems)
	}
	return out, nil
}

// UnreachableError says Temporal's frontend did not answer.
type UnreachableError struct{ Err error }

func (e *UnreachableError) Error() string { return "Temporal unreachable: " + e.Err.Error() }
func (e *UnreachableError) Unwrap() error { return e.Err }

// gather fills Status's answer; per-run work runs in goroutines, at most
// statusParallel at once.
type gather struct {
	c     client.Client
	out   []JobStatus
	index map[string]int
	mu    sync.Mutex // out, once goroutines run
	wg    sync.WaitGroup
	sem   chan struct{}
	// down is set when Temporal did not answer the first list.
	down error
}

// spawn runs f in a goroutine, under the parallelism bound.
func (g *gather) spawn(ctx context.Context, f func(ctx context.Context)) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		select {
		case g.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-g.sem }()
		f(ctx)
	}()
}

// set changes job i's status under the lock.
func (g *gather) set(i int, f func(js *JobStatus)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f(&g.out[i])
}

func (g *gather) problem(i int, format string, args ...any) {
	g.set(i, func(js *JobStatus) { js.Problems = append(js.Problems, fmt.Sprintf(format, args...)) })
}

func (g *gather) problemAll(format string, args ...any) {
	for i := range g.out {
		g.problem(i, format, args...)
	}
}

// schedules lists ferry's schedules once; a job whose schedule the list
// does not show (the list lags a new schedule by a moment) is described
// by ID.
func (g *gather) schedules(ctx context.Context) {
	found := map[int]bool{}
	it, err := g.c.ScheduleClient().List(ctx, client.ScheduleListOptions{PageSize: listPage})
	for err == nil && it.HasNext() {
		var e *client.ScheduleListEntry
		if e, err = it.Next(); err != nil {
			break
		}
		job, ok := strings.CutPrefix(e.ID, SchedulePrefix)
		i, wanted := g.index[job]
		if !ok || !wanted || e.WorkflowType.Name != workflows.ReplicateWorkflowName {
			continue
		}
		found[i] = true
		s := &ScheduleState{ID: e.ID, Paused: e.Paused, Note: e.Note}
		if !e.Paused {
			for _, t := range e.NextActionTimes {
				if t.After(time.Now()) { // the list's copy may be a run behind
					s.NextRun = t
					break
				}
			}
		}
		g.set(i, func(js *JobStatus) { js.Schedule = s })
	}
	if err != nil && (ctx.Err() != nil || unreachable(err)) {
		g.down = err
		return
	}
	for i := range g.out {
		if found[i] {
			continue
		}
		id := ScheduleID(g.out[i].Job)
		g.spawn(ctx, func(ctx context.Context) {
			desc, err := g.c.ScheduleClient().GetHandle(ctx, id).Describe(ctx)
			switch {
			case isNotFound(err):
			case err != nil:
				g.problem(i, "schedule %s: %v", id, err)
			default:
				s := &ScheduleState{ID: id}
				if st := desc.Schedule.State; st != nil {
					s.Paused, s.Note = st.Paused, st.Note
				}
				s.NextRun = nextRun(desc)
				g.set(i, func(js *JobStatus) { js.Schedule = s })
			}
		})
	}
}

// running lists the running replications once and inspects each wanted
// job's (the describe and query that give its live progress).
func (g *gather) running(ctx context.Context) {
	rows, _, err := g.list(ctx, queryAllRunning, 0)
	if err != nil {
		g.problemAll("running runs: %v", err)
		return
	}
	seen := map[int]bool{}
	for _, e := range rows {
		i, ok := g.index[keyword(e, visibility.Job)]
		if !ok || seen[i] {
			continue
		}
		seen[i] = true
		id, run := e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId()
		g.spawn(ctx, func(ctx context.Context) {
			p, err := Inspect(ctx, g.c, id, run)
			if err != nil {
				g.problem(i, "current run: %v", err)
				return
			}
			g.set(i, func(js *JobStatus) { js.Current = &p })
		})
	}
}

// closed reads finished replications newest first until every wanted job
// has its last success and last error, or maxClosedScan rows were read;
// the jobs still missing one get a query of their own.
func (g *gather) closed(ctx context.Context) {
	rows, complete, err := g.list(ctx, queryAllClosed, maxClosedScan)
	if err != nil {
		g.problemAll("finished runs: %v", err)
		return
	}
	success := map[int]*workflowpb.WorkflowExecutionInfo{}
	failure := map[int]*workflowpb.WorkflowExecutionInfo{}
	for _, e := range rows {
		i, ok := g.index[keyword(e, visibility.Job)]
		if !ok {
			continue
		}
		m := success
		if e.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
			m = failure
		}
		if _, have := m[i]; !have {
			m[i] = e
		}
	}
	type part struct {
		found map[int]*workflowpb.WorkflowExecutionInfo
		query string
		what  string
		fill  func(ctx context.Context, i int, e *workflowpb.WorkflowExecutionInfo)
	}
	parts := []part{
		{success, querySuccess, "last success", g.fillSuccess},
		{failure, queryError, "last error", g.fillError},
	}
	for i := range g.out {
		quoted := quote(g.out[i].Job)
		for _, pt := range parts {
			e := pt.found[i]
			switch {
			case e != nil && hasMemo(e):
				pt.fill(ctx, i, e)
			case e != nil: // its outcome is in its history only
				g.spawn(ctx, func(ctx context.Context) { pt.fill(ctx, i, e) })
			case complete: // every run was read: there is none
			default:
				g.spawn(ctx, func(ctx context.Context) {
					e, err := firstExecution(ctx, g.c, fmt.Sprintf(pt.query, visibility.Job, quoted))
					if err != nil {
						g.problem(i, "%s: %v", pt.what, err)
					} else if e != nil {
						pt.fill(ctx, i, e)
					}
				})
			}
		}
	}
}

// list reads query's rows, up to about limit (0: all); complete says every
// row was read.
func (g *gather) list(ctx context.Context, query string, limit int) (rows []*workflowpb.WorkflowExecutionInfo, complete bool, err error) {
	var token []byte
	for {
		resp, err := g.c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, PageSize: listPage, NextPageToken: token})
		if err != nil {
			return rows, false, fmt.Errorf("visibility query %q: %w", query, err)
		}
		rows = append(rows, resp.GetExecutions()...)
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			return rows, true, nil
		}
		if limit > 0 && len(rows) >= limit {
			return rows, false, nil
		}
	}
}

// hasMemo reports whether the run recorded its outcome in its memo.
func hasMemo(e *workflowpb.WorkflowExecutionInfo) bool {
	return e.GetMemo().GetFields()[workflows.MemoRun] != nil
}

func runMemo(e *workflowpb.WorkflowExecutionInfo) (workflows.RunMemo, bool) {
	var m workflows.RunMemo
	p := e.GetMemo().GetFields()[workflows.MemoRun]
	if p == nil || converter.GetDefaultDataConverter().FromPayload(p, &m) != nil {
		return m, false
	}
	return m, true
}

// fillSuccess records e as job i's last success, from its memo or, for a
// run that ended before runs recorded one, from its history.
func (g *gather) fillSuccess(ctx context.Context, i int, e *workflowpb.WorkflowExecutionInfo) {
	s := summary(e)
	if m, ok := runMemo(e); ok {
		s.Snapshot, s.Bytes, s.Received, s.Steps, s.Note, s.Prune = m.Snapshot, m.Bytes, m.Received, m.Steps, m.Note, m.Prune
	} else {
		var res workflows.ReplicateResult
		if err := g.c.GetWorkflow(ctx, s.WorkflowID, s.RunID).Get(ctx, &res); err == nil {
			s.Snapshot, s.Bytes, s.Received, s.Steps, s.Note, s.Prune = res.Snapshot, res.Bytes, res.Received, len(res.Plan.Steps), res.Note, res.Prune
		}
	}
	g.set(i, func(js *JobStatus) { js.LastSuccess = &s })
}

// fillError records e as job i's last error, from its memo or its history.
func (g *gather) fillError(ctx context.Context, i int, e *workflowpb.WorkflowExecutionInfo) {
	s := summary(e)
	if m, ok := runMemo(e); ok && m.Error != "" {
		s.ErrorType, s.Error = m.ErrorType, m.Error
	} else {
		// The failure is in the run's history (kept for the namespace's
		// retention period), not in visibility.
		err := g.c.GetWorkflow(ctx, s.WorkflowID, s.RunID).Get(ctx, nil)
		var wee *temporal.WorkflowExecutionError
		if errors.As(err, &wee) {
			re := runError(s.WorkflowID, s.RunID, err)
			s.ErrorType, s.Error = re.Type, re.Message
		} else {
			s.Error = "run ended " + strings.ToLower(s.Status) + " (its history is gone, no message)"
		}
	}
	g.set(i, func(js *JobStatus) { js.LastError = &s })
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
