package workflows

import (
	"errors"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/ferry-nas/ferry/metrics"
)

// Run outcomes as metrics, emitted from workflow code through the SDK's
// metrics handler, which is replay-aware: nothing is emitted while a
// history is replayed, and no command is added, so no GetVersion is needed.
// The worker that runs the workflow task ending the run reports them (any
// worker of the shared workflow queue): sum over workers.
const (
	// MetricRuns counts finished runs by ferry_job, outcome (succeeded,
	// failed) and error_type (failed runs only).
	MetricRuns = "ferry_job_runs_total"
	// MetricLastFailure is the workflow time of the job's last failed run.
	MetricLastFailure = "ferry_job_last_failure_timestamp_seconds"
)

// recordOutcome counts the run's end; err is the run's final error.
func recordOutcome(ctx workflow.Context, job string, err error) {
	h := workflow.GetMetricsHandler(ctx).WithTags(map[string]string{metrics.LabelJob: job})
	if err == nil {
		h.WithTags(map[string]string{"outcome": "succeeded"}).Counter(MetricRuns).Inc(1)
		return
	}
	errType := "Unknown"
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) && ae.Type() != "" {
		errType = ae.Type()
	}
	h.WithTags(map[string]string{"outcome": "failed", metrics.LabelErrorType: errType}).Counter(MetricRuns).Inc(1)
	h.Gauge(MetricLastFailure).Update(float64(workflow.Now(ctx).UnixMilli()) / 1000)
}
