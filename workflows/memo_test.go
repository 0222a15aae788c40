package workflows

import (
	"testing"

	"github.com/stretchr/testify/mock"

	"github.com/ferry-nas/ferry/activities"
)

// The result counts every receive attempt (a receiver killed and resumed
// does not shrink the figure to the last attempt's), and the run records
// its outcome in its memo for `ferry status`.
func (s *replicateSuite) TestResultCountsEveryAttemptAndRecordsItsMemo() {
	s.happyPath()
	s.env.OnActivity(act.Receive, mock.Anything, mock.Anything).Return(activities.ReceiveResult{Snapshot: received,
		Bytes: 213 << 20, WireSent: 301 << 20, StreamSent: 293 << 20, StreamSize: 293 << 20, Attempts: 2, Resumes: 1, Reconnects: 1, TotalReconnects: 3}, nil).Once()
	s.expectVerifyOK()
	var memo map[string]any
	s.env.OnUpsertMemo(mock.Anything).Run(func(args mock.Arguments) { memo = args.Get(0).(map[string]any) }).Return(nil).Once()

	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	res := s.result()
	s.EqualValues(301<<20, res.Bytes, "wire bytes of both attempts, not the last one's 213 MiB")
	s.Equal(Received{StreamSize: 293 << 20, StreamBytes: 293 << 20, Resumes: 1, Reconnects: 3}, res.Received)

	s.Require().NotNil(memo[MemoRun], "the run's outcome is not in its memo")
	m, ok := memo[MemoRun].(RunMemo)
	s.Require().True(ok, "memo %T", memo[MemoRun])
	s.Equal(RunMemo{Snapshot: wantName, Steps: 1, Bytes: 301 << 20, Received: res.Received}, m)
}

func (s *replicateSuite) TestFailedRunRecordsItsErrorInItsMemo() {
	s.happyPath()
	s.env.OnActivity(act.Receive, mock.Anything, mock.Anything).Return(activities.ReceiveResult{}, appErr(activities.ErrNoSpace, true)).Once()
	s.env.OnActivity(act.DiscardPartials, mock.Anything, mock.Anything).Return(activities.DiscardPartialsResult{}, nil)
	s.env.OnActivity(act.CloseSend, mock.Anything, mock.Anything).Return(activities.CloseSendResult{}, nil)
	var memo map[string]any
	s.env.OnUpsertMemo(mock.Anything).Run(func(args mock.Arguments) { memo = args.Get(0).(map[string]any) }).Return(nil).Once()

	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	s.Error(s.env.GetWorkflowError())
	m, ok := memo[MemoRun].(RunMemo)
	s.Require().True(ok, "memo %v", memo)
	s.Equal(activities.ErrNoSpace, m.ErrorType)
	s.Contains(m.Error, "injected NoSpace")
}

func TestReceivedInWordsForTheUI(t *testing.T) {
	before := Received{StreamSize: 10 << 20, StreamBytes: 10 << 20}
	after := Received{StreamSize: 310 << 20, StreamBytes: 350 << 20, Resumes: 1, Restarts: 1, Restart: "off mode", Reconnects: 3}
	want := "; 300.0 MiB stream (340.0 MiB sent over all attempts), 1 resume(s) after an interruption, 1 restart(s) from 0 (off mode), 3 reconnect(s)"
	if got := after.since(before).text(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if got := (Received{}).text(); got != "" {
		t.Errorf("a result recorded before the counts: %q", got)
	}
}
