package workflows

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"github.com/stretchr/testify/suite"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/ferry-nas/ferry/activities"
)

// The workflow's answer to every row of DESIGN.md's failure table, with the
// activities mocked. Rows handled inside an activity (frame corruption, resume
// refused) are proven by the transfer and activities tests; here the workflow
// only sees a retryable error, which is the "link drops" row.
type replicateSuite struct {
	suite.Suite
	testsuite.WorkflowTestSuite
	env *testsuite.TestWorkflowEnvironment
}

func TestReplicateWorkflow(t *testing.T) { suite.Run(t, new(replicateSuite)) }

var (
	testStart = time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
	wantName  = SnapshotName("share01", testStart)
	base      = activities.Snapshot{Name: "ferry_share01_20261120T080000Z", GUID: "g-base"}
	newSnap   = activities.Snapshot{Name: wantName, GUID: "g-new", Digest: "d-new"}
	// srcInventory is the source's greet once the run's snapshot is made.
	srcInventory = activities.InventoryResult{Host: "nas-a", Snapshots: []activities.Snapshot{base, newSnap}}
	received     = activities.Snapshot{Name: wantName, GUID: "t-new", ReceivedGUID: "g-new", ParentGUID: "g-base"}
	testInput    = ReplicateInput{Job: "share01",
		Source: Endpoint{Host: "nas-a", Dataset: "share01"}, Target: Endpoint{Host: "nas-b", Dataset: "replicas/share01"},
		Compress: true}
)

func (s *replicateSuite) SetupSuite() { s.SetLogger(quietLogger{}) }

func (s *replicateSuite) SetupTest() {
	s.env = s.NewTestWorkflowEnvironment()
	s.env.SetStartTime(testStart)
	s.env.RegisterWorkflow(ReplicateWorkflow)
	s.env.RegisterActivity(act)
}

func (s *replicateSuite) AfterTest(_, _ string) { s.env.AssertExpectations(s.T()) }

// happyPath mocks a run where the target already holds base.
func (s *replicateSuite) happyPath(partials ...activities.Partial) {
	// With hooks the greet waits for them (Inventory false); the source's
	// inventory then comes from its own activity, as it does from a worker
	// that returns none with the snapshot.
	s.env.OnActivity(act.CreateSnapshot, mock.Anything, mock.MatchedBy(func(in activities.CreateSnapshotInput) bool {
		return in.Job == "share01" && in.Dataset == "share01" && in.Name == wantName
	})).Return(activities.CreateSnapshotResult{Snapshot: newSnap}, nil).Once()
	s.env.OnActivity(act.Inventory, mock.Anything, activities.InventoryInput{Job: "share01", Dataset: "share01"}).
		Return(srcInventory, nil)
	s.env.OnActivity(act.Inventory, mock.Anything, activities.InventoryInput{Job: "share01", Dataset: "replicas/share01"}).
		Return(activities.InventoryResult{Host: "nas-b", Snapshots: []activities.Snapshot{{Name: base.Name, GUID: "t-base", ReceivedGUID: "g-base"}}, Partials: partials}, nil)
	s.env.OnActivity(act.OpenSend, mock.Anything, mock.Anything).
		Return(activities.OpenSendResult{Token: "tok", Address: "127.0.0.1:7400", ServerName: "nas-a", SourceGUID: "g-new", SourceDigest: "d-new"}, nil)
}

// expectMarks expects the cursor on the source and the marker on the target.
func (s *replicateSuite) expectMarks() {
	s.env.OnActivity(act.Mark, mock.Anything, activities.MarkInput{Job: "share01", Dataset: "share01", Mark: activities.MarkCursor, Snapshot: wantName}).
		Return(activities.MarkResult{}, nil).Once()
	s.env.OnActivity(act.Mark, mock.Anything, activities.MarkInput{Job: "share01", Dataset: "replicas/share01", Mark: activities.MarkReceived, Snapshot: wantName}).
		Return(activities.MarkResult{}, nil).Once()
}

