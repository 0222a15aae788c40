package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/ferry-nas/ferry/activities"
)

// changeSnapshotHooks: a job's pre_snapshot hook runs on the source before
// the snapshot (its failure fails the run, no snapshot taken) and its
// post_snapshot hook after the snapshot step, once the pre hook ran.
const changeSnapshotHooks = "snapshot-hooks"

// snapshot runs the snapshot step: CreateSnapshot on the source, wrapped in
// the job's hooks when it has any. Only hook names travel in the input; the
// source worker looks the commands up in its own config.
func (r *replication) snapshot(ctx workflow.Context, name string, res *ReplicateResult) error {
	pre, post := r.in.PreSnapshotHook, r.in.PostSnapshotHook
	hooks := (pre != "" || post != "") && workflow.GetVersion(ctx, changeSnapshotHooks, workflow.DefaultVersion, 1) >= 1
	if !hooks {
		return r.createSnapshot(ctx, name)
	}
	if pre != "" {
		r.setPhase(ctx, PhaseSnapshot, "pre_snapshot hook "+pre+" on "+r.in.Source.Host)
		if err := r.runHook(ctx, activities.HookPreSnapshot, pre, name); err != nil {
			// The pre hook ran (and may have done part of its work, such as
			// freezing a database): the post hook undoes it.
			if post != "" {
				r.runPostHook(ctx, post, name, res)
			}
			return err
		}
	}
	err := r.createSnapshot(ctx, name)
	if post != "" {
		r.runPostHook(ctx, post, name, res)
	}
	return err
}

func (r *replication) createSnapshot(ctx workflow.Context, name string) error {
	r.setPhase(ctx, PhaseSnapshot, "snapshot "+r.in.Source.String()+"@"+name)
	var snap activities.CreateSnapshotResult
	if err := r.call(ctx, r.in.Source.Host, "snapshot "+name, act.CreateSnapshot,
		activities.CreateSnapshotInput{Job: r.in.Job, Dataset: r.in.Source.Dataset, Name: name, Inventory: r.greetWithSnapshot}, &snap); err != nil {
		return err
	}
	r.srcInv = snap.Inventory
	return nil
}

// runHook runs one hook on the source host.
func (r *replication) runHook(ctx workflow.Context, phase, hook, snapshot string) error {
	return r.call(ctx, r.in.Source.Host, phase+" hook "+hook, act.RunHook,
		activities.RunHookInput{Job: r.in.Job, Dataset: r.in.Source.Dataset, Snapshot: snapshot, Hook: hook, Phase: phase}, nil)
}

// runPostHook runs the post_snapshot hook, whose failure is reported (the
// result's and the status's note, the log) but does not fail the run: the
// snapshot it follows is made and stays. It is skipped when the source just
// failed to answer in time, which would only make the run wait again.
func (r *replication) runPostHook(ctx workflow.Context, hook, snapshot string, res *ReplicateResult) {
	logger := workflow.GetLogger(ctx)
	if r.down[r.in.Source.Host] {
		logger.Warn("source host unavailable: post_snapshot hook not run", "job", r.in.Job, "host", r.in.Source.Host, "hook", hook)
		note := "post_snapshot hook " + hook + " not run: " + r.in.Source.Host + " did not answer"
		res.Note = joinNote(res.Note, note)
		r.status.Note = res.Note
		return
	}
	// A cancelled run still thaws what its pre hook froze.
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	r.setPhase(dctx, PhaseSnapshot, "post_snapshot hook "+hook+" on "+r.in.Source.Host)
	if err := r.runHook(dctx, activities.HookPostSnapshot, hook, snapshot); err != nil {
		logger.Warn("post_snapshot hook failed; the snapshot stays", "job", r.in.Job, "hook", hook, "error", err)
		res.Note = joinNote(res.Note, err.Error())
		r.status.Note = res.Note
	}
}
