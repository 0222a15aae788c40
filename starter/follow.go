package starter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/visibility"
	"github.com/ferry-nas/ferry/workflows"
)

// ReceiveActivity is the activity type whose heartbeats carry the stream's
// progress (activities.ReceiveProgress).
const ReceiveActivity = "Receive"

// followInterval is how often Follow looks at a run; tests shorten it.
var followInterval = time.Second

// queryTimeout bounds the status query: with no worker polling the workflow
// queue a query would otherwise hang; Inspect then reports what the server
// alone knows.
const queryTimeout = 3 * time.Second

// Progress is a snapshot of a run: its phase and step from the workflow's
// status query, and the live transfer numbers of the current step from the
// pending Receive activity's last heartbeat.
type Progress struct {
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
	// Status is the execution status: Running, Completed, Failed, ...
	Status    string    `json:"status"`
	StartTime time.Time `json:"start_time"`
	Phase     string    `json:"phase,omitempty"`
	Snapshot  string    `json:"snapshot,omitempty"`
	// Step (1-based) of Steps planned; 0 before the plan is known.
	Step  int `json:"step"`
	Steps int `json:"steps"`
	// DoneBytes moved by the steps already finished.
	DoneBytes int64 `json:"done_bytes"`
	// Bytes, Expected and Rate (bytes per second) of the step being
	// received; zero when no Receive is running. Expected is 0 when unknown.
	Bytes    int64   `json:"bytes"`
	Expected int64   `json:"expected"`
	Rate     float64 `json:"rate"`
	// ETA of the current step; 0 when unknown. JSON: eta_seconds.
	ETA time.Duration `json:"-"`
	// LastHeartbeat is when the receiving worker last reported.
	LastHeartbeat time.Time `json:"last_heartbeat,omitzero"`
	// Attempt of the current receive (above 1 after a retry) and the last
	// failure it is retrying from.
	Attempt     int32  `json:"attempt,omitempty"`
	LastFailure string `json:"last_failure,omitempty"`
	// LastError is the workflow's last recovered error (status query).
	LastError string `json:"last_error,omitempty"`
	// Unanswered is set when the status query went unanswered (no worker
	// is polling ferry's workflow queue); Phase then comes from FerryPhase.
	Unanswered bool `json:"unanswered,omitempty"`
	// Resuming is set when the current step continues a partial receive an
	// earlier run kept; ResumedBytes is how much of it was kept (0 when the
	// backend resumes by token and does not say).
	Resuming     bool  `json:"resuming,omitempty"`
	ResumedBytes int64 `json:"resumed_bytes,omitempty"`
	// Note is the run's note for the administrator (status query), known
	// once the plan is made.
	Note string `json:"note,omitempty"`
}

// MarshalJSON writes ETA as eta_seconds, which scripts read more easily
// than nanoseconds.
func (p Progress) MarshalJSON() ([]byte, error) {
	type plain Progress
	return json.Marshal(struct {
		plain
		ETASeconds int64 `json:"eta_seconds"`
	}{plain(p), int64(p.ETA / time.Second)})
}

// Running reports whether the run had not finished when it was inspected.
func (p Progress) Running() bool { return p.Status == "Running" }

// same reports whether p and q show the same thing; the heartbeat time alone
// changing is not news.
func (p Progress) same(q Progress) bool {
	p.LastHeartbeat, q.LastHeartbeat = time.Time{}, time.Time{}
	return p == q
}

