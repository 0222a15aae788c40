// Package starter is the client side of ferry's replication: it turns the
// configuration's jobs into Temporal Schedules (Apply), triggers a job's
// schedule now (Run), follows a run to its end with live progress (Follow,
// Inspect) and reports each job's state from the schedules and the
// visibility store (Status).
//
// The `ferry apply`, `ferry run` and `ferry status` commands are thin
// wrappers around it; `ferry demo` reuses Follow.
package starter

import (
	"errors"
	"fmt"

	"go.temporal.io/api/serviceerror"

	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/workflows"
)

// SchedulePrefix starts the ID of every schedule ferry manages.
const SchedulePrefix = "ferry-"

// ScheduleID is the ID of job's schedule. It is also the workflow ID the
// schedule's runs start with (the server appends the run's nominal time).
func ScheduleID(job string) string { return SchedulePrefix + job }

// InputFor maps a configured job to the input its replication runs start with.
func InputFor(job config.Job) workflows.ReplicateInput {
	return workflows.ReplicateInput{
		Job:      job.Name,
		Source:   workflows.Endpoint{Host: job.Source.Host, Dataset: job.Source.Dataset},
		Target:   workflows.Endpoint{Host: job.Target.Host, Dataset: job.Target.Dataset},
		Compress: job.Stream.Compress == config.CompressZstd,
		BWLimit:  job.Stream.BWLimit,
		Resume:   string(job.Stream.Resume),
		// Encrypted zfs datasets go raw unless the job says otherwise.
		SendDecrypted: job.Stream.ZFSSendDecrypted,
		DeepVerify:    job.Verify == config.VerifyDeep,
		// Zero (timeouts not set in the config) takes the workflow's defaults.
		HostTimeout:      job.Timeouts.Host,
		StreamTimeout:    job.Timeouts.Stream,
		HeartbeatTimeout: job.Timeouts.Heartbeat,
		RetentionSource:  job.Retention.Source.String(),
		RetentionTarget:  job.Retention.Target.String(),
		// Hook names only: the source worker holds the commands.
		PreSnapshotHook:  job.Hooks.PreSnapshot,
		PostSnapshotHook: job.Hooks.PostSnapshot,
		Notify:           notifyTarget(job.Notify),
	}
}

func notifyTarget(n config.Notify) *workflows.NotifyTarget {
	if n.IsZero() {
		return nil
	}
	return &workflows.NotifyTarget{Webhook: n.Webhook, UIURL: n.UIURL}
}

// NotAppliedError says a job has no schedule yet.
type NotAppliedError struct {
	Job string
}

func (e *NotAppliedError) Error() string {
	return fmt.Sprintf("job %s is not applied (no schedule %s): run `ferry apply` first", e.Job, ScheduleID(e.Job))
}

// Hint is the error with the apply command spelled out for configFile.
func (e *NotAppliedError) Hint(configFile string) string {
	return fmt.Sprintf("job %s is not applied (no schedule %s): run `ferry apply --config %s` first", e.Job, ScheduleID(e.Job), configFile)
}

func isNotFound(err error) bool {
	var nf *serviceerror.NotFound
	return errors.As(err, &nf)
}