func (s *replicateSuite) expectReceiveOK() {
	s.env.OnActivity(act.Receive, mock.Anything, mock.Anything).Return(activities.ReceiveResult{Snapshot: received, Bytes: 1000}, nil).Once()
}

func (s *replicateSuite) expectVerifyOK() {
	s.env.OnActivity(act.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{Snapshot: received}, nil).Once()
	s.expectMarks()
}

func (s *replicateSuite) result() ReplicateResult {
	s.True(s.env.IsWorkflowCompleted())
	s.NoError(s.env.GetWorkflowError())
	var res ReplicateResult
	s.NoError(s.env.GetWorkflowResult(&res))
	return res
}

func appErr(errType string, nonRetryable bool) error {
	return temporal.NewApplicationErrorWithOptions("injected "+errType, errType, temporal.ApplicationErrorOptions{NonRetryable: nonRetryable})
}

func (s *replicateSuite) TestIncrementalRunSucceeds() {
	s.happyPath()
	s.env.OnActivity(act.Receive, mock.Anything, mock.MatchedBy(func(in activities.ReceiveInput) bool {
		return in.Name == wantName && in.Parent == base.Name && in.SourceGUID == "g-new" && in.Session.Token == "tok"
	})).Return(activities.ReceiveResult{Snapshot: received, Bytes: 1000}, nil).Once()
	s.env.OnActivity(act.Verify, mock.Anything, mock.MatchedBy(func(in activities.VerifyInput) bool {
		return in.SourceGUID == "g-new" && in.ParentSourceGUID == "g-base" && in.Digest == "d-new" && in.Dataset == "replicas/share01"
	})).Return(activities.VerifyResult{Snapshot: received}, nil).Once()
	s.expectMarks()

	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	res := s.result()
	s.Equal(wantName, res.Snapshot)
	s.Equal(int64(1000), res.Bytes)
	s.Equal(base.Name, res.Plan.Base)
	s.Len(res.Plan.Steps, 1)

	var st Status
	v, err := s.env.QueryWorkflow(QueryStatus)
	s.NoError(err)
	s.NoError(v.Get(&st))
	s.Equal(PhaseDone, st.Phase)
	s.Equal(1, st.Step)
	s.Equal(1, st.Steps)
}

// TestGreetWithSnapshot: without hooks the snapshot activity is asked for
// the source's inventory and, when it returns one, the source's Inventory
// activity is not run; the target's is started before the snapshot is made.
func (s *replicateSuite) TestGreetWithSnapshot() {
	// The snapshot activity waits for the target's inventory to start: it
	// only can when the workflow scheduled that before waiting for the
	// snapshot (otherwise it gives up after a minute and the test fails).
	targetStarted := make(chan struct{})
	var alongside bool
	s.env.OnActivity(act.CreateSnapshot, mock.Anything, activities.CreateSnapshotInput{Job: "share01", Dataset: "share01", Name: wantName, Inventory: true}).
		Run(func(mock.Arguments) {
			select {
			case <-targetStarted:
				alongside = true
			case <-time.After(time.Minute):
			}
		}).
		Return(activities.CreateSnapshotResult{Snapshot: newSnap, Inventory: &srcInventory}, nil).Once()
	s.env.OnActivity(act.Inventory, mock.Anything, activities.InventoryInput{Job: "share01", Dataset: "replicas/share01"}).
		Run(func(mock.Arguments) { close(targetStarted) }).
		Return(activities.InventoryResult{Host: "nas-b", Snapshots: []activities.Snapshot{{Name: base.Name, GUID: "t-base", ReceivedGUID: "g-base"}}}, nil).Once()
	s.env.OnActivity(act.OpenSend, mock.Anything, mock.Anything).
		Return(activities.OpenSendResult{Token: "tok", Address: "127.0.0.1:7400", ServerName: "nas-a", SourceGUID: "g-new", SourceDigest: "d-new"}, nil).Once()
	s.expectReceiveOK()
	s.expectVerifyOK()

	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	res := s.result()
	s.Equal(base.Name, res.Plan.Base)
	s.Len(res.Plan.Steps, 1)
	s.True(alongside, "the target's inventory ran while the snapshot was being made")
	s.env.AssertNotCalled(s.T(), "Inventory", mock.Anything, activities.InventoryInput{Job: "share01", Dataset: "share01"})
}

