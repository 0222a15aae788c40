package workflows

import (
	"context"
	"errors"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/workflow"

	"github.com/ferry-nas/ferry/activities"
)

// retainedInput is testInput with a grid on each side.
func retainedInput() ReplicateInput {
	in := testInput
	in.RetentionSource, in.RetentionTarget = "1x1d", "2x1d"
	return in
}

// TestPruneStepRunsOnBothSidesAfterMark: with grids, each host prunes its
// side with its own grid and the workflow's time, after the marks; the
// result and the status say how many were pruned and kept.
func (s *replicateSuite) TestPruneStepRunsOnBothSidesAfterMark() {
	s.happyPath()
	s.expectReceiveOK()
	s.expectVerifyOK()
	marked := 0
	s.env.SetOnActivityCompletedListener(func(info *activity.Info, _ converter.EncodedValue, _ error) {
		if info.ActivityType.Name == "Mark" {
			marked++
		}
	})
	var sides []string
	s.env.OnActivity(act.Prune, mock.Anything, mock.MatchedBy(func(in activities.PruneInput) bool {
		return in.Job == "share01" && in.Dataset == "share01" && in.Side == activities.SideSource && in.Grid == "1x1d" &&
			in.Now.Equal(testStart) && !in.DryRun
	})).Return(func(_ context.Context, in activities.PruneInput) (activities.PruneResult, error) {
		s.Equal(2, marked, "prune runs after both marks")
		sides = append(sides, in.Side)
		return activities.PruneResult{Host: "nas-a", Pruned: 2, Kept: 3, Snapshots: []activities.SnapshotVerdict{
			{Name: "ferry_share01_a", Deleted: true}, {Name: "ferry_share01_b", Deleted: true}, {Name: base.Name, Keep: true}}}, nil
	}).Once()
	s.env.OnActivity(act.Prune, mock.Anything, mock.MatchedBy(func(in activities.PruneInput) bool {
		return in.Dataset == "replicas/share01" && in.Side == activities.SideTarget && in.Grid == "2x1d" && in.Now.Equal(testStart)
	})).Return(func(_ context.Context, in activities.PruneInput) (activities.PruneResult, error) {
		s.Equal(2, marked, "prune runs after both marks")
		sides = append(sides, in.Side)
		return activities.PruneResult{Host: "nas-b", Pruned: 1, Kept: 4, Snapshots: []activities.SnapshotVerdict{{Name: "ferry_share01_a", Deleted: true}}}, nil
	}).Once()

	s.env.ExecuteWorkflow(ReplicateWorkflow, retainedInput())
	res := s.result()
	s.ElementsMatch([]string{activities.SideSource, activities.SideTarget}, sides)
	s.Require().NotNil(res.Prune)
	s.Equal(&PruneSide{Host: "nas-a", Grid: "1x1d", Pruned: 2, Kept: 3, Deleted: []string{"ferry_share01_a", "ferry_share01_b"}}, res.Prune.Source)
	s.Equal(&PruneSide{Host: "nas-b", Grid: "2x1d", Pruned: 1, Kept: 4, Deleted: []string{"ferry_share01_a"}}, res.Prune.Target)
	s.Empty(res.Note)
}

// TestPruneFailureDoesNotFailTheRun: a side whose prune fails, and a
// snapshot that could not be deleted, are notes; the replication stands.
func (s *replicateSuite) TestPruneFailureDoesNotFailTheRun() {
	s.happyPath()
	s.expectReceiveOK()
	s.expectVerifyOK()
	s.env.OnActivity(act.Prune, mock.Anything, mock.MatchedBy(func(in activities.PruneInput) bool { return in.Side == activities.SideSource })).
		Return(activities.PruneResult{}, appErr(activities.ErrInvalid, true)).Once()
	s.env.OnActivity(act.Prune, mock.Anything, mock.MatchedBy(func(in activities.PruneInput) bool { return in.Side == activities.SideTarget })).
		Return(activities.PruneResult{Host: "nas-b", Pruned: 1, Kept: 2, Snapshots: []activities.SnapshotVerdict{
			{Name: "ferry_share01_x", Deleted: true}, {Name: "ferry_share01_y", Keep: true, Error: "device busy"}}}, nil).Once()

	s.env.ExecuteWorkflow(ReplicateWorkflow, retainedInput())
	res := s.result()
	s.Equal(wantName, res.Snapshot)
	s.Contains(res.Prune.Source.Error, "injected Invalid")
	s.Equal([]string{"ferry_share01_y"}, res.Prune.Target.Failed)
	s.Contains(res.Note, "prune on nas-a failed, its snapshots stay until the next prune")
	s.Contains(res.Note, "prune on nas-b could not delete ferry_share01_y")
	var st Status
	v, err := s.env.QueryWorkflow(QueryStatus)
	s.NoError(err)
	s.NoError(v.Get(&st))
	s.Equal(PhaseDone, st.Phase)
	s.Equal(res.Note, st.Note)
}

// TestPruneStepVersionGuard: a run replaying a history from before the
// prune step (DefaultVersion) schedules no Prune even with grids.
func (s *replicateSuite) TestPruneStepVersionGuard() {
	s.env.OnGetVersion(changePruneAfterMark, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	s.happyPath()
	s.expectReceiveOK()
	s.expectVerifyOK()
	s.env.OnActivity(act.Prune, mock.Anything, mock.Anything).Return(activities.PruneResult{}, errors.New("must not run")).Never()
	s.env.ExecuteWorkflow(ReplicateWorkflow, retainedInput())
	s.Nil(s.result().Prune)
}

// TestNoGridNoPrune: without grids nothing is scheduled.
func (s *replicateSuite) TestNoGridNoPrune() {
	s.happyPath()
	s.expectReceiveOK()
	s.expectVerifyOK()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	s.Nil(s.result().Prune)
}

// TestPartialProtections: the source keeps what a partial on the target needs.
func (s *replicateSuite) TestPartialProtections() {
	ps := partialProtections("nas-b", []activities.Partial{{Name: "n", ID: "p1", SourceGUID: "g-n", ParentGUID: "g-b"}})
	s.Equal([]string{"g-n", "g-b"}, []string{ps[0].GUID, ps[1].GUID})
	s.Equal(activities.RulePartialBase, ps[0].Rule)
}
