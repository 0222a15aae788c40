package starter

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/visibility"
	"github.com/ferry-nas/ferry/workflows"
)

// Schedule policies every ferry schedule gets.
const (
	// Overlap: a run that is due (or triggered) while the previous one is
	// still going is skipped; the next one catches up through the planner.
	Overlap = enumspb.SCHEDULE_OVERLAP_POLICY_SKIP
	// CatchupWindow: after a server outage, a run missed by less than this
	// is still taken (one, as the overlap policy skips the rest); older
	// ones are dropped, the next scheduled run catches up anyway.
	CatchupWindow = time.Hour
)

// What Apply did to one job's schedule.
const (
	Created   = "created"
	Updated   = "updated"
	Unchanged = "unchanged"
	Failed    = "failed"
)

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// Prune deletes ferry schedules whose job is no longer in the config.
	Prune bool
}

// ApplyReport is what Apply did.
type ApplyReport struct {
	// Jobs in name order.
	Jobs []JobApply `json:"jobs"`
	// Stale are ferry schedules with no job in the config, in ID order.
	Stale []StaleSchedule `json:"stale,omitempty"`
}

// JobApply is what Apply did with one job's schedule.
type JobApply struct {
	Job        string `json:"job"`
	ScheduleID string `json:"schedule_id"`
	// Result is Created, Updated, Unchanged or Failed.
	Result string `json:"result"`
	// Changed names what an update changed: spec, action, policies, state.
	Changed []string `json:"changed,omitempty"`
	// Spec describes when the job runs: "every 1h", "cron 0 3 * * *", "manual".
	Spec   string `json:"spec"`
	Paused bool   `json:"paused"`
	// NextRun is the next scheduled run (zero when paused or unknown).
	NextRun time.Time `json:"next_run,omitzero"`
	// Error is why the schedule could not be applied (Result Failed).
	Error string `json:"error,omitempty"`
}

// StaleSchedule is a ferry schedule whose job is not in the config.
type StaleSchedule struct {
	ID string `json:"id"`
	// Job is the job name the ID stands for.
	Job    string `json:"job"`
	Paused bool   `json:"paused"`
	// Deleted is true when Apply pruned it.
	Deleted bool   `json:"deleted"`
	Error   string `json:"error,omitempty"`
}

// Apply makes the Temporal Schedules match cfg's jobs: one schedule per job,
// created when missing, updated when its spec, action, policies or pause
// state differ from the config, left alone when they match. A manual job
// (neither every nor cron) gets a paused schedule that only `ferry run`
// starts. Ferry schedules without a job in the config are reported, and
// deleted only with opts.Prune.
//
// A job whose schedule cannot be applied does not stop the others: it is
// reported as Failed and Apply returns an error after trying every job.
func Apply(ctx context.Context, c client.Client, cfg *config.Config, opts ApplyOptions) (*ApplyReport, error) {
	report := &ApplyReport{}
	failed := 0
	for _, name := range cfg.JobNames() {
		ja, err := applyJob(ctx, c, cfg.Jobs[name])
		if err != nil {
			if ctx.Err() != nil {
				return report, ctx.Err()
			}
			ja.Result, ja.Error = Failed, err.Error()
			failed++
		}
		report.Jobs = append(report.Jobs, ja)
	}

	stale, err := staleSchedules(ctx, c, cfg)
	if err != nil {
		return report, err
	}
	for _, s := range stale {
		if opts.Prune {
			err := c.ScheduleClient().GetHandle(ctx, s.ID).Delete(ctx)
			switch {
			case err == nil:
				s.Deleted = true
			case isNotFound(err):
				continue // already gone; the list (visibility) lags behind
			default:
				s.Error = err.Error()
				failed++
			}
		}
		report.Stale = append(report.Stale, s)
	}
	if failed > 0 {
		return report, fmt.Errorf("%d schedule(s) could not be applied or pruned", failed)
	}
	return report, nil
}

// desired is the schedule the config asks for.
type desired struct {
	spec    client.ScheduleSpec
	cron    string // the config's cron text when spec holds it as a calendar
	action  *client.ScheduleWorkflowAction
	input   *commonpb.Payload
	policy  client.SchedulePolicies
	state   client.ScheduleState
	display string
}

