package workflows

import (
	"time"

	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/storage"
)

// What compensation does with the target's partial receives after each kind
// of failure (issue 7, item 4): kept for the next run after a transient one,
// discarded otherwise; and how a receiver that stays down ends the run.

// expectKeepingCompensation expects compensation to spare resumable partials
// on the target and revoke the source's sessions.
func (s *replicateSuite) expectKeepingCompensation() {
	s.env.OnActivity(act.DiscardPartials, mock.Anything, activities.DiscardPartialsInput{Job: "share01", Dataset: "replicas/share01", All: true, KeepResumable: true}).
		Return(activities.DiscardPartialsResult{}, nil).Once()
	s.env.OnActivity(act.CloseSend, mock.Anything, activities.CloseSendInput{Job: "share01"}).Return(activities.CloseSendResult{}, nil).Once()
}

func (s *replicateSuite) TestReceiverThatStaysDownFailsAsHostUnavailableAfterTheHostTimeout() {
	in := testInput
	in.HostTimeout = 90 * time.Second
	s.happyPath()
	// The receiver was killed mid-stream; its retried attempt is never
	// picked up, which the server reports as a schedule-to-start timeout.
	s.env.OnActivity(act.Receive, mock.Anything, mock.Anything).
		Return(activities.ReceiveResult{}, temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START, nil)).Once()
	// Compensation revokes the source's sessions and leaves the dead
	// target alone: its partial stays for the next run.
	s.env.OnActivity(act.CloseSend, mock.Anything, activities.CloseSendInput{Job: "share01"}).Return(activities.CloseSendResult{}, nil).Once()
	s.env.ExecuteWorkflow(ReplicateWorkflow, in)
	s.requireFailure(activities.ErrHostUnavailable)
	msg := s.env.GetWorkflowError().Error()
	s.Contains(msg, "host nas-b")
	s.Contains(msg, `did not pick up "receive `+wantName+`" within timeouts.host (1m30s)`, "the message names timeouts.host, not timeouts.stream")
	s.env.AssertNotCalled(s.T(), "DiscardPartials", mock.Anything, mock.Anything)
}

// A receiver that was streaming and stayed down: the message says so, that
// its partial receive is kept and how to resume it, in ferry's words first.
func (s *replicateSuite) TestReceiverDownMidStreamSaysItsPartialIsKept() {
	in := testInput
	in.HostTimeout = 20 * time.Second
	s.happyPath()
	// As the server reports it: the retried attempt was not picked up; the
	// first one timed out on its heartbeat, whose last details it carries.
	s.env.OnActivity(act.Receive, mock.Anything, mock.Anything).
		Return(activities.ReceiveResult{}, temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START,
			temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_HEARTBEAT, nil), activities.ReceiveProgress{Bytes: 120 << 20, DurableOffset: 100 << 20})).Once()
	s.env.OnActivity(act.CloseSend, mock.Anything, activities.CloseSendInput{Job: "share01"}).Return(activities.CloseSendResult{}, nil).Once()
	s.env.ExecuteWorkflow(ReplicateWorkflow, in)
	s.requireFailure(activities.ErrHostUnavailable)
	var ae *temporal.ApplicationError
	s.Require().ErrorAs(s.env.GetWorkflowError(), &ae)
	s.Equal("job share01: nas-a:share01 -> nas-b:replicas/share01: host nas-b stopped answering during \"receive "+wantName+
		"\" and did not come back within timeouts.host (20s); its partial receive of 100.0 MiB (104857600 bytes) is kept: "+
		"start `ferry worker --host nas-b` and run the job again to resume it", ae.Message())
	s.env.AssertNotCalled(s.T(), "DiscardPartials", mock.Anything, mock.Anything)
}