func (s *replicateSuite) TestLinkDropRetriesTheReceive() {
	s.happyPath()
	s.env.OnActivity(act.Receive, mock.Anything, mock.Anything).Return(activities.ReceiveResult{}, appErr("Temporary", false)).Twice()
	s.expectReceiveOK()
	s.expectVerifyOK()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	s.Equal(wantName, s.result().Snapshot)
}

func (s *replicateSuite) TestLostSessionIsReopenedAndResumed() {
	s.happyPath()
	// The second receive resumes the partial the first left: the activity
	// decides that from the target's state (activities tests prove it).
	s.env.OnActivity(act.Receive, mock.Anything, mock.Anything).
		Return(activities.ReceiveResult{Bytes: 400}, appErr(activities.ErrSessionLost, true)).Once()
	s.env.OnActivity(act.Receive, mock.Anything, mock.Anything).
		Return(activities.ReceiveResult{Snapshot: received, Bytes: 600}, nil).Once()
	s.expectVerifyOK()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	// A failed attempt reports no result: only completed receives are counted.
	s.Equal(int64(600), s.result().Bytes)
}

func (s *replicateSuite) TestPlannedResumeKeepsThePartial() {
	partial := activities.Partial{Name: wantName, ID: "p", SourceGUID: "g-new", ParentGUID: "g-base", Resume: &resumePos}
	s.happyPath(partial)
	// No DiscardPartials is mocked: discarding the partial would fail the run.
	s.env.OnActivity(act.Receive, mock.Anything, mock.Anything).
		Return(activities.ReceiveResult{Snapshot: received, Bytes: 10, Resumed: true}, nil).Once()
	s.expectVerifyOK()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	s.NotNil(s.result().Plan.Steps[0].Resume)
}

func (s *replicateSuite) TestVerifyFailureRedoesTheStepBounded() {
	s.happyPath()
	s.env.OnActivity(act.Receive, mock.Anything, mock.Anything).Return(activities.ReceiveResult{Snapshot: received, Bytes: 1000}, nil).Twice()
	s.env.OnActivity(act.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, appErr(activities.ErrVerifyFailed, true)).Once()
	s.expectVerifyOK()
	s.env.OnActivity(act.DestroySnapshot, mock.Anything, activities.DestroySnapshotInput{Job: "share01", Dataset: "replicas/share01", Name: wantName}).
		Return(activities.DestroySnapshotResult{}, nil).Once()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	s.Equal(int64(2000), s.result().Bytes)
}

// expectVerifyFailingEveryTime: one incremental step whose receive succeeds
// and whose verify fails on each of its MaxVerifyAttempts attempts.
func (s *replicateSuite) expectVerifyFailingEveryTime() {
	s.env.OnActivity(act.CreateSnapshot, mock.Anything, mock.Anything).Return(activities.CreateSnapshotResult{Snapshot: newSnap}, nil)
	s.env.OnActivity(act.Inventory, mock.Anything, activities.InventoryInput{Job: "share01", Dataset: "share01"}).
		Return(activities.InventoryResult{Snapshots: []activities.Snapshot{base, newSnap}}, nil)
	s.env.OnActivity(act.Inventory, mock.Anything, activities.InventoryInput{Job: "share01", Dataset: "replicas/share01"}).
		Return(activities.InventoryResult{Snapshots: []activities.Snapshot{{Name: base.Name, GUID: "t-base", ReceivedGUID: "g-base"}}}, nil)
	s.env.OnActivity(act.OpenSend, mock.Anything, mock.Anything).Return(activities.OpenSendResult{Token: "tok"}, nil)
	s.env.OnActivity(act.Receive, mock.Anything, mock.Anything).Return(activities.ReceiveResult{Snapshot: received}, nil).Times(MaxVerifyAttempts)
	s.env.OnActivity(act.Verify, mock.Anything, mock.Anything).Return(activities.VerifyResult{}, appErr(activities.ErrVerifyFailed, true)).Times(MaxVerifyAttempts)
}