// String renders p as one line, e.g.
// "stream step 1/2 ferry_share01_20250101T000000Z  1.2 GiB / 4.0 GiB (30%)  48.0 MiB/s  ETA 1m0s".
func (p Progress) String() string {
	var b strings.Builder
	phase := p.Phase
	if phase == "" {
		phase = strings.ToLower(p.Status)
	}
	b.WriteString(phase)
	if p.Steps > 0 && p.Step > 0 {
		fmt.Fprintf(&b, " step %d/%d", p.Step, p.Steps)
	}
	if p.Snapshot != "" {
		b.WriteString(" " + p.Snapshot)
	}
	if p.Bytes > 0 || p.Expected > 0 {
		b.WriteString("  " + activities.ReceiveProgress{Bytes: p.Bytes, Expected: p.Expected, Rate: p.Rate}.String())
	} else if p.DoneBytes > 0 {
		b.WriteString("  " + FormatBytes(p.DoneBytes) + " moved")
	}
	if p.Resuming && p.Phase == workflows.PhaseStream {
		if p.ResumedBytes > 0 {
			fmt.Fprintf(&b, "  (resuming from %s kept by an earlier run)", FormatBytes(p.ResumedBytes))
		} else {
			b.WriteString("  (resuming a partial receive kept by an earlier run)")
		}
	}
	if p.Attempt > 1 {
		fmt.Fprintf(&b, "  (attempt %d", p.Attempt)
		if p.LastFailure != "" {
			b.WriteString(", after: " + p.LastFailure)
		}
		b.WriteString(")")
	}
	if p.Unanswered {
		if p.Phase == "" {
			return "waiting for a worker (none answered the status query)"
		}
		b.WriteString("  (no worker answered the status query)")
	}
	return b.String()
}

// Inspect looks at a run once: DescribeWorkflowExecution for its status,
// phase attribute and pending Receive heartbeat, and the workflow's status
// query while it runs. An empty runID means the latest run of workflowID.
func Inspect(ctx context.Context, c client.Client, workflowID, runID string) (Progress, error) {
	desc, err := c.DescribeWorkflowExecution(ctx, workflowID, runID)
	if err != nil {
		return Progress{}, fmt.Errorf("describe workflow %s: %w", workflowID, err)
	}
	info := desc.GetWorkflowExecutionInfo()
	p := Progress{
		WorkflowID: info.GetExecution().GetWorkflowId(),
		RunID:      info.GetExecution().GetRunId(),
		Status:     statusName(info.GetStatus()),
		StartTime:  info.GetStartTime().AsTime(),
	}
	if payload := info.GetSearchAttributes().GetIndexedFields()[visibility.Phase]; payload != nil {
		var phase string
		if converter.GetDefaultDataConverter().FromPayload(payload, &phase) == nil {
			p.Phase = phase
		}
	}
	if !p.Running() {
		return p, nil
	}

	for _, pa := range desc.GetPendingActivities() {
		if pa.GetActivityType().GetName() != ReceiveActivity {
			continue
		}
		p.Attempt = pa.GetAttempt()
		if f := pa.GetLastFailure(); f != nil && p.Attempt > 1 {
			p.LastFailure = f.GetMessage()
		}
		if t := pa.GetLastHeartbeatTime(); t != nil {
			p.LastHeartbeat = t.AsTime()
		}
		if hb := pa.GetHeartbeatDetails(); len(hb.GetPayloads()) > 0 {
			var rp activities.ReceiveProgress
			if converter.GetDefaultDataConverter().FromPayloads(hb, &rp) == nil {
				p.Bytes, p.Expected, p.Rate, p.ETA = rp.Bytes, rp.Expected, rp.Rate, rp.ETA()
			}
		}
		break
	}

	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	var st workflows.Status
	v, err := c.QueryWorkflow(qctx, p.WorkflowID, p.RunID, workflows.QueryStatus)
	if err == nil {
		err = v.Get(&st)
	}
	if err != nil {
		if ctx.Err() != nil {
			return p, ctx.Err()
		}
		p.Unanswered = true
		return p, nil
	}
	p.applyStatus(st)
	if p.Phase != workflows.PhaseStream {
		// A heartbeat left from an earlier step is not this phase's progress.
		p.Bytes, p.Expected, p.Rate, p.ETA = 0, 0, 0, 0
	}
	return p, nil
}

