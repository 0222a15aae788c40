package workflows

import (
	"fmt"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/ferry-nas/ferry/activities"
)

// changePruneAfterMark: after mark, the run applies the job's retention
// grids on both sides (Prune on each host); a failure is a note, not the
// run's failure.
const changePruneAfterMark = "prune-after-mark"

// PhasePrune is the run's last phase: retention on both sides.
const PhasePrune = "prune"

// PruneReport is what the retention step did on each side of a run.
type PruneReport struct {
	Source *PruneSide `json:"source,omitempty"`
	Target *PruneSide `json:"target,omitempty"`
}

// PruneSide is one side's prune: how many snapshots were deleted and kept,
// and what went wrong (the replication stands either way).
type PruneSide struct {
	Host   string `json:"host"`
	Grid   string `json:"grid"`
	Pruned int    `json:"pruned"`
	Kept   int    `json:"kept"`
	// Deleted names the snapshots removed, oldest first.
	Deleted []string `json:"deleted,omitempty"`
	// Failed names the snapshots whose deletion failed (they stay).
	Failed []string `json:"failed,omitempty"`
	// Error is why the prune itself failed (nothing more was deleted).
	Error string `json:"error,omitempty"`
}

// Problem says in words what went wrong on this side; empty when nothing did.
func (s *PruneSide) Problem() string {
	switch {
	case s == nil:
		return ""
	case s.Error != "":
		return fmt.Sprintf("prune on %s failed, its snapshots stay until the next prune: %s", s.Host, s.Error)
	case len(s.Failed) > 0:
		return fmt.Sprintf("prune on %s could not delete %s; they stay until the next prune (see the worker's log)", s.Host, strings.Join(s.Failed, ", "))
	}
	return ""
}

// String is "pruned 3, kept 12 on nas-a", with ", 1 failed" or "prune
// failed on nas-a" when something went wrong.
func (s *PruneSide) String() string {
	if s.Error != "" {
		return "prune failed on " + s.Host
	}
	out := fmt.Sprintf("pruned %d, kept %d on %s", s.Pruned, s.Kept, s.Host)
	if len(s.Failed) > 0 {
		out += fmt.Sprintf(", %d failed", len(s.Failed))
	}
	return out
}

// String is "pruned 3, kept 12 on nas-a; pruned 1, kept 30 on nas-b".
func (p *PruneReport) String() string {
	var parts []string
	for _, s := range []*PruneSide{p.Source, p.Target} {
		if s != nil {
			parts = append(parts, s.String())
		}
	}
	return strings.Join(parts, "; ")
}

// partialProtections asks the source to keep what partial receives on the
// target still need: the snapshot each is of and its base.
func partialProtections(target string, partials []activities.Partial) []activities.Protection {
	var out []activities.Protection
	for _, p := range partials {
		if p.SourceGUID != "" {
			out = append(out, activities.Protection{GUID: p.SourceGUID, Rule: activities.RulePartialBase,
				Detail: fmt.Sprintf("the snapshot a partial receive on %s is of (%s)", target, p.ID)})
		}
		if p.ParentGUID != "" {
			out = append(out, activities.Protection{GUID: p.ParentGUID, Rule: activities.RulePartialBase,
				Detail: fmt.Sprintf("the base of the partial receive of %s on %s", p.Name, target)})
		}
	}
	return out
}

// prune applies the job's retention grids on both sides after the marks.
// It never fails the run: a side whose prune fails says so in the report,
// the note and a warning.
func (r *replication) prune(ctx workflow.Context, plan Plan, targetPartials []activities.Partial) (*PruneReport, string) {
	if r.in.RetentionSource == "" && r.in.RetentionTarget == "" {
		return nil, ""
	}
	now := workflow.Now(ctx)
	r.setPhase(ctx, PhasePrune, "apply retention on "+r.in.Source.Host+" and "+r.in.Target.Host)
	// Partials the plan discarded are gone; the others may still be resumed.
	var left []activities.Partial
	for _, p := range targetPartials {
		discarded := false
		for _, d := range plan.Discard {
			discarded = discarded || d.ID == p.ID
		}
		if !discarded {
			left = append(left, p)
		}
	}
	type side struct {
		report *PruneSide
		f      workflow.Future
	}
	start := func(ep Endpoint, which, grid string, protect []activities.Protection) *side {
		if grid == "" {
			return nil
		}
		return &side{&PruneSide{Host: ep.Host, Grid: grid}, workflow.ExecuteActivity(r.hostCtx(ctx, ep.Host, "prune "+which), act.Prune,
			activities.PruneInput{Job: r.in.Job, Dataset: ep.Dataset, Side: which, Grid: grid, Now: now, Protect: protect})}
	}
	src := start(r.in.Source, activities.SideSource, r.in.RetentionSource, partialProtections(r.in.Target.Host, left))
	tgt := start(r.in.Target, activities.SideTarget, r.in.RetentionTarget, nil)
	report := &PruneReport{}
	var problems []string
	for _, s := range []*side{src, tgt} {
		if s == nil {
			continue
		}
		var res activities.PruneResult
		if err := s.f.Get(ctx, &res); err != nil {
			s.report.Error = r.hostErr(s.report.Host, "prune", r.in.HostTimeout, err).Error()
		}
		for _, v := range res.Snapshots {
			switch {
			case v.Deleted:
				s.report.Deleted = append(s.report.Deleted, v.Name)
			case v.Error != "":
				s.report.Failed = append(s.report.Failed, v.Name)
			}
		}
		s.report.Pruned, s.report.Kept = res.Pruned, res.Kept
		if p := s.report.Problem(); p != "" {
			problems = append(problems, p)
			workflow.GetLogger(ctx).Warn(p, "job", r.in.Job, "host", s.report.Host)
		}
	}
	if src != nil {
		report.Source = src.report
	}
	if tgt != nil {
		report.Target = tgt.report
	}
	return report, strings.Join(problems, "; ")
}