func (s *replicateSuite) TestVerifyFailingEveryTimeFailsTheRun() {
	s.expectVerifyFailingEveryTime()
	// Every attempt's unverified snapshot is destroyed, the last one too
	// (changeDestroyLastUnverified): compensation never touches complete
	// snapshots, and one left would be the replica's latest.
	s.env.OnActivity(act.DestroySnapshot, mock.Anything, activities.DestroySnapshotInput{Job: "share01", Dataset: "replicas/share01", Name: wantName}).
		Return(activities.DestroySnapshotResult{}, nil).Times(MaxVerifyAttempts)
	s.expectCompensation()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	s.requireFailure(activities.ErrVerifyFailed)
	s.env.AssertNumberOfCalls(s.T(), "DestroySnapshot", MaxVerifyAttempts)
}

// A run recorded before changeDestroyLastUnverified keeps the last
// unverified snapshot, as it did then.
func (s *replicateSuite) TestVerifyFailingEveryTimeBeforeTheChangeKeepsTheLast() {
	s.env.OnGetVersion(changeDestroyLastUnverified, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	s.expectVerifyFailingEveryTime()
	s.env.OnActivity(act.DestroySnapshot, mock.Anything, mock.Anything).Return(activities.DestroySnapshotResult{}, nil).Times(MaxVerifyAttempts - 1)
	s.expectCompensation()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	s.requireFailure(activities.ErrVerifyFailed)
	s.env.AssertNumberOfCalls(s.T(), "DestroySnapshot", MaxVerifyAttempts-1)
}

func (s *replicateSuite) expectCompensation() {
	s.env.OnActivity(act.DiscardPartials, mock.Anything, activities.DiscardPartialsInput{Job: "share01", Dataset: "replicas/share01", All: true}).
		Return(activities.DiscardPartialsResult{}, nil).Once()
	s.env.OnActivity(act.CloseSend, mock.Anything, activities.CloseSendInput{Job: "share01"}).Return(activities.CloseSendResult{}, nil).Once()
}

func (s *replicateSuite) requireFailure(errType string) {
	s.True(s.env.IsWorkflowCompleted())
	err := s.env.GetWorkflowError()
	s.Require().Error(err)
	var ae *temporal.ApplicationError
	s.Require().True(errors.As(err, &ae), "want an application error, got %v", err)
	s.Equal(errType, ae.Type())
}

func (s *replicateSuite) TestDivergedTargetIsAConflictAndNothingIsDestroyed() {
	s.env.OnActivity(act.CreateSnapshot, mock.Anything, mock.Anything).Return(activities.CreateSnapshotResult{Snapshot: newSnap}, nil)
	s.env.OnActivity(act.Inventory, mock.Anything, activities.InventoryInput{Job: "share01", Dataset: "share01"}).
		Return(activities.InventoryResult{Snapshots: []activities.Snapshot{base, newSnap}}, nil)
	s.env.OnActivity(act.Inventory, mock.Anything, activities.InventoryInput{Job: "share01", Dataset: "replicas/share01"}).
		Return(activities.InventoryResult{Snapshots: []activities.Snapshot{
			{Name: base.Name, GUID: "t-base", ReceivedGUID: "g-base"}, {Name: "made-on-target", GUID: "local"}}}, nil)
	s.expectCompensation()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	s.requireFailure(activities.ErrConflict)
	s.Contains(s.env.GetWorkflowError().Error(), "made-on-target")
	s.env.AssertNotCalled(s.T(), "Receive", mock.Anything, mock.Anything)
	s.env.AssertNotCalled(s.T(), "DestroySnapshot", mock.Anything, mock.Anything)
}

func (s *replicateSuite) TestMissingDatasetIsNotFoundAndNotRetried() {
	s.env.OnActivity(act.CreateSnapshot, mock.Anything, mock.Anything).Return(activities.CreateSnapshotResult{}, appErr(activities.ErrNotFound, true)).Once()
	s.expectCompensation()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	s.requireFailure(activities.ErrNotFound)
}

func (s *replicateSuite) TestNoSpaceFailsTheRunAndDiscardsPartials() {
	s.happyPath()
	s.env.OnActivity(act.Receive, mock.Anything, mock.Anything).Return(activities.ReceiveResult{}, appErr(activities.ErrNoSpace, true)).Once()
	s.expectCompensation()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	s.requireFailure(activities.ErrNoSpace)
	var ae *temporal.ApplicationError
	s.Require().ErrorAs(s.env.GetWorkflowError(), &ae)
	s.Equal("job share01: nas-a:share01 -> nas-b:replicas/share01: injected NoSpace", ae.Message(),
		"an activity's error carries the job and its endpoints like the workflow's own")
}

func (s *replicateSuite) TestLeftoversAreDiscardedBeforeStreaming() {
	leftover := activities.Partial{Name: "ferry_share01_old", ID: "staging/old", Reason: "interrupted receive"}
	s.happyPath(leftover)
	s.env.OnActivity(act.DiscardPartials, mock.Anything, activities.DiscardPartialsInput{Job: "share01", Dataset: "replicas/share01", Partials: []activities.Partial{leftover}}).
		Return(activities.DiscardPartialsResult{Discarded: []activities.Partial{leftover}}, nil).Once()
	s.expectReceiveOK()
	s.expectVerifyOK()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	s.Equal(1, s.result().Discarded)
}

func (s *replicateSuite) TestCancelledRunCompensates() {
	s.happyPath()
	s.env.OnActivity(act.Receive, mock.Anything, mock.Anything).After(time.Hour).Return(activities.ReceiveResult{}, nil).Maybe()
	s.expectCompensation()
	s.env.RegisterDelayedCallback(func() { s.env.CancelWorkflow() }, time.Minute)
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	s.True(s.env.IsWorkflowCompleted())
	var ce *temporal.CanceledError
	s.True(errors.As(s.env.GetWorkflowError(), &ce), "want cancellation, got %v", s.env.GetWorkflowError())
}

func TestSnapshotNameIsUTCAndSortable(t *testing.T) {
	local := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600))
	require.Equal(t, "ferry_j_20260102T020405.000Z", SnapshotName("j", local))
	require.Less(t, SnapshotName("j", local), SnapshotName("j", local.Add(time.Millisecond)))
	require.Equal(t, "ferry_j_20260102T020405Z", secondSnapshotName("j", local))
}

