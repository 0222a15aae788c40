package workflows

import (
	"testing"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/ferry-nas/ferry/activities"
)

var (
	restoreReq = RestoreRequest{Job: "share01",
		From: Endpoint{Host: "nas-b", Dataset: "replicas/share01"}, To: Endpoint{Host: "nas-a", Dataset: "share01-restored"}}
	replicaOld = activities.Snapshot{Name: "ferry_share01_20261120T080000.000Z", GUID: "t-old", ReceivedGUID: "g-old", Seq: 1}
	replicaNew = activities.Snapshot{Name: "ferry_share01_20261121T080000.000Z", GUID: "t-new", ReceivedGUID: "g-new", Seq: 2, Digest: "d-new"}
)

func restoreEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(quietLogger{})
	env := s.NewTestWorkflowEnvironment()
	env.SetStartTime(testStart)
	env.RegisterWorkflow(RestoreWorkflow)
	env.RegisterActivity(act)
	t.Cleanup(func() { env.AssertExpectations(t) })
	return env
}

// expectReplica mocks the destination check and the replica's inventory
// (a btrfs target, whose stream of a replica carries its received_uuid).
func expectReplica(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(act.CheckNewDataset, mock.Anything, activities.CheckNewDatasetInput{Job: "share01", Dataset: "share01-restored"}).
		Return(activities.CheckNewDatasetResult{}, nil).Once()
	env.OnActivity(act.Inventory, mock.Anything, activities.InventoryInput{Job: "share01", Dataset: "replicas/share01"}).
		Return(activities.InventoryResult{Host: "nas-b", Backend: "btrfs", Snapshots: []activities.Snapshot{replicaNew, replicaOld}}, nil).Once()
	env.OnActivity(act.ContentDigest, mock.Anything, mock.Anything).Return(activities.ContentDigestResult{Digest: "sha256:c"}, nil).Once()
}

// TestRestoreWorkflowNewestReplica: without --snapshot the newest received
// snapshot (by Seq, not list order) is sent with the restore flag from the
// replica's host, received on the destination under the identity its
// stream carries, deep-verified against the replica's content digest, then
// materialised; the result carries the three equal digests.
func TestRestoreWorkflowNewestReplica(t *testing.T) {
	env := restoreEnv(t)
	expectReplica(env)
	env.OnActivity(act.OpenSend, mock.Anything, mock.MatchedBy(func(in activities.OpenSendInput) bool {
		return in.Restore && in.Dataset == "replicas/share01" && in.To == replicaNew.Name && in.From == "" && in.TargetHost == "nas-a"
	})).Return(activities.OpenSendResult{Token: "tok", ServerName: "nas-b", SourceGUID: "g-new", SourceDigest: "d-new"}, nil).Once()
	env.OnActivity(act.Receive, mock.Anything, mock.MatchedBy(func(in activities.ReceiveInput) bool {
		return in.Dataset == "share01-restored" && in.Name == replicaNew.Name && in.SourceGUID == "g-new" && in.Parent == ""
	})).Return(activities.ReceiveResult{Bytes: 4096}, nil).Once()
	env.OnActivity(act.Verify, mock.Anything, activities.VerifyInput{Job: "share01", Dataset: "share01-restored", Name: replicaNew.Name,
		SourceGUID: "g-new", Digest: "d-new", Deep: true, SourceContentDigest: "sha256:c"}).Return(activities.VerifyResult{}, nil).Once()
	env.OnActivity(act.Materialize, mock.Anything, activities.MaterializeInput{Job: "share01", Dataset: "share01-restored", Name: replicaNew.Name}).
		Return(activities.MaterializeResult{Path: "/srv/a/share01-restored", Digest: "sha256:c"}, nil).Once()

	env.ExecuteWorkflow(RestoreWorkflow, restoreReq)
	require.NoError(t, env.GetWorkflowError())
	var res RestoreResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, replicaNew.Name, res.Snapshot)
	require.Equal(t, int64(4096), res.Bytes)
	require.Equal(t, "/srv/a/share01-restored", res.Path)
	require.Equal(t, []string{"sha256:c", "sha256:c", "sha256:c"}, []string{res.ReplicaDigest, res.ReceivedDigest, res.LiveDigest})
}

