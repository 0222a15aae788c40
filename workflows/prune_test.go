package workflows

import (
	"context"
	"testing"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/ferry-nas/ferry/activities"
)

// TestPruneWorkflowTargetFirstThenSource: the target is pruned first and
// its partial receives become protections on the source; the dry-run flag
// and the workflow's time reach both hosts' queues.
func TestPruneWorkflowTargetFirstThenSource(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(quietLogger{})
	env := s.NewTestWorkflowEnvironment()
	env.SetStartTime(testStart)
	env.RegisterWorkflow(PruneWorkflow)
	env.RegisterActivity(act)
	var order []string
	partial := activities.Partial{Name: "ferry_share01_x", ID: "p1", SourceGUID: "g-x", ParentGUID: "g-base"}
	env.OnActivity(act.Prune, mock.Anything, mock.MatchedBy(func(in activities.PruneInput) bool {
		return in.Side == activities.SideTarget && in.Dataset == "replicas/share01" && in.Grid == "2x1d" && in.DryRun && in.Now.Equal(testStart)
	})).Return(func(_ context.Context, in activities.PruneInput) (activities.PruneResult, error) {
		order = append(order, in.Side)
		return activities.PruneResult{Host: "nas-b", Kept: 2, Partials: []activities.Partial{partial}}, nil
	}).Once()
	env.OnActivity(act.Prune, mock.Anything, mock.MatchedBy(func(in activities.PruneInput) bool {
		return in.Side == activities.SideSource && in.Dataset == "share01" && in.Grid == "1x1d" && in.DryRun &&
			len(in.Protect) == 2 && in.Protect[0].GUID == "g-x" && in.Protect[1].GUID == "g-base"
	})).Return(func(_ context.Context, in activities.PruneInput) (activities.PruneResult, error) {
		order = append(order, in.Side)
		return activities.PruneResult{Host: "nas-a", Pruned: 1, Kept: 3}, nil
	}).Once()
	env.ExecuteWorkflow(PruneWorkflow, PruneRequest{Job: "share01", Source: testInput.Source, Target: testInput.Target,
		RetentionSource: "1x1d", RetentionTarget: "2x1d", DryRun: true})
	require.NoError(t, env.GetWorkflowError())
	var out PruneOutcome
	require.NoError(t, env.GetWorkflowResult(&out))
	require.Equal(t, []string{activities.SideTarget, activities.SideSource}, order)
	require.Equal(t, 1, out.Source.Pruned)
	require.Equal(t, 2, out.Target.Kept)
	require.True(t, out.DryRun)
	env.AssertExpectations(t)
}

// TestPruneWorkflowFailureNamesTheSide: a host's refusal fails the prune
// with the cause's type, naming the job and the side.
func TestPruneWorkflowFailureNamesTheSide(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(quietLogger{})
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(PruneWorkflow)
	env.RegisterActivity(act)
	env.OnActivity(act.Prune, mock.Anything, mock.Anything).Return(activities.PruneResult{}, appErr(activities.ErrInvalid, true)).Once()
	env.ExecuteWorkflow(PruneWorkflow, PruneRequest{Job: "share01", Source: testInput.Source, Target: testInput.Target, RetentionTarget: "bad"})
	err := env.GetWorkflowError()
	require.ErrorContains(t, err, "job share01: prune nas-b:replicas/share01")
	require.True(t, isType(err, activities.ErrInvalid), "%v", err)
}