func (s *replicateSuite) TestReceiveAttemptsWaitForTheTargetAtMostTheHostTimeout() {
	r := &replication{in: ReplicateInput{HostTimeout: 2 * time.Minute, StreamTimeout: 72 * time.Hour, HeartbeatTimeout: 30 * time.Second}}
	o := r.streamOptions(Step{To: "s"}, true)
	s.Equal(2*time.Minute, o.ScheduleToStartTimeout)
	s.Equal(72*time.Hour, o.ScheduleToCloseTimeout)
	s.Equal(30*time.Second, o.HeartbeatTimeout)
	// Runs recorded before the change keep their options.
	s.Zero(r.streamOptions(Step{To: "s"}, false).ScheduleToStartTimeout)
}

func (s *replicateSuite) TestSourceDownKeepsResumablePartials() {
	s.env.OnActivity(act.CreateSnapshot, mock.Anything, mock.Anything).Return(activities.CreateSnapshotResult{Snapshot: newSnap}, nil)
	// Both inventories run in parallel: match each by its dataset, not by order.
	s.env.OnActivity(act.Inventory, mock.Anything, activities.InventoryInput{Job: "share01", Dataset: "share01"}).
		Return(activities.InventoryResult{Snapshots: []activities.Snapshot{base, newSnap}}, nil).Once()
	s.env.OnActivity(act.Inventory, mock.Anything, activities.InventoryInput{Job: "share01", Dataset: "replicas/share01"}).
		Return(activities.InventoryResult{Snapshots: []activities.Snapshot{{Name: base.Name, GUID: "t-base", ReceivedGUID: "g-base"}}}, nil).Once()
	s.env.OnActivity(act.OpenSend, mock.Anything, mock.Anything).
		Return(activities.OpenSendResult{}, temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_CLOSE, nil)).Once()
	s.env.OnActivity(act.DiscardPartials, mock.Anything, activities.DiscardPartialsInput{Job: "share01", Dataset: "replicas/share01", All: true, KeepResumable: true}).
		Return(activities.DiscardPartialsResult{}, nil).Once()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	s.requireFailure(activities.ErrHostUnavailable)
	s.Contains(s.env.GetWorkflowError().Error(), "host nas-a")
	s.env.AssertNotCalled(s.T(), "CloseSend", mock.Anything, mock.Anything)
}

func (s *replicateSuite) TestSessionLostForGoodKeepsResumablePartials() {
	s.happyPath()
	s.env.OnActivity(act.Receive, mock.Anything, mock.Anything).
		Return(activities.ReceiveResult{}, appErr(activities.ErrSessionLost, true)).Times(MaxSessionReopens + 1)
	s.expectKeepingCompensation()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	s.requireFailure(activities.ErrSessionLost)
}

// A source whose snapshot disappeared mid-stream (item 8a): the receive's
// NotFound ends the run at once, and its partial, which no run can finish,
// is discarded.
func (s *replicateSuite) TestSourceSnapshotGoneMidStreamIsNotFoundAndDiscards() {
	s.happyPath()
	s.env.OnActivity(act.Receive, mock.Anything, mock.Anything).
		Return(activities.ReceiveResult{}, appErr(activities.ErrNotFound, true)).Once()
	s.expectCompensation()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	s.requireFailure(activities.ErrNotFound)
}

func (s *replicateSuite) TestKeepsResumableOnlyAfterATransientFailure() {
	for _, tc := range []struct {
		err       error
		cancelled bool
		keep      bool
	}{
		{appErr(activities.ErrHostUnavailable, true), false, true},
		{appErr(activities.ErrSessionLost, true), false, true},
		{appErr(storage.KindTemporary.String(), false), false, true},
		{temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_HEARTBEAT, nil), false, true},
		{appErr(activities.ErrHostUnavailable, true), true, false},
		{temporal.NewCanceledError(), false, false},
		{appErr(activities.ErrVerifyFailed, true), false, false},
		{appErr(activities.ErrConflict, true), false, false},
		{appErr(activities.ErrInvalid, true), false, false},
		{appErr(activities.ErrNotFound, true), false, false},
		{appErr(activities.ErrNoSpace, true), false, false},
		{appErr(activities.ErrUnsupported, true), false, false},
		{nil, false, false},
	} {
		s.Equal(tc.keep, keepsResumable(tc.err, tc.cancelled), "%v (cancelled %v)", tc.err, tc.cancelled)
	}
}