// TestRestoreWorkflowDestinationExists: a destination that exists fails
// the restore as Conflict naming it, before anything is sent or received,
// and compensation does not touch the destination's partials.
func TestRestoreWorkflowDestinationExists(t *testing.T) {
	env := restoreEnv(t)
	env.OnActivity(act.CheckNewDataset, mock.Anything, mock.Anything).Return(activities.CheckNewDatasetResult{},
		appErr(activities.ErrConflict, true)).Once()
	env.ExecuteWorkflow(RestoreWorkflow, restoreReq)
	err := env.GetWorkflowError()
	require.Error(t, err)
	require.True(t, isType(err, activities.ErrConflict), "%v", err)
	require.ErrorContains(t, err, "restore of job share01: nas-b:replicas/share01 -> nas-a:share01-restored")
	env.AssertNotCalled(t, "Inventory", mock.Anything, mock.Anything)
	env.AssertNotCalled(t, "OpenSend", mock.Anything, mock.Anything)
	env.AssertNotCalled(t, "Receive", mock.Anything, mock.Anything)
	env.AssertNotCalled(t, "DiscardPartials", mock.Anything, mock.Anything)
}

// TestRestoreWorkflowNamedSnapshot: --snapshot picks that replica; one the
// replica does not hold is NotFound listing what it holds, nothing sent.
func TestRestoreWorkflowNamedSnapshot(t *testing.T) {
	t.Run("held", func(t *testing.T) {
		env := restoreEnv(t)
		expectReplica(env)
		env.OnActivity(act.OpenSend, mock.Anything, mock.MatchedBy(func(in activities.OpenSendInput) bool { return in.To == replicaOld.Name })).
			Return(activities.OpenSendResult{SourceGUID: "g-old"}, nil).Once()
		env.OnActivity(act.Receive, mock.Anything, mock.MatchedBy(func(in activities.ReceiveInput) bool { return in.SourceGUID == "g-old" })).
			Return(activities.ReceiveResult{}, nil).Once()
		env.OnActivity(act.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil).Once()
		env.OnActivity(act.Materialize, mock.Anything, mock.Anything).Return(activities.MaterializeResult{Digest: "sha256:c"}, nil).Once()
		req := restoreReq
		req.Snapshot = replicaOld.Name
		env.ExecuteWorkflow(RestoreWorkflow, req)
		require.NoError(t, env.GetWorkflowError())
	})
	t.Run("missing", func(t *testing.T) {
		env := restoreEnv(t)
		env.OnActivity(act.CheckNewDataset, mock.Anything, mock.Anything).Return(activities.CheckNewDatasetResult{}, nil).Once()
		env.OnActivity(act.Inventory, mock.Anything, mock.Anything).
			Return(activities.InventoryResult{Backend: "dir", Snapshots: []activities.Snapshot{replicaOld}}, nil).Once()
		env.OnActivity(act.DiscardPartials, mock.Anything, mock.Anything).Return(activities.DiscardPartialsResult{}, nil).Maybe()
		env.OnActivity(act.CloseSend, mock.Anything, mock.Anything).Return(activities.CloseSendResult{}, nil).Maybe()
		req := restoreReq
		req.Snapshot = "ferry_share01_nope"
		env.ExecuteWorkflow(RestoreWorkflow, req)
		err := env.GetWorkflowError()
		require.True(t, isType(err, activities.ErrNotFound), "%v", err)
		require.ErrorContains(t, err, replicaOld.Name)
		env.AssertNotCalled(t, "OpenSend", mock.Anything, mock.Anything)
	})
}

