package workflows

import (
	"strings"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"

	"github.com/ferry-nas/ferry/activities"
)

// Native resume tokens (zfs) through the workflow, activities mocked: the
// planned partial's token reaches OpenSend and the receive; a token the
// source refuses restarts the step from byte 0 with a note; a token
// partial the plan cannot use is aborted; a receive's SessionLost naming a
// token reopens the session for it.

const resumeTok = "1-11da694afc-118-789c636064000310a501c49c50360710a715e5e7a697"

var tokenPartial = activities.Partial{Dataset: "replicas/share01", Name: wantName, ID: "tank/ferry#ferry:recv:x",
	Reason: "an interrupted zfs receive -s", SourceGUID: "g-new", ParentGUID: "g-base", ResumeToken: resumeTok}

// greet mocks snapshot and greet with the target holding base and partials.
func (s *replicateSuite) greet(partials ...activities.Partial) {
	s.env.OnActivity(act.CreateSnapshot, mock.Anything, activities.CreateSnapshotInput{Job: "share01", Dataset: "share01", Name: wantName, Inventory: true}).
		Return(activities.CreateSnapshotResult{Snapshot: newSnap}, nil).Once()
	s.env.OnActivity(act.Inventory, mock.Anything, activities.InventoryInput{Job: "share01", Dataset: "share01"}).
		Return(activities.InventoryResult{Host: "nas-a", Backend: "zfs", Snapshots: []activities.Snapshot{base, newSnap},
			Features: map[string]string{"resumable_receive": "yes", "pool_version": "-"}}, nil)
	s.env.OnActivity(act.Inventory, mock.Anything, activities.InventoryInput{Job: "share01", Dataset: "replicas/share01"}).
		Return(activities.InventoryResult{Host: "nas-b", Backend: "zfs", Snapshots: []activities.Snapshot{{Name: base.Name, GUID: "t-base", ReceivedGUID: "g-base"}},
			Partials: partials, Features: map[string]string{"resumable_receive": "yes"}}, nil)
}

func (s *replicateSuite) expectOpenSend(token string, res activities.OpenSendResult) {
	res.Token, res.Address, res.ServerName, res.SourceGUID, res.SourceDigest = "tok", "127.0.0.1:7400", "nas-a", "g-new", "d-new"
	s.env.OnActivity(act.OpenSend, mock.Anything, mock.MatchedBy(func(in activities.OpenSendInput) bool {
		return in.ResumeToken == token && in.From == base.Name && in.To == wantName
	})).Return(res, nil).Once()
}

func (s *replicateSuite) TestNativeResumeTokenContinuesThePartial() {
	s.greet(tokenPartial)
	s.expectOpenSend(resumeTok, activities.OpenSendResult{ResumeToken: resumeTok})
	s.env.OnActivity(act.Receive, mock.Anything, mock.MatchedBy(func(in activities.ReceiveInput) bool {
		return in.NativeResume && in.Session.ResumeToken == resumeTok && in.Name == wantName
	})).Return(activities.ReceiveResult{Snapshot: received, Bytes: 10, Resumed: true}, nil).Once()
	s.expectVerifyOK()

	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	res := s.result()
	s.Require().Len(res.Plan.Steps, 1)
	s.Require().NotNil(res.Plan.Steps[0].Resume)
	s.Equal(resumeTok, res.Plan.Steps[0].Resume.ResumeToken)
	s.Empty(res.Plan.Discard)
	s.Equal(0, res.Discarded)
	s.Empty(res.Note)
	s.Equal(map[string]map[string]string{"nas-a": {"resumable_receive": "yes", "pool_version": "-"}, "nas-b": {"resumable_receive": "yes"}},
		res.Features, "greet's features in the result")
}

func (s *replicateSuite) TestNativeResumeStaleTokenRestartsFromByteZero() {
	s.greet(tokenPartial)
	why := "send share01@" + wantName + ": the source cannot continue this resume token (zfs send -t 1-11da…): cannot resume send: 'tank/ferry/share01@" + wantName + "' used in the initial send no longer exists"
	s.expectOpenSend(resumeTok, activities.OpenSendResult{ResumeRefused: why, RefusedToken: resumeTok})
	s.env.OnActivity(act.Receive, mock.Anything, mock.MatchedBy(func(in activities.ReceiveInput) bool {
		return in.NativeResume && in.Session.ResumeToken == "" && in.Session.RefusedToken == resumeTok
	})).Return(activities.ReceiveResult{Snapshot: received, Bytes: 1000}, nil).Once()
	s.expectVerifyOK()

	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	res := s.result()
	s.Contains(res.Note, "could not be resumed")
	s.Contains(res.Note, "used in the initial send no longer exists")
	s.Contains(res.Note, "aborted (zfs receive -A) and the step sent again from byte 0")
}

func (s *replicateSuite) TestNativeResumeTokenOfAGoneSnapshotIsAborted() {
	gone := tokenPartial
	gone.Name, gone.SourceGUID = "ferry_share01_20261120T200000Z", "g-gone"
	s.greet(gone)
	s.env.OnActivity(act.DiscardPartials, mock.Anything, activities.DiscardPartialsInput{Job: "share01", Dataset: "replicas/share01", Partials: []activities.Partial{gone}}).
		Return(activities.DiscardPartialsResult{Discarded: []activities.Partial{gone}}, nil).Once()
	s.expectOpenSend("", activities.OpenSendResult{})
	s.expectReceiveOK()
	s.expectVerifyOK()

	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	res := s.result()
	s.Equal(1, res.Discarded)
	s.Nil(res.Plan.Steps[0].Resume)
	s.Contains(res.Note, "resumable partial receive(s) of "+gone.Name+" on nas-b:replicas/share01 aborted")
}

func (s *replicateSuite) TestNativeResumeSessionLostReopensForTheToken() {
	s.greet()
	s.expectOpenSend("", activities.OpenSendResult{})
	s.env.OnActivity(act.Receive, mock.Anything, mock.MatchedBy(func(in activities.ReceiveInput) bool { return in.Session.ResumeToken == "" })).
		Return(activities.ReceiveResult{}, temporal.NewApplicationErrorWithOptions("the target holds a resumable partial receive", activities.ErrSessionLost,
			temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{activities.SessionLostDetails{ResumeToken: "1-new"}}})).Once()
	s.expectOpenSend("1-new", activities.OpenSendResult{ResumeToken: "1-new"})
	s.env.OnActivity(act.Receive, mock.Anything, mock.MatchedBy(func(in activities.ReceiveInput) bool { return in.Session.ResumeToken == "1-new" })).
		Return(activities.ReceiveResult{Snapshot: received, Bytes: 10, Resumed: true}, nil).Once()
	s.expectVerifyOK()

	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	res := s.result()
	s.Equal(int64(10), res.Bytes)
	s.False(strings.Contains(res.Note, "aborted"))
}