// The run after one that kept a partial full receive resumes it: the first
// step is the earlier run's snapshot, resumed, the second an incremental
// from it to the new snapshot.
func (s *replicateSuite) TestNextRunResumesTheKeptFullReceive() {
	older := activities.Snapshot{Name: "ferry_share01_20261121T070000.000Z", GUID: "g-old", Digest: "d-old"}
	kept := activities.Partial{Name: older.Name, ID: "staging/old", SourceGUID: "g-old", Resume: &resumePos}
	receivedOld := activities.Snapshot{Name: older.Name, GUID: "t-old", ReceivedGUID: "g-old"}
	receivedNew := activities.Snapshot{Name: wantName, GUID: "t-new", ReceivedGUID: "g-new", ParentGUID: "g-old"}
	s.env.OnActivity(act.CreateSnapshot, mock.Anything, mock.Anything).Return(activities.CreateSnapshotResult{Snapshot: newSnap}, nil).Once()
	s.env.OnActivity(act.Inventory, mock.Anything, activities.InventoryInput{Job: "share01", Dataset: "share01"}).
		Return(activities.InventoryResult{Snapshots: []activities.Snapshot{older, newSnap}}, nil).Once()
	s.env.OnActivity(act.Inventory, mock.Anything, activities.InventoryInput{Job: "share01", Dataset: "replicas/share01"}).
		Return(activities.InventoryResult{Partials: []activities.Partial{kept}}, nil).Once()
	s.env.OnActivity(act.OpenSend, mock.Anything, mock.MatchedBy(func(in activities.OpenSendInput) bool { return in.To == older.Name && in.From == "" })).
		Return(activities.OpenSendResult{Token: "t1", SourceGUID: "g-old", SourceDigest: "d-old"}, nil).Once()
	s.env.OnActivity(act.OpenSend, mock.Anything, mock.MatchedBy(func(in activities.OpenSendInput) bool { return in.To == wantName && in.From == older.Name })).
		Return(activities.OpenSendResult{Token: "t2", SourceGUID: "g-new", SourceDigest: "d-new"}, nil).Once()
	s.env.OnActivity(act.Receive, mock.Anything, mock.MatchedBy(func(in activities.ReceiveInput) bool {
		return in.Name == older.Name && in.Parent == "" && in.Session.Token == "t1"
	})).Return(activities.ReceiveResult{Snapshot: receivedOld, Bytes: 10, Resumed: true}, nil).Once()
	s.env.OnActivity(act.Receive, mock.Anything, mock.MatchedBy(func(in activities.ReceiveInput) bool {
		return in.Name == wantName && in.Parent == older.Name && in.Session.Token == "t2"
	})).Return(activities.ReceiveResult{Snapshot: receivedNew, Bytes: 5}, nil).Once()
	s.env.OnActivity(act.Verify, mock.Anything, mock.MatchedBy(func(in activities.VerifyInput) bool { return in.Name == older.Name })).
		Return(activities.VerifyResult{Snapshot: receivedOld}, nil).Once()
	s.env.OnActivity(act.Verify, mock.Anything, mock.MatchedBy(func(in activities.VerifyInput) bool {
		return in.Name == wantName && in.ParentSourceGUID == "g-old"
	})).Return(activities.VerifyResult{Snapshot: receivedNew}, nil).Once()
	s.expectMarks()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	res := s.result()
	s.Require().Len(res.Plan.Steps, 2)
	s.Equal(kept.ID, res.Plan.Steps[0].Resume.ID)
	s.Empty(res.Plan.Discard)
	s.Equal(int64(15), res.Bytes)
	s.env.AssertNotCalled(s.T(), "DiscardPartials", mock.Anything, mock.Anything)
}