// TestRestoreWorkflowNoReplica: a target holding no received snapshot is
// NotFound saying so.
func TestRestoreWorkflowNoReplica(t *testing.T) {
	env := restoreEnv(t)
	env.OnActivity(act.CheckNewDataset, mock.Anything, mock.Anything).Return(activities.CheckNewDatasetResult{}, nil).Once()
	env.OnActivity(act.Inventory, mock.Anything, mock.Anything).
		Return(activities.InventoryResult{Backend: "dir", Snapshots: []activities.Snapshot{{Name: "local", GUID: "x"}}}, nil).Once()
	env.OnActivity(act.DiscardPartials, mock.Anything, mock.Anything).Return(activities.DiscardPartialsResult{}, nil).Maybe()
	env.OnActivity(act.CloseSend, mock.Anything, mock.Anything).Return(activities.CloseSendResult{}, nil).Maybe()
	env.ExecuteWorkflow(RestoreWorkflow, restoreReq)
	err := env.GetWorkflowError()
	require.True(t, isType(err, activities.ErrNotFound), "%v", err)
	require.ErrorContains(t, err, "holds no received replica of job share01")
}

// TestRestoreWorkflowLiveDigestDiffers: a live copy whose digest differs
// from the replica's fails the restore as VerifyFailed naming the path.
func TestRestoreWorkflowLiveDigestDiffers(t *testing.T) {
	env := restoreEnv(t)
	expectReplica(env)
	env.OnActivity(act.OpenSend, mock.Anything, mock.Anything).Return(activities.OpenSendResult{SourceGUID: "g-new"}, nil).Once()
	env.OnActivity(act.Receive, mock.Anything, mock.Anything).Return(activities.ReceiveResult{}, nil).Once()
	env.OnActivity(act.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, nil).Once()
	env.OnActivity(act.Materialize, mock.Anything, mock.Anything).Return(activities.MaterializeResult{Path: "/srv/a/x", Digest: "sha256:other"}, nil).Once()
	env.OnActivity(act.DiscardPartials, mock.Anything, mock.Anything).Return(activities.DiscardPartialsResult{}, nil).Once()
	env.OnActivity(act.CloseSend, mock.Anything, mock.Anything).Return(activities.CloseSendResult{}, nil).Once()
	env.ExecuteWorkflow(RestoreWorkflow, restoreReq)
	err := env.GetWorkflowError()
	require.True(t, isType(err, activities.ErrVerifyFailed), "%v", err)
	require.ErrorContains(t, err, "/srv/a/x")
}

// TestRestoreWorkflowReceiveFails: compensation after a failed receive
// keeps the destination's resumable partial when the failure was transient
// (a new restore resumes it), discards it otherwise, and revokes the
// replica host's send sessions; nothing is materialised.
func TestRestoreWorkflowReceiveFails(t *testing.T) {
	for _, c := range []struct {
		errType string
		keep    bool
	}{{"Temporary", true}, {activities.ErrNoSpace, false}} {
		t.Run(c.errType, func(t *testing.T) {
			env := restoreEnv(t)
			expectReplica(env)
			env.OnActivity(act.OpenSend, mock.Anything, mock.Anything).Return(activities.OpenSendResult{SourceGUID: "g-new"}, nil).Once()
			env.OnActivity(act.Receive, mock.Anything, mock.Anything).Return(activities.ReceiveResult{}, appErr(c.errType, true)).Once()
			env.OnActivity(act.DiscardPartials, mock.Anything, mock.MatchedBy(func(in activities.DiscardPartialsInput) bool {
				return in.All && in.Dataset == "share01-restored" && in.KeepResumable == c.keep
			})).Return(activities.DiscardPartialsResult{}, nil).Once()
			env.OnActivity(act.CloseSend, mock.Anything, activities.CloseSendInput{Job: "share01"}).Return(activities.CloseSendResult{}, nil).Once()
			env.ExecuteWorkflow(RestoreWorkflow, restoreReq)
			err := env.GetWorkflowError()
			require.True(t, isType(err, c.errType), "%v", err)
			env.AssertNotCalled(t, "Materialize", mock.Anything, mock.Anything)
		})
	}
}
