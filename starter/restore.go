package starter

import (
	"context"
	"errors"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/workflows"
)

// RestoreRequestFor maps a configured job and a destination to its
// restore: the replica on the job's target, the job's stream settings and
// timeouts.
func RestoreRequestFor(job config.Job, to config.Endpoint, snapshot string) workflows.RestoreRequest {
	in := InputFor(job)
	return workflows.RestoreRequest{Job: in.Job, From: in.Target, To: workflows.Endpoint{Host: to.Host, Dataset: to.Dataset},
		Snapshot: snapshot, Compress: in.Compress, BWLimit: in.BWLimit, Resume: in.Resume,
		HostTimeout: in.HostTimeout, StreamTimeout: in.StreamTimeout, HeartbeatTimeout: in.HeartbeatTimeout}
}

// Restore starts a RestoreWorkflow. One restore into a destination runs at
// a time: a second is refused, naming the first.
func Restore(ctx context.Context, c client.Client, req workflows.RestoreRequest) (Started, error) {
	id := workflows.RestoreWorkflowID(req.To)
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       id,
		TaskQueue:                                workflows.WorkflowTaskQueue,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		// The run's summary in the web UI, as the schedule gives every replication run one.
		StaticSummary: fmt.Sprintf("ferry restore %s: %s -> %s", req.Job, req.From, req.To),
	}, workflows.RestoreWorkflowName, req)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return Started{}, fmt.Errorf("a restore into %s is already running (workflow %s); follow it with `temporal workflow show --workflow-id %s`", req.To, id, id)
	}
	if err != nil {
		return Started{}, fmt.Errorf("start %s: %w", id, err)
	}
	return Started{WorkflowID: run.GetID(), RunID: run.GetRunID()}, nil
}

// FollowRestore is Follow for a restore.
func FollowRestore(ctx context.Context, c client.Client, workflowID, runID string, onProgress func(Progress)) (workflows.RestoreResult, error) {
	var res workflows.RestoreResult
	err := follow(ctx, c, workflowID, runID, onProgress, &res)
	return res, err
}
