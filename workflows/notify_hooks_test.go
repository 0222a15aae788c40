package workflows

import (
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/suite"
	"go.temporal.io/sdk/temporal"

	"github.com/ferry-nas/ferry/activities"
)

// notifyHooksSuite runs ReplicateWorkflow with the host activities and the
// Notifier mocked: the order of hooks around the snapshot, and which
// notification a run sends.
type notifyHooksSuite struct{ replicateSuite }

func TestNotifyAndHooks(t *testing.T) { suite.Run(t, new(notifyHooksSuite)) }

func (s *notifyHooksSuite) SetupTest() {
	s.replicateSuite.SetupTest()
	s.env.RegisterActivity(notifier)
}

var notifyInput = func() ReplicateInput {
	in := testInput
	in.Notify = &NotifyTarget{Webhook: "https://hooks.example.com/x?token=s3cret", UIURL: "http://ui.lan:8233"}
	return in
}()

// calls records the activities in the order they ran.
type calls struct {
	mu   sync.Mutex
	list []string
}

func (c *calls) add(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.list = append(c.list, name)
}

// expectNotify captures the notification sent.
func (s *notifyHooksSuite) expectNotify(got *activities.NotifyInput, err error) {
	s.env.OnActivity(notifier.Notify, mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
		*got = args.Get(1).(activities.NotifyInput)
	}).Return(activities.NotifyResult{StatusCode: 200}, err).Once()
}

func (s *notifyHooksSuite) TestFailureIsNotified() {
	s.env.OnActivity(act.CreateSnapshot, mock.Anything, mock.Anything).Return(activities.CreateSnapshotResult{}, appErr(activities.ErrNoSpace, true)).Once()
	s.env.OnActivity(act.DiscardPartials, mock.Anything, mock.Anything).Return(activities.DiscardPartialsResult{}, nil)
	s.env.OnActivity(act.CloseSend, mock.Anything, mock.Anything).Return(activities.CloseSendResult{}, nil)
	var got activities.NotifyInput
	s.expectNotify(&got, nil)

	s.env.ExecuteWorkflow(ReplicateWorkflow, notifyInput)
	s.Error(s.env.GetWorkflowError())
	s.Equal(notifyInput.Notify.Webhook, got.Webhook)
	ev := got.Event
	s.Equal(activities.NotifyFailed, ev.Status)
	s.Equal("share01", ev.Job)
	s.Equal("nas-a:share01", ev.Source)
	s.Equal("nas-b:replicas/share01", ev.Target)
	s.Equal("nas-a", ev.SourceHost)
	s.Equal("nas-b", ev.TargetHost)
	s.Equal(activities.ErrNoSpace, ev.ErrorType)
	s.Contains(ev.Message, "job share01: nas-a:share01 -> nas-b:replicas/share01: injected NoSpace")
	s.False(ev.Repeat)
	s.NotEmpty(ev.WorkflowID)
	s.Equal("http://ui.lan:8233/namespaces/default-test-namespace/workflows/"+ev.WorkflowID+"/"+ev.RunID+"/history", ev.UILink)
	s.False(ev.Time.IsZero())
}

func (s *notifyHooksSuite) TestRepeatedFailureSaysSo() {
	s.env.SetLastError(errors.New("the previous run failed"))
	s.env.OnActivity(act.CreateSnapshot, mock.Anything, mock.Anything).Return(activities.CreateSnapshotResult{}, appErr(activities.ErrNoSpace, true)).Once()
	s.env.OnActivity(act.DiscardPartials, mock.Anything, mock.Anything).Return(activities.DiscardPartialsResult{}, nil)
	s.env.OnActivity(act.CloseSend, mock.Anything, mock.Anything).Return(activities.CloseSendResult{}, nil)
	var got activities.NotifyInput
	s.expectNotify(&got, nil)
	s.env.ExecuteWorkflow(ReplicateWorkflow, notifyInput)
	s.Error(s.env.GetWorkflowError())
	s.Equal(activities.NotifyFailed, got.Event.Status)
	s.True(got.Event.Repeat)
}