func desiredFor(job config.Job) (*desired, error) {
	in := InputFor(job)
	payload, err := converter.GetDefaultDataConverter().ToPayload(in)
	if err != nil {
		return nil, fmt.Errorf("encoding the workflow input: %w", err)
	}
	d := &desired{
		action: &client.ScheduleWorkflowAction{
			ID:        ScheduleID(job.Name),
			Workflow:  workflows.ReplicateWorkflowName,
			Args:      []any{in},
			TaskQueue: workflows.WorkflowTaskQueue,
			TypedSearchAttributes: temporal.NewSearchAttributes(
				visibility.FerryJob.ValueSet(job.Name),
				visibility.FerrySource.ValueSet(in.Source.String()),
				visibility.FerryTarget.ValueSet(in.Target.String()),
			),
			StaticSummary: fmt.Sprintf("ferry job %s: %s -> %s", job.Name, in.Source, in.Target),
		},
		input:  payload,
		policy: client.SchedulePolicies{Overlap: Overlap, CatchupWindow: CatchupWindow},
	}
	switch {
	case job.Every > 0:
		d.spec.Intervals = []client.ScheduleIntervalSpec{{Every: job.Every}}
		d.display = "every " + formatEvery(job.Every)
		d.state.Note = fmt.Sprintf("ferry job %s runs every %s (set by ferry apply)", job.Name, formatEvery(job.Every))
	case strings.HasPrefix(strings.TrimSpace(job.Cron), "@every "):
		// The config accepts Go durations here (@every 1h30m); give the
		// server the interval itself rather than its own @every syntax.
		every, err := time.ParseDuration(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(job.Cron), "@every ")))
		if err != nil {
			return nil, fmt.Errorf("cron %q: %w", job.Cron, err)
		}
		d.spec.Intervals = []client.ScheduleIntervalSpec{{Every: every}}
		d.display = "cron " + job.Cron
		d.state.Note = fmt.Sprintf("ferry job %s runs %s (set by ferry apply)", job.Name, job.Cron)
	case job.Cron != "":
		// The server compiles cron text into a calendar and keeps the text
		// after '#' as the calendar's comment: that is how a later apply
		// recognises the expression it set.
		d.cron = job.Cron
		d.spec.CronExpressions = []string{job.Cron + " #" + job.Cron}
		d.display = "cron " + job.Cron
		d.state.Note = fmt.Sprintf("ferry job %s runs on cron %q (set by ferry apply)", job.Name, job.Cron)
	default:
		d.display = "manual"
		d.state.Paused = true
		d.state.Note = fmt.Sprintf("manual job (no every or cron in the config): paused on purpose; start a run with `ferry run %s`", job.Name)
	}
	return d, nil
}

func applyJob(ctx context.Context, c client.Client, job config.Job) (JobApply, error) {
	id := ScheduleID(job.Name)
	ja := JobApply{Job: job.Name, ScheduleID: id}
	want, err := desiredFor(job)
	if err != nil {
		return ja, err
	}
	ja.Spec, ja.Paused = want.display, want.state.Paused

	h := c.ScheduleClient().GetHandle(ctx, id)
	desc, err := h.Describe(ctx)
	switch {
	case isNotFound(err):
		h, err = c.ScheduleClient().Create(ctx, client.ScheduleOptions{
			ID:            id,
			Spec:          want.spec,
			Action:        want.action,
			Overlap:       want.policy.Overlap,
			CatchupWindow: want.policy.CatchupWindow,
			Paused:        want.state.Paused,
			Note:          want.state.Note,
		})
		if err != nil {
			return ja, fmt.Errorf("create schedule %s: %w", id, err)
		}
		ja.Result = Created
	case err != nil:
		return ja, fmt.Errorf("describe schedule %s: %w", id, err)
	default:
		ja.Changed = diff(desc, want)
		if len(ja.Changed) == 0 {
			ja.Result = Unchanged
			ja.NextRun = nextRun(desc)
			return ja, nil
		}
		err = h.Update(ctx, client.ScheduleUpdateOptions{
			DoUpdate: func(client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
				spec, policy, state := want.spec, want.policy, want.state
				return &client.ScheduleUpdate{Schedule: &client.Schedule{
					Action: want.action, Spec: &spec, Policy: &policy, State: &state,
				}}, nil
			},
		})
		if err != nil {
			return ja, fmt.Errorf("update schedule %s: %w", id, err)
		}
		ja.Result = Updated
	}

	// The next run time as the server computed it from the new spec.
	if desc, err := h.Describe(ctx); err == nil {
		ja.NextRun = nextRun(desc)
	}
	return ja, nil
}

func nextRun(desc *client.ScheduleDescription) time.Time {
	if desc.Schedule.State != nil && desc.Schedule.State.Paused {
		return time.Time{}
	}
	if len(desc.Info.NextActionTimes) == 0 {
		return time.Time{}
	}
	return desc.Info.NextActionTimes[0]
}

