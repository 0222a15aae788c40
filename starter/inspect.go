package starter

import (
	"context"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/visibility"
	"github.com/ferry-nas/ferry/workflows"
)

// ReceiveActivity is the activity type whose heartbeats carry the stream's
// progress (activities.ReceiveProgress).
const ReceiveActivity = "Receive"

// queryTimeout bounds the status query: with no worker polling the workflow
// queue a query would otherwise hang; Inspect then reports what the server
// alone knows.
const queryTimeout = 3 * time.Second

// defaultHeartbeatInterval is the receive's heartbeat interval when its
// heartbeat does not say (workers from before it did).
const defaultHeartbeatInterval = 2 * time.Second

// now is the clock Inspect judges heartbeat ages by; tests set it.
var now = time.Now

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
		Phase:      keyword(info, visibility.Phase),
	}
	if target := keyword(info, visibility.Target); target != "" {
		p.TargetHost, _, _ = strings.Cut(target, ":")
	}
	if !p.Running() {
		return p, nil
	}
	t := now()
	for _, pa := range desc.GetPendingActivities() {
		if pa.GetActivityType().GetName() == ReceiveActivity {
			p.applyReceive(pa, t)
			break
		}
	}
	p.applyPickup(desc.GetPendingActivities(), t)

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
		// A query that times out waits on a worker (one killed while it
		// held the workflow's sticky queue, or none polling): that is not
		// Temporal being unreachable; a refused connection is.
		if refused(err) {
			return p, fmt.Errorf("query workflow %s: %w", p.WorkflowID, err)
		}
		p.Unanswered = true
		return p, nil
	}
	p.applyStatus(st)
	if p.Phase != workflows.PhaseStream {
		// A heartbeat left from an earlier step is not this phase's progress.
		p.clearReceive()
	}
	return p, nil
}

// keyword is a Keyword search attribute of the run ("" when absent).
func keyword(info *workflowpb.WorkflowExecutionInfo, name string) string {
	payload := info.GetSearchAttributes().GetIndexedFields()[name]
	if payload == nil {
		return ""
	}
	var s string
	if converter.GetDefaultDataConverter().FromPayload(payload, &s) != nil {
		return ""
	}
	return s
}

// applyReceive takes the pending Receive's state at time t: its attempt and
// last failure, and its last heartbeat unless that is too old to be news.
func (p *Progress) applyReceive(pa *workflowpb.PendingActivityInfo, t time.Time) {
	p.Attempt = pa.GetAttempt()
	if f := pa.GetLastFailure(); f != nil && p.Attempt > 1 {
		p.LastFailure = f.GetMessage()
		p.ReceiverLost = f.GetTimeoutFailureInfo().GetTimeoutType() == enumspb.TIMEOUT_TYPE_HEARTBEAT
	}
	var hbAt time.Time
	if ts := pa.GetLastHeartbeatTime(); ts != nil {
		hbAt = ts.AsTime()
		p.LastHeartbeat = hbAt
	}
	var rp activities.ReceiveProgress
	hb := pa.GetHeartbeatDetails()
	if len(hb.GetPayloads()) == 0 || converter.GetDefaultDataConverter().FromPayloads(hb, &rp) != nil {
		rp = activities.ReceiveProgress{}
	}
	interval := defaultHeartbeatInterval
	if rp.Interval > 0 {
		interval = time.Duration(rp.Interval * float64(time.Second))
	}
	// Heartbeat details outlive the attempt that recorded them: the
	// attempt running now may not have reported yet.
	started := time.Time{}
	if ts := pa.GetLastStartedTime(); ts != nil {
		started = ts.AsTime()
	}
	current := pa.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED && (rp.Attempt == 0 || rp.Attempt == p.Attempt) && !hbAt.Before(started)
	p.Bytes, p.Expected = rp.Bytes, rp.Expected
	p.StreamSent, p.WireSent = rp.StreamSent, rp.WireSent
	p.Resumes, p.Restarts, p.Restart, p.Reconnects = rp.Resumes, rp.Restarts, rp.Restart, rp.Reconnects
	switch {
	case pa.GetState() == enumspb.PENDING_ACTIVITY_STATE_SCHEDULED && p.Attempt > 1:
		p.Waiting = true
		// The server forgets the heartbeat's time with the attempt; the
		// attempt ended a heartbeat timeout after it, so the silence is
		// at least this long.
		switch ended := pa.GetLastAttemptCompleteTime(); {
		case !hbAt.IsZero():
			p.Silent = t.Sub(hbAt)
		case ended != nil:
			p.Silent, p.SilentAtLeast = t.Sub(ended.AsTime()), true
		}
		return
	case !current:
		// A new attempt that has not reported yet: the old figures are
		// where it starts from at best, its rate is not known.
		if !started.IsZero() && t.Sub(started) > 2*interval {
			p.Silent = t.Sub(started)
		}
		return
	}
	if rp.StartOffset > 0 && p.Attempt > 1 && rp.Resumes > 0 {
		p.ResumedAt = rp.StartOffset
	}
	if age := t.Sub(hbAt); age > 2*interval {
		p.Silent = age
		return
	}
	p.Rate, p.WireRate = rp.Rate, rp.WireRate
	if rp.Rate > 0 && rp.Expected > rp.Bytes {
		p.ETA = time.Duration(float64(rp.Expected-rp.Bytes) / rp.Rate * float64(time.Second)).Round(time.Second)
	}
}

// pickupWait is how long an activity may wait for a worker of its host
// before the progress line says none picked it up.
const pickupWait = 10 * time.Second

// applyPickup notes the activity that has waited longest (over pickupWait)
// for a worker of its host to pick it up: that host's worker is down or
// not connected. A retried receive is worded by applyReceive instead.
func (p *Progress) applyPickup(pending []*workflowpb.PendingActivityInfo, t time.Time) {
	for _, pa := range pending {
		if pa.GetState() != enumspb.PENDING_ACTIVITY_STATE_SCHEDULED || pa.GetScheduledTime() == nil ||
			(pa.GetActivityType().GetName() == ReceiveActivity && pa.GetAttempt() > 1) {
			continue
		}
		waited := t.Sub(pa.GetScheduledTime().AsTime())
		host, ok := strings.CutPrefix(pa.GetActivityOptions().GetTaskQueue().GetName(), "ferry-host-")
		if !ok || waited <= pickupWait || waited <= p.PickupWait {
			continue
		}
		p.PickupHost, p.PickupActivity, p.PickupWait = host, pa.GetActivityType().GetName(), waited
	}
}

// clearReceive forgets the receive's figures (another phase runs).
func (p *Progress) clearReceive() {
	keep := Progress{
		WorkflowID: p.WorkflowID, RunID: p.RunID, Status: p.Status, StartTime: p.StartTime,
		Phase: p.Phase, Snapshot: p.Snapshot, TargetHost: p.TargetHost, Step: p.Step, Steps: p.Steps,
		DoneBytes: p.DoneBytes, LastError: p.LastError, Unanswered: p.Unanswered,
		PickupHost: p.PickupHost, PickupActivity: p.PickupActivity, PickupWait: p.PickupWait,
		Resuming: p.Resuming, ResumedBytes: p.ResumedBytes, Note: p.Note,
	}
	*p = keep
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