func (s *replicateSuite) TestDeadTargetHostFailsTheRunNamingIt() {
	s.env.OnActivity(act.CreateSnapshot, mock.Anything, mock.Anything).Return(activities.CreateSnapshotResult{Snapshot: newSnap}, nil)
	s.env.OnActivity(act.Inventory, mock.Anything, activities.InventoryInput{Job: "share01", Dataset: "share01"}).
		Return(activities.InventoryResult{Snapshots: []activities.Snapshot{base, newSnap}}, nil)
	// nas-b's worker is down: its inventory times out (as the server reports
	// a task nobody picked up).
	hostDown := temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START, nil)
	s.env.OnActivity(act.Inventory, mock.Anything, activities.InventoryInput{Job: "share01", Dataset: "replicas/share01"}).
		Return(activities.InventoryResult{}, hostDown)
	// Compensation revokes the source's sessions but does not wait on nas-b again.
	s.env.OnActivity(act.CloseSend, mock.Anything, activities.CloseSendInput{Job: "share01"}).Return(activities.CloseSendResult{}, nil).Once()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	s.requireFailure(activities.ErrHostUnavailable)
	msg := s.env.GetWorkflowError().Error()
	s.Contains(msg, "host nas-b")
	s.Contains(msg, "ferry worker --host nas-b")
	s.env.AssertNotCalled(s.T(), "DiscardPartials", mock.Anything, mock.Anything)
}
