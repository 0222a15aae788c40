package workflows

import (
	"errors"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/ferry-nas/ferry/activities"
)

// changeNotify: with notify configured, a run that fails for good sends a
// "failed" notification, and a successful run whose schedule's previous run
// failed sends a "recovered" one (Notify activity on the workflow queue).
const changeNotify = "notify-webhook"

// NotifyTarget is where a job's notifications go (ReplicateInput.Notify).
type NotifyTarget struct {
	// Webhook is the URL documents are POSTed to; it may carry a secret
	// and is never logged unredacted.
	Webhook string `json:"webhook"`
	// UIURL is the web UI's base URL for the run link; empty for none.
	UIURL string `json:"ui_url,omitempty"`
}

// NotifyReport is what became of the run's notification.
type NotifyReport struct {
	// Status is the notification sent (activities.NotifyFailed, NotifyRecovered).
	Status string `json:"status"`
	// Error is why it was not delivered; empty when it was.
	Error string `json:"error,omitempty"`
}

// Notification activity bounds: each attempt one POST (NotifyHTTPTimeout)
// and some slack; retried with backoff for notifyRetryFor in all.
const (
	notifyAttemptTimeout = activities.NotifyHTTPTimeout + 5*time.Second
	notifyRetryFor       = 2 * time.Minute
)

// notifier is the nil receiver the workflow names the Notify activity by.
var notifier *activities.Notifier

// notifyFailed reports the run's failure. A cancelled run is not a failure
// to report: someone stopped it.
func (r *replication) notifyFailed(ctx workflow.Context, err error) {
	var canceled *temporal.CanceledError
	if r.in.Notify == nil || ctx.Err() != nil || errors.As(err, &canceled) {
		return
	}
	if workflow.GetVersion(ctx, changeNotify, workflow.DefaultVersion, 1) < 1 {
		return
	}
	ev := r.event(ctx, activities.NotifyFailed, err)
	ev.Repeat = workflow.GetLastError(ctx) != nil
	r.notify(ctx, ev)
}

// notifyRecovered reports a success after a failure. "After a failure" is
// what Temporal's schedule knows: it passes the failure of its last
// completed run to the next one (workflow.GetLastError), and forgets it
// once a run succeeds. Every ferry run is a schedule action (`ferry run`
// triggers the schedule), so this holds for manual runs too.
func (r *replication) notifyRecovered(ctx workflow.Context, res *ReplicateResult) {
	if r.in.Notify == nil {
		return
	}
	prev := workflow.GetLastError(ctx)
	if prev == nil {
		return
	}
	if workflow.GetVersion(ctx, changeNotify, workflow.DefaultVersion, 1) < 1 {
		return
	}
	res.Notify = r.notify(ctx, r.event(ctx, activities.NotifyRecovered, prev))
	if res.Notify.Error != "" {
		res.Note = joinNote(res.Note, res.Notify.Error)
		r.status.Note = res.Note
	}
}

// event is the document for status, about err (the run's failure, or the
// previous run's).
func (r *replication) event(ctx workflow.Context, status string, err error) activities.NotifyEvent {
	info := workflow.GetInfo(ctx)
	ev := activities.NotifyEvent{
		Status: status, Job: r.in.Job,
		Source: r.in.Source.String(), Target: r.in.Target.String(),
		SourceHost: r.in.Source.Host, TargetHost: r.in.Target.Host,
		WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID,
		Time: workflow.Now(ctx).UTC(),
	}
	if err != nil {
		ev.Message = err.Error()
		var ae *temporal.ApplicationError
		var te *temporal.TimeoutError
		switch {
		case errors.As(err, &ae):
			ev.ErrorType = ae.Type()
		case errors.As(err, &te):
			ev.ErrorType = "Timeout"
		}
	}
	if r.in.Notify.UIURL != "" {
		ev.UILink = r.in.Notify.UIURL + "/namespaces/" + info.Namespace + "/workflows/" + info.WorkflowExecution.ID + "/" + info.WorkflowExecution.RunID + "/history"
	}
	return ev
}

// notify sends ev from any worker (the workflow queue) on a disconnected
// context; its failure is logged and reported, never the run's failure.
func (r *replication) notify(ctx workflow.Context, ev activities.NotifyEvent) *NotifyReport {
	ctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:              WorkflowTaskQueue,
		StartToCloseTimeout:    notifyAttemptTimeout,
		ScheduleToCloseTimeout: notifyRetryFor,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        30 * time.Second,
			NonRetryableErrorTypes: []string{activities.ErrNotifyRejected, activities.ErrInvalid},
		},
		Summary: "notify: " + ev.Status,
	})
	rep := &NotifyReport{Status: ev.Status}
	if err := workflow.ExecuteActivity(ctx, notifier.Notify, activities.NotifyInput{Webhook: r.in.Notify.Webhook, Event: ev}).Get(ctx, nil); err != nil {
		rep.Error = "the " + ev.Status + " notification was not delivered: " + err.Error()
		workflow.GetLogger(ctx).Error("notification not delivered; the run's outcome stands", "job", r.in.Job, "status", ev.Status, "error", err)
		if ev.Status == activities.NotifyFailed {
			r.status.Note = joinNote(r.status.Note, rep.Error)
		}
	}
	return rep
}