// applyStatus takes what the workflow's status query says. While a step
// runs, Snapshot is that step's snapshot (an earlier run's when the step
// resumes its kept partial), not the one the run made.
func (p *Progress) applyStatus(st workflows.Status) {
	p.Phase, p.Snapshot, p.Step, p.Steps, p.DoneBytes, p.LastError, p.Note = st.Phase, st.Snapshot, st.Step, st.Steps, st.Bytes, st.LastError, st.Note
	if st.Plan == nil || st.Step < 1 || st.Step > len(st.Plan.Steps) {
		return
	}
	step := st.Plan.Steps[st.Step-1]
	p.Snapshot = step.To
	if step.Resume != nil {
		p.Resuming = true
		if step.Resume.Resume != nil {
			p.ResumedBytes = step.Resume.Resume.Offset
		}
	}
}

// statusName renders WORKFLOW_EXECUTION_STATUS_TIMED_OUT as "TimedOut", the
// spelling visibility queries use.
func statusName(s enumspb.WorkflowExecutionStatus) string {
	name := strings.TrimPrefix(s.String(), "WORKFLOW_EXECUTION_STATUS_")
	var b strings.Builder
	for _, part := range strings.Split(strings.ToLower(name), "_") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// RunError is a replication run that ended without success.
type RunError struct {
	WorkflowID, RunID string
	// Type is the application error's type (Conflict, NotFound, NoSpace,
	// ...), or Timeout, Canceled or Terminated when the run did not fail by
	// itself; empty when unknown.
	Type string
	// Message is the application error's own message, without the SDK's
	// wrapping.
	Message string
	// Err is the error as the SDK returned it.
	Err error
}

func (e *RunError) Error() string {
	if e.Type == "" {
		return fmt.Sprintf("run %s failed: %s", e.WorkflowID, e.Message)
	}
	return fmt.Sprintf("run %s failed: %s: %s", e.WorkflowID, e.Type, e.Message)
}

func (e *RunError) Unwrap() error { return e.Err }

// runError unwraps the SDK's error for a run to the application error that
// caused it.
func runError(workflowID, runID string, err error) *RunError {
	re := &RunError{WorkflowID: workflowID, RunID: runID, Err: err, Message: err.Error()}
	var (
		appErr      *temporal.ApplicationError
		timeoutErr  *temporal.TimeoutError
		canceledErr *temporal.CanceledError
		termErr     *temporal.TerminatedError
	)
	switch {
	case errors.As(err, &appErr):
		re.Type, re.Message = appErr.Type(), appErr.Message()
	case errors.As(err, &timeoutErr):
		re.Type, re.Message = "Timeout", timeoutErr.Message()
	case errors.As(err, &canceledErr):
		re.Type, re.Message = "Canceled", "the run was cancelled"
	case errors.As(err, &termErr):
		re.Type, re.Message = "Terminated", "the run was terminated"
	}
	return re
}

// Follow waits for a run to finish. While it runs, onProgress (if not nil)
// gets the run's Progress about once a second, and only when something
// changed. It returns the run's result, or a *RunError carrying the
// application error's type and message when the run failed, was cancelled,
// terminated or timed out. Cancelling ctx stops following; the run goes on.
func Follow(ctx context.Context, c client.Client, workflowID, runID string, onProgress func(Progress)) (workflows.ReplicateResult, error) {
	var res workflows.ReplicateResult
	err := follow(ctx, c, workflowID, runID, onProgress, &res)
	return res, err
}

// follow is Follow decoding the run's result into res (a replication's or
// a restore's).
func follow(ctx context.Context, c client.Client, workflowID, runID string, onProgress func(Progress), res any) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	done := make(chan error, 1)
	go func() { done <- c.GetWorkflow(ctx, workflowID, runID).Get(ctx, res) }()

	var last Progress
	reported := false
	report := func() {
		if onProgress == nil {
			return
		}
		p, err := Inspect(ctx, c, workflowID, runID)
		if err != nil || !p.Running() || (reported && p.same(last)) {
			return
		}
		last, reported = p, true
		onProgress(p)
	}

	report()
	tick := time.NewTicker(followInterval)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var wee *temporal.WorkflowExecutionError
			if errors.As(err, &wee) {
				return runError(workflowID, runID, err)
			}
			if err != nil {
				return fmt.Errorf("waiting for run %s: %w", workflowID, err)
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			report()
		}
	}
}
