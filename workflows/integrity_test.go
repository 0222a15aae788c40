package workflows

import (
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/workflow"

	"github.com/ferry-nas/ferry/activities"
)

// greetWith mocks the snapshot step and both sides' greet: the target's
// newest snapshot is reported as modified (and so not among its snapshots)
// next to the extra anomalies given.
func (s *replicateSuite) greetWith(target activities.InventoryResult) {
	s.env.OnActivity(act.CreateSnapshot, mock.Anything, mock.Anything).Return(activities.CreateSnapshotResult{Snapshot: newSnap}, nil).Once()
	s.env.OnActivity(act.Inventory, mock.Anything, activities.InventoryInput{Job: "share01", Dataset: "share01"}).
		Return(activities.InventoryResult{Host: "nas-a", Snapshots: []activities.Snapshot{base, newSnap}}, nil)
	s.env.OnActivity(act.Inventory, mock.Anything, activities.InventoryInput{Job: "share01", Dataset: "replicas/share01"}).
		Return(target, nil)
}

var modifiedBase = activities.Anomaly{Dataset: "replicas/share01", Kind: activities.AnomalyModified, Name: base.Name,
	ID:   ".ferry/snapshots/replicas%2Fshare01/" + base.Name,
	What: "its content changed after ferry committed it (ctransid 13, recorded at commit 9)",
	Fix:  "keep what you need from the modified replica, then move it out of .ferry/"}

// TestModifiedTargetSnapshotIsAConflict: a replica changed after ferry
// committed it fails the run as Conflict at greet, naming the snapshot,
// what changed and the fix; nothing is sent on top of it or destroyed.
func (s *replicateSuite) TestModifiedTargetSnapshotIsAConflict() {
	s.greetWith(activities.InventoryResult{Host: "nas-b", Anomalies: []activities.Anomaly{modifiedBase}})
	s.expectCompensation()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	s.requireFailure(activities.ErrConflict)
	msg := s.env.GetWorkflowError().Error()
	for _, want := range []string{"nas-b:replicas/share01@" + base.Name, modifiedBase.ID, modifiedBase.What, modifiedBase.Fix, "nothing was sent"} {
		s.Contains(msg, want)
	}
	for _, a := range []string{"OpenSend", "Receive", "DestroySnapshot", "Mark"} {
		s.env.AssertNotCalled(s.T(), a, mock.Anything, mock.Anything)
	}
}

// TestModifiedSnapshotBeforeTheChangeIsNotChecked: a run recorded before
// the change replays without the check (the planner then sends a full
// stream next to the modified snapshot, as it did).
func (s *replicateSuite) TestModifiedSnapshotBeforeTheChangeIsNotChecked() {
	s.env.OnGetVersion(changeRefuseModified, workflow.DefaultVersion, 1).
		Return(func(string, workflow.Version, workflow.Version) workflow.Version { return workflow.DefaultVersion })
	s.greetWith(activities.InventoryResult{Host: "nas-b", Anomalies: []activities.Anomaly{modifiedBase}})
	s.env.OnActivity(act.OpenSend, mock.Anything, mock.Anything).
		Return(activities.OpenSendResult{Token: "tok", Address: "127.0.0.1:7400", ServerName: "nas-a", SourceGUID: "g-new", SourceDigest: "d-new"}, nil)
	s.expectReceiveOK()
	s.expectVerifyOK()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	res := s.result()
	s.Len(res.Plan.Steps, 1)
	s.Empty(res.Plan.Steps[0].From, "without the check the old path plans a full send")
}

// TestForeignItemInTheWayIsAConflict: something ferry did not make where
// the run's snapshot would be received fails the run as Conflict naming it
// and the fix, before anything is sent.
func (s *replicateSuite) TestForeignItemInTheWayIsAConflict() {
	foreign := activities.Anomaly{Dataset: "replicas/share01", Kind: activities.AnomalyForeign, Name: wantName,
		ID: ".ferry/snapshots/replicas%2Fshare01/" + wantName, What: "a directory ferry has no record of", Fix: "move it out of .ferry/"}
	s.greetWith(activities.InventoryResult{Host: "nas-b", Snapshots: []activities.Snapshot{{Name: base.Name, GUID: "t-base", ReceivedGUID: "g-base"}},
		Anomalies: []activities.Anomaly{foreign}})
	s.expectCompensation()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	s.requireFailure(activities.ErrConflict)
	msg := s.env.GetWorkflowError().Error()
	for _, want := range []string{foreign.ID, foreign.What, foreign.Fix, "nothing was sent"} {
		s.Contains(msg, want)
	}
	s.env.AssertNotCalled(s.T(), "Receive", mock.Anything, mock.Anything)
}

// TestForeignItemElsewhereIsReportedAndKept: a foreign item that is in no
// step's way does not stop the run; the result names it and nothing
// discards it.
func (s *replicateSuite) TestForeignItemElsewhereIsReportedAndKept() {
	foreign := activities.Anomaly{Dataset: "replicas/share01", Kind: activities.AnomalyForeign, Name: "older-run",
		ID: ".ferry/staging/replicas%2Fshare01/older-run", What: "a subvolume in place of a receive directory"}
	s.happyPathWithTarget(activities.InventoryResult{Host: "nas-b", Snapshots: []activities.Snapshot{{Name: base.Name, GUID: "t-base", ReceivedGUID: "g-base"}},
		Anomalies: []activities.Anomaly{foreign}})
	s.expectReceiveOK()
	s.expectVerifyOK()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	res := s.result()
	s.Equal([]string{"nas-b: " + foreign.ID + " (" + foreign.What + ")"}, res.Foreign)
	s.Zero(res.Discarded)
	s.env.AssertNotCalled(s.T(), "DiscardPartials", mock.Anything, mock.Anything)
}

func (s *replicateSuite) happyPathWithTarget(target activities.InventoryResult) {
	s.greetWith(target)
	s.env.OnActivity(act.OpenSend, mock.Anything, mock.Anything).
		Return(activities.OpenSendResult{Token: "tok", Address: "127.0.0.1:7400", ServerName: "nas-a", SourceGUID: "g-new", SourceDigest: "d-new"}, nil)
}