func (s *notifyHooksSuite) TestRecoveryIsNotified() {
	s.env.SetLastError(temporal.NewApplicationError("job share01: injected Conflict", activities.ErrConflict))
	s.happyPath()
	s.expectReceiveOK()
	s.expectVerifyOK()
	var got activities.NotifyInput
	s.expectNotify(&got, nil)
	s.env.ExecuteWorkflow(ReplicateWorkflow, notifyInput)
	res := s.result()
	s.Equal(activities.NotifyRecovered, got.Event.Status)
	s.Equal(activities.ErrConflict, got.Event.ErrorType, "the recovery names what the job recovered from")
	s.Contains(got.Event.Message, "injected Conflict")
	s.Equal(&NotifyReport{Status: activities.NotifyRecovered}, res.Notify)
}

func (s *notifyHooksSuite) TestSuccessAfterSuccessSendsNothing() {
	s.happyPath()
	s.expectReceiveOK()
	s.expectVerifyOK()
	s.env.ExecuteWorkflow(ReplicateWorkflow, notifyInput)
	s.Nil(s.result().Notify)
	s.env.AssertNotCalled(s.T(), "Notify", mock.Anything, mock.Anything)
}

func (s *notifyHooksSuite) TestUndeliveredNotificationDoesNotFailTheRun() {
	s.env.SetLastError(errors.New("the previous run failed"))
	s.happyPath()
	s.expectReceiveOK()
	s.expectVerifyOK()
	var got activities.NotifyInput
	s.expectNotify(&got, temporal.NewNonRetryableApplicationError("notify share01: POST https://hooks.example.com/REDACTED?REDACTED answered 403 Forbidden", activities.ErrNotifyRejected, nil))
	s.env.ExecuteWorkflow(ReplicateWorkflow, notifyInput)
	res := s.result()
	s.Require().NotNil(res.Notify)
	s.Contains(res.Notify.Error, "answered 403 Forbidden")
	s.Contains(res.Note, "the recovered notification was not delivered")
}

func (s *notifyHooksSuite) TestWithoutNotifyNothingIsSent() {
	s.env.SetLastError(errors.New("the previous run failed"))
	s.happyPath()
	s.expectReceiveOK()
	s.expectVerifyOK()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	s.Nil(s.result().Notify)
}

// afterSnapshot mocks happyPath's activities but CreateSnapshot.
func (s *notifyHooksSuite) afterSnapshot() {
	s.env.OnActivity(act.Inventory, mock.Anything, activities.InventoryInput{Job: "share01", Dataset: "share01"}).
		Return(activities.InventoryResult{Host: "nas-a", Snapshots: []activities.Snapshot{base, newSnap}}, nil)
	s.env.OnActivity(act.Inventory, mock.Anything, activities.InventoryInput{Job: "share01", Dataset: "replicas/share01"}).
		Return(activities.InventoryResult{Host: "nas-b", Snapshots: []activities.Snapshot{{Name: base.Name, GUID: "t-base", ReceivedGUID: "g-base"}}}, nil)
	s.env.OnActivity(act.OpenSend, mock.Anything, mock.Anything).
		Return(activities.OpenSendResult{Token: "tok", Address: "127.0.0.1:7400", ServerName: "nas-a", SourceGUID: "g-new", SourceDigest: "d-new"}, nil)
}

var hooksInput = func() ReplicateInput {
	in := testInput
	in.PreSnapshotHook, in.PostSnapshotHook = "freeze", "thaw"
	return in
}()

// expectHooks mocks both hooks, recording each call in c; preErr/postErr
// are what they return.
func (s *notifyHooksSuite) expectHooks(c *calls, preErr, postErr error) {
	s.env.OnActivity(act.RunHook, mock.Anything, activities.RunHookInput{Job: "share01", Dataset: "share01", Snapshot: wantName, Hook: "freeze", Phase: activities.HookPreSnapshot}).
		Run(func(mock.Arguments) { c.add("pre") }).Return(activities.RunHookResult{}, preErr).Once()
	s.env.OnActivity(act.RunHook, mock.Anything, activities.RunHookInput{Job: "share01", Dataset: "share01", Snapshot: wantName, Hook: "thaw", Phase: activities.HookPostSnapshot}).
		Run(func(mock.Arguments) { c.add("post") }).Return(activities.RunHookResult{}, postErr).Once()
}

