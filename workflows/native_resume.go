package workflows

import (
	"errors"
	"fmt"
	"strings"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/storage"
)

// Native resume tokens (zfs receive_resume_token), changeNativeResume: the
// target's partial receive holds a token; the planner resumes that partial
// like any other (Step.Resume), and the token goes to OpenSend so that the
// source continues it (`zfs send -t`). A token the source can no longer
// continue is refused there: the session sends the step from byte 0 and the
// target aborts the partial (`zfs receive -A`), so the run never fails on
// it again and again (zrepl #644, sanoid #304 are this bug elsewhere).

// stepToken is the resume token the step's first send continues: the
// planned partial's; a step redone after verify starts over.
func (r *replication) stepToken(step Step, verifyAttempt int) string {
	if !r.native || step.Resume == nil || verifyAttempt > 1 || r.in.Resume == string(storage.ResumeOff) {
		return ""
	}
	return step.Resume.ResumeToken
}

// lostSessionToken is the token a receive's SessionLost asks the new
// session to continue ("" : from byte 0, or an error that names none).
func lostSessionToken(err error) string {
	var ae *temporal.ApplicationError
	var d activities.SessionLostDetails
	if errors.As(err, &ae) && ae.HasDetails() && ae.Details(&d) == nil {
		return d.ResumeToken
	}
	return ""
}

// noteRefusedResume says in the log, the status and the run's note that
// the source could not continue the step's partial receive, which the
// target aborts before receiving the step from byte 0.
func (r *replication) noteRefusedResume(ctx workflow.Context, step Step, sess activities.OpenSendResult) {
	if sess.ResumeRefused == "" {
		return
	}
	note := fmt.Sprintf("the partial receive of %s on %s could not be resumed: %s; it is aborted (zfs receive -A) and the step sent again from byte 0",
		step.To, r.in.Target, sess.ResumeRefused)
	workflow.GetLogger(ctx).Warn(note, "job", r.in.Job, "snapshot", step.To)
	r.status.Note = joinNote(r.status.Note, note)
}

// abortedTokensNote logs, and returns as a note, the partial receives with
// a resume token the plan discards: their snapshot or base is no longer
// on the source (or no longer the plan's first step), so they are aborted
// and the step starts from byte 0.
func (r *replication) abortedTokensNote(ctx workflow.Context, plan Plan) string {
	var names []string
	for _, p := range plan.Discard {
		if p.ResumeToken == "" {
			continue
		}
		names = append(names, p.Name)
		workflow.GetLogger(ctx).Warn("a resumable partial receive is not the plan's first step (its snapshot or base is no longer on the source): aborting it (zfs receive -A); the step starts from byte 0",
			"job", r.in.Job, "snapshot", p.Name, "host", r.in.Target.Host)
	}
	if len(names) == 0 {
		return ""
	}
	return fmt.Sprintf("resumable partial receive(s) of %s on %s aborted: the source no longer has their snapshot or base, so the step starts from byte 0",
		strings.Join(names, ", "), r.in.Target)
}

// logFeatures logs what each side's backend detected (greet) and returns
// it by host, for the run's result.
func (r *replication) logFeatures(ctx workflow.Context, src, tgt activities.InventoryResult) map[string]map[string]string {
	var out map[string]map[string]string
	for _, inv := range []activities.InventoryResult{src, tgt} {
		if len(inv.Features) > 0 {
			workflow.GetLogger(ctx).Info("backend features", "job", r.in.Job, "host", inv.Host, "backend", inv.Backend, "features", inv.Features)
			if out == nil {
				out = map[string]map[string]string{}
			}
			out[inv.Host] = inv.Features
		}
	}
	return out
}