// diff names the parts of the described schedule that differ from want.
func diff(desc *client.ScheduleDescription, want *desired) []string {
	var changed []string
	s := desc.Schedule
	if s.Spec == nil || !specMatches(*s.Spec, want) {
		changed = append(changed, "spec")
	}
	if !actionMatches(s.Action, want) {
		changed = append(changed, "action")
	}
	if p := s.Policy; p == nil || p.Overlap != want.policy.Overlap || p.CatchupWindow != want.policy.CatchupWindow || p.PauseOnFailure {
		changed = append(changed, "policies")
	}
	if st := s.State; st == nil || st.Paused != want.state.Paused || st.Note != want.state.Note || st.LimitedActions {
		changed = append(changed, "state")
	}
	return changed
}

func specMatches(have client.ScheduleSpec, want *desired) bool {
	if len(have.Skip) > 0 || !have.StartAt.IsZero() || !have.EndAt.IsZero() || have.Jitter != 0 {
		return false
	}
	if want.cron != "" {
		// The time zone of a CRON_TZ= prefix is part of the comment.
		return len(have.Intervals) == 0 && len(have.CronExpressions) == 0 &&
			len(have.Calendars) == 1 && have.Calendars[0].Comment == want.cron
	}
	if have.TimeZoneName != "" || len(have.Calendars) > 0 || len(have.CronExpressions) > 0 {
		return false
	}
	if len(have.Intervals) != len(want.spec.Intervals) {
		return false
	}
	for i, iv := range have.Intervals {
		if iv != want.spec.Intervals[i] {
			return false
		}
	}
	return true
}

func actionMatches(a client.ScheduleAction, want *desired) bool {
	have, ok := a.(*client.ScheduleWorkflowAction)
	if !ok {
		return false
	}
	w := want.action
	if have.ID != w.ID || have.Workflow != w.Workflow || have.TaskQueue != w.TaskQueue ||
		have.StaticSummary != w.StaticSummary || have.StaticDetails != "" ||
		have.WorkflowExecutionTimeout != 0 || have.WorkflowRunTimeout != 0 || have.WorkflowTaskTimeout != 0 ||
		have.RetryPolicy != nil || len(have.Memo) > 0 || len(have.UntypedSearchAttributes) > 0 {
		return false
	}
	if len(have.Args) != 1 {
		return false
	}
	p, ok := have.Args[0].(*commonpb.Payload)
	if !ok || !bytes.Equal(p.GetData(), want.input.GetData()) ||
		!bytes.Equal(p.GetMetadata()[converter.MetadataEncoding], want.input.GetMetadata()[converter.MetadataEncoding]) {
		return false
	}
	if have.TypedSearchAttributes.Size() != w.TypedSearchAttributes.Size() {
		return false
	}
	for _, k := range []temporal.SearchAttributeKeyKeyword{visibility.FerryJob, visibility.FerrySource, visibility.FerryTarget} {
		hv, hok := have.TypedSearchAttributes.GetKeyword(k)
		wv, _ := w.TypedSearchAttributes.GetKeyword(k)
		if !hok || hv != wv {
			return false
		}
	}
	return true
}

// staleSchedules lists the ferry schedules (ID ferry-*, starting ferry's
// workflow) whose job is not in cfg. Schedules with the prefix that start
// something else are not ferry's and are never listed.
func staleSchedules(ctx context.Context, c client.Client, cfg *config.Config) ([]StaleSchedule, error) {
	it, err := c.ScheduleClient().List(ctx, client.ScheduleListOptions{PageSize: 500})
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	var stale []StaleSchedule
	seen := map[string]bool{}
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("list schedules: %w", err)
		}
		job, ok := strings.CutPrefix(e.ID, SchedulePrefix)
		if !ok || seen[e.ID] || e.WorkflowType.Name != workflows.ReplicateWorkflowName {
			continue
		}
		seen[e.ID] = true
		if _, inConfig := cfg.Jobs[job]; inConfig {
			continue
		}
		stale = append(stale, StaleSchedule{ID: e.ID, Job: job, Paused: e.Paused})
	}
	sort.Slice(stale, func(i, j int) bool { return stale[i].ID < stale[j].ID })
	return stale, nil
}

// formatEvery renders a duration the way the config spells it: 1h, 90m, 1d.
func formatEvery(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d%day == 0:
		return fmt.Sprintf("%dd", d/day)
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}