func (s *notifyHooksSuite) TestHooksRunAroundTheSnapshot() {
	var c calls
	s.expectHooks(&c, nil, nil)
	s.env.OnActivity(act.CreateSnapshot, mock.Anything, activities.CreateSnapshotInput{Job: "share01", Dataset: "share01", Name: wantName}).
		Run(func(mock.Arguments) { c.add("snapshot") }).Return(activities.CreateSnapshotResult{Snapshot: newSnap}, nil).Once()
	s.afterSnapshot()
	s.expectReceiveOK()
	s.expectVerifyOK()
	s.env.ExecuteWorkflow(ReplicateWorkflow, hooksInput)
	s.Equal(wantName, s.result().Snapshot)
	s.Equal([]string{"pre", "snapshot", "post"}, c.list)
}

func (s *notifyHooksSuite) TestFailingPreHookTakesNoSnapshotAndStillRunsPost() {
	var c calls
	s.expectHooks(&c, temporal.NewNonRetryableApplicationError("pre_snapshot hook \"freeze\" (/bin/false) on nas-a failed: exit status 1; its last output:\ndatabase busy", activities.ErrHookFailed, nil), nil)
	s.env.OnActivity(act.DiscardPartials, mock.Anything, mock.Anything).Return(activities.DiscardPartialsResult{}, nil)
	s.env.OnActivity(act.CloseSend, mock.Anything, mock.Anything).Return(activities.CloseSendResult{}, nil)
	s.env.ExecuteWorkflow(ReplicateWorkflow, hooksInput)
	err := s.env.GetWorkflowError()
	var ae *temporal.ApplicationError
	s.Require().True(errors.As(err, &ae), "error %v", err)
	s.Equal(activities.ErrHookFailed, ae.Type())
	s.Contains(ae.Message(), "job share01: nas-a:share01 -> nas-b:replicas/share01: pre_snapshot hook \"freeze\"")
	s.Contains(ae.Message(), "database busy")
	s.Equal([]string{"pre", "post"}, c.list, "no snapshot after a failed pre hook; post still runs")
	s.env.AssertNotCalled(s.T(), "CreateSnapshot", mock.Anything, mock.Anything)
}

func (s *notifyHooksSuite) TestFailingPostHookIsANote() {
	var c calls
	s.expectHooks(&c, nil, temporal.NewNonRetryableApplicationError("post_snapshot hook \"thaw\" (/bin/false) on nas-a failed: exit status 1", activities.ErrHookFailed, nil))
	s.happyPath()
	s.expectReceiveOK()
	s.expectVerifyOK()
	s.env.ExecuteWorkflow(ReplicateWorkflow, hooksInput)
	res := s.result()
	s.Equal(wantName, res.Snapshot, "the run goes on after the post hook failed")
	s.Contains(res.Note, "post_snapshot hook \"thaw\"")
}

func (s *notifyHooksSuite) TestPostHookRunsWhenTheSnapshotFails() {
	var c calls
	s.expectHooks(&c, nil, nil)
	s.env.OnActivity(act.CreateSnapshot, mock.Anything, mock.Anything).
		Run(func(mock.Arguments) { c.add("snapshot") }).Return(activities.CreateSnapshotResult{}, appErr(activities.ErrNoSpace, true)).Once()
	s.env.OnActivity(act.DiscardPartials, mock.Anything, mock.Anything).Return(activities.DiscardPartialsResult{}, nil)
	s.env.OnActivity(act.CloseSend, mock.Anything, mock.Anything).Return(activities.CloseSendResult{}, nil)
	s.env.ExecuteWorkflow(ReplicateWorkflow, hooksInput)
	s.Error(s.env.GetWorkflowError())
	s.Equal([]string{"pre", "snapshot", "post"}, c.list)
}
