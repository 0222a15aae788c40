package starter

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/visibility"
	"github.com/ferry-nas/ferry/workflows"
)

func TestInputFor(t *testing.T) {
	cfg := testConfig(t, `  deep:
    source: nas-a:share01
    target: nas-b:replicas/share01
    stream: {compress: zstd, bwlimit: 50MiB, resume: staged}
    verify: deep
    timeouts: {heartbeat: 1m, host: 20m, stream: 96h}
  plain:
    source: nas-a:share02
    target: nas-b:replicas/share02
    stream: {compress: none}
`)
	assert.Equal(t, workflows.ReplicateInput{
		Job:      "deep",
		Source:   workflows.Endpoint{Host: "nas-a", Dataset: "share01"},
		Target:   workflows.Endpoint{Host: "nas-b", Dataset: "replicas/share01"},
		Compress: true, BWLimit: 50 << 20, Resume: string(storage.ResumeStaged), DeepVerify: true,
		HeartbeatTimeout: time.Minute, HostTimeout: 20 * time.Minute, StreamTimeout: 96 * time.Hour,
	}, InputFor(cfg.Jobs["deep"]))
	assert.Equal(t, workflows.ReplicateInput{
		Job:    "plain",
		Source: workflows.Endpoint{Host: "nas-a", Dataset: "share02"},
		Target: workflows.Endpoint{Host: "nas-b", Dataset: "replicas/share02"},
		Resume: string(storage.ResumeAuto),
	}, InputFor(cfg.Jobs["plain"]))
	assert.Equal(t, "ferry-deep", ScheduleID("deep"))
}

func results(r *ApplyReport) map[string]string {
	m := map[string]string{}
	for _, j := range r.Jobs {
		m[j.Job] = j.Result
	}
	return m
}

func TestApplyCreatesUpdatesAndIsIdempotent(t *testing.T) {
	ctx := testCtx(t)
	const jobs = `  ap-every:
    source: nas-a:every
    target: nas-b:every
    every: %s
  ap-cron:
    source: nas-a:cron
    target: nas-b:cron
    cron: "0 3 * * *"
  ap-manual:
    source: nas-a:manual
    target: nas-b:manual
    %s
  ap-at-every:
    source: nas-a:at
    target: nas-b:at
    cron: "@every 90m"
`
	cfg := testConfig(t, fmt.Sprintf(jobs, "1h", ""))
	rep, err := Apply(ctx, tc, cfg, ApplyOptions{})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"ap-at-every": Created, "ap-cron": Created, "ap-every": Created, "ap-manual": Created}, results(rep))
	byJob := map[string]JobApply{}
	for _, j := range rep.Jobs {
		byJob[j.Job] = j
	}
	assert.Equal(t, "every 1h", byJob["ap-every"].Spec)
	assert.False(t, byJob["ap-every"].NextRun.IsZero(), "an interval schedule has a next run")
	assert.WithinDuration(t, time.Now().Add(30*time.Minute), byJob["ap-every"].NextRun, 31*time.Minute)
	assert.Equal(t, 3, byJob["ap-cron"].NextRun.UTC().Hour(), "cron 0 3 * * * runs at 03:00 UTC")
	assert.Equal(t, "cron @every 90m", byJob["ap-at-every"].Spec)
	assert.Zero(t, byJob["ap-at-every"].NextRun.Unix()%5400, "@every 90m is a 90m interval")
	assert.True(t, byJob["ap-manual"].Paused)
	assert.True(t, byJob["ap-manual"].NextRun.IsZero())

	// What the server holds.
	desc, err := tc.ScheduleClient().GetHandle(ctx, "ferry-ap-every").Describe(ctx)
	require.NoError(t, err)
	assert.Equal(t, []client.ScheduleIntervalSpec{{Every: time.Hour}}, desc.Schedule.Spec.Intervals)
	assert.Equal(t, enumspb.SCHEDULE_OVERLAP_POLICY_SKIP, desc.Schedule.Policy.Overlap)
	assert.Equal(t, time.Hour, desc.Schedule.Policy.CatchupWindow)
	assert.False(t, desc.Schedule.State.Paused)
	action, ok := desc.Schedule.Action.(*client.ScheduleWorkflowAction)
	require.True(t, ok)
	assert.Equal(t, "ferry-ap-every", action.ID)
	assert.Equal(t, workflows.ReplicateWorkflowName, action.Workflow)
	assert.Equal(t, workflows.WorkflowTaskQueue, action.TaskQueue)
	var in workflows.ReplicateInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayload(action.Args[0].(*commonpb.Payload), &in))
	assert.Equal(t, InputFor(cfg.Jobs["ap-every"]), in)
	for key, want := range map[temporal.SearchAttributeKeyKeyword]string{
		visibility.FerryJob: "ap-every", visibility.FerrySource: "nas-a:every", visibility.FerryTarget: "nas-b:every",
	} {
		got, _ := action.TypedSearchAttributes.GetKeyword(key)
		assert.Equal(t, want, got, key.GetName())
	}

	desc, err = tc.ScheduleClient().GetHandle(ctx, "ferry-ap-cron").Describe(ctx)
	require.NoError(t, err)
	require.Len(t, desc.Schedule.Spec.Calendars, 1)
	assert.Equal(t, "0 3 * * *", desc.Schedule.Spec.Calendars[0].Comment)

	desc, err = tc.ScheduleClient().GetHandle(ctx, "ferry-ap-manual").Describe(ctx)
	require.NoError(t, err)
	assert.True(t, desc.Schedule.State.Paused)
	assert.Contains(t, desc.Schedule.State.Note, "manual job")
	assert.Contains(t, desc.Schedule.State.Note, "ferry run ap-manual")
	assert.Empty(t, desc.Info.NextActionTimes)

	// Applying the same config again changes nothing.
	rep, err = Apply(ctx, tc, cfg, ApplyOptions{})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"ap-at-every": Unchanged, "ap-cron": Unchanged, "ap-every": Unchanged, "ap-manual": Unchanged}, results(rep))

	// A changed every, and the manual job given a schedule, are updated.
	cfg = testConfig(t, fmt.Sprintf(jobs, "2h", "every: 30m"))
	rep, err = Apply(ctx, tc, cfg, ApplyOptions{})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"ap-at-every": Unchanged, "ap-cron": Unchanged, "ap-every": Updated, "ap-manual": Updated}, results(rep))
	for _, j := range rep.Jobs {
		switch j.Job {
		case "ap-every":
			assert.Equal(t, []string{"spec", "state"}, j.Changed, "the interval and the note naming it")
			assert.Equal(t, "every 2h", j.Spec)
			assert.Zero(t, j.NextRun.Unix()%7200, "a 2h interval runs at even hours")
		case "ap-manual":
			assert.Contains(t, j.Changed, "state")
			assert.False(t, j.Paused)
			assert.False(t, j.NextRun.IsZero())
		}
	}
	desc, err = tc.ScheduleClient().GetHandle(ctx, "ferry-ap-every").Describe(ctx)
	require.NoError(t, err)
	assert.Equal(t, []client.ScheduleIntervalSpec{{Every: 2 * time.Hour}}, desc.Schedule.Spec.Intervals)
	desc, err = tc.ScheduleClient().GetHandle(ctx, "ferry-ap-manual").Describe(ctx)
	require.NoError(t, err)
	assert.False(t, desc.Schedule.State.Paused, "a job that got a schedule is unpaused")

	rep, err = Apply(ctx, tc, cfg, ApplyOptions{})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"ap-at-every": Unchanged, "ap-cron": Unchanged, "ap-every": Unchanged, "ap-manual": Unchanged}, results(rep))

	// The pause state follows the config: a scheduled job paused by hand is
	// unpaused by the next apply.
	require.NoError(t, tc.ScheduleClient().GetHandle(ctx, "ferry-ap-cron").Pause(ctx, client.SchedulePauseOptions{Note: "by hand"}))
	rep, err = Apply(ctx, tc, cfg, ApplyOptions{})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"ap-at-every": Unchanged, "ap-cron": Updated, "ap-every": Unchanged, "ap-manual": Unchanged}, results(rep))
	desc, err = tc.ScheduleClient().GetHandle(ctx, "ferry-ap-cron").Describe(ctx)
	require.NoError(t, err)
	assert.False(t, desc.Schedule.State.Paused)
	assert.Contains(t, desc.Schedule.State.Note, "set by ferry apply")
}

func TestApplyPrune(t *testing.T) {
	ctx := testCtx(t)
	cfg := testConfig(t, `  pr-keep:
    source: nas-a:keep
    target: nas-b:keep
`)
	// A ferry schedule whose job left the config, and a schedule that only
	// shares the prefix (it starts another workflow): never ferry's to touch.
	for id, wf := range map[string]string{"ferry-pr-gone": workflows.ReplicateWorkflowName, "ferry-pr-other": "SomethingElse"} {
		_, err := tc.ScheduleClient().Create(ctx, client.ScheduleOptions{
			ID: id, Paused: true,
			Action: &client.ScheduleWorkflowAction{ID: id, Workflow: wf, TaskQueue: "elsewhere",
				Args: []any{workflows.ReplicateInput{Job: strings.TrimPrefix(id, "ferry-")}}},
		})
		require.NoError(t, err)
		t.Cleanup(func() { _ = tc.ScheduleClient().GetHandle(ctx, id).Delete(ctx) })
	}
	// Listing schedules goes through visibility: wait until both show.
	require.Eventually(t, func() bool {
		found := 0
		it, err := tc.ScheduleClient().List(ctx, client.ScheduleListOptions{})
		require.NoError(t, err)
		for it.HasNext() {
			e, err := it.Next()
			require.NoError(t, err)
			if e.ID == "ferry-pr-gone" || e.ID == "ferry-pr-other" {
				found++
			}
		}
		return found == 2
	}, 15*time.Second, 200*time.Millisecond)

	stale := func(r *ApplyReport) *StaleSchedule {
		for i, s := range r.Stale {
			require.NotEqual(t, "ferry-pr-other", s.ID, "a schedule of another workflow is not ferry's")
			if s.ID == "ferry-pr-gone" {
				return &r.Stale[i]
			}
		}
		return nil
	}

	rep, err := Apply(ctx, tc, cfg, ApplyOptions{})
	require.NoError(t, err)
	s := stale(rep)
	require.NotNil(t, s, "the stale schedule is reported")
	assert.False(t, s.Deleted)
	assert.Equal(t, "pr-gone", s.Job)
	_, err = tc.ScheduleClient().GetHandle(ctx, "ferry-pr-gone").Describe(ctx)
	require.NoError(t, err, "without --prune the stale schedule survives")

	rep, err = Apply(ctx, tc, cfg, ApplyOptions{Prune: true})
	require.NoError(t, err)
	s = stale(rep)
	require.NotNil(t, s)
	assert.True(t, s.Deleted)
	_, err = tc.ScheduleClient().GetHandle(ctx, "ferry-pr-gone").Describe(ctx)
	assert.True(t, isNotFound(err), "pruned: %v", err)
	_, err = tc.ScheduleClient().GetHandle(ctx, "ferry-pr-other").Describe(ctx)
	require.NoError(t, err, "another workflow's schedule is left alone")
	_, err = tc.ScheduleClient().GetHandle(ctx, "ferry-pr-keep").Describe(ctx)
	require.NoError(t, err)
}

func TestRunNotApplied(t *testing.T) {
	_, err := Run(testCtx(t), tc, "nobody")
	var na *NotAppliedError
	require.ErrorAs(t, err, &na)
	assert.Contains(t, err.Error(), "ferry apply")
}

// progressLog collects what Follow reports.
type progressLog struct {
	mu   sync.Mutex
	seen []Progress
}

func (l *progressLog) add(p Progress) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = append(l.seen, p)
}

func (l *progressLog) all() []Progress {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Progress(nil), l.seen...)
}

func TestRunTriggersPausedScheduleAndFollows(t *testing.T) {
	ctx := testCtx(t)
	cfg := testConfig(t, `  run-ok:
    source: nas-a:ok
    target: nas-b:replicas/ok
`)
	release := make(chan struct{})
	setFake("run-ok", &fakeJob{release: release})
	_, err := Apply(ctx, tc, cfg, ApplyOptions{})
	require.NoError(t, err)

	started, err := Run(ctx, tc, "run-ok")
	require.NoError(t, err)
	assert.True(t, started.Paused, "a manual job's schedule is paused, and the trigger ran it anyway")
	assert.False(t, started.AlreadyRunning)
	assert.True(t, strings.HasPrefix(started.WorkflowID, "ferry-run-ok-"), started.WorkflowID)
	require.NotEmpty(t, started.RunID)

	// While it streams, the schedule's overlap policy skips a second trigger.
	require.Eventually(t, func() bool {
		p, err := Inspect(ctx, tc, started.WorkflowID, started.RunID)
		return err == nil && p.Phase == workflows.PhaseStream && p.Bytes > 0
	}, 15*time.Second, 100*time.Millisecond)
	again, err := Run(ctx, tc, "run-ok")
	require.NoError(t, err)
	assert.True(t, again.AlreadyRunning)
	assert.Equal(t, started.WorkflowID, again.WorkflowID)
	assert.Equal(t, started.RunID, again.RunID)

	var log progressLog
	var once sync.Once
	begin := time.Now()
	res, err := Follow(ctx, tc, started.WorkflowID, started.RunID, func(p Progress) {
		log.add(p)
		once.Do(func() { close(release) })
	})
	require.NoError(t, err)
	assert.Equal(t, workflows.SnapshotName("run-ok", time.Time{})[:len("ferry_run-ok_")], res.Snapshot[:len("ferry_run-ok_")])
	assert.EqualValues(t, fakeExpected, res.Bytes)
	assert.Len(t, res.Plan.Steps, 1)
	assert.Less(t, time.Since(begin), 10*time.Second)

	seen := log.all()
	require.NotEmpty(t, seen)
	p := seen[0]
	assert.Equal(t, workflows.PhaseStream, p.Phase)
	assert.Equal(t, started.WorkflowID, p.WorkflowID)
	assert.Equal(t, 1, p.Step)
	assert.Equal(t, 1, p.Steps)
	assert.EqualValues(t, 1<<20, p.Bytes)
	assert.EqualValues(t, fakeExpected, p.Expected)
	assert.EqualValues(t, fakeRate, p.Rate)
	assert.Equal(t, 3*time.Second, p.ETA)
	assert.Equal(t, res.Snapshot, p.Snapshot)
	assert.False(t, p.Unanswered)
	assert.Contains(t, p.String(), "stream step 1/1")
	assert.Contains(t, p.String(), "1.0 MiB / 4.0 MiB stream (25%)  512.0 KiB/s wire (1.0 MiB/s stream)  ETA 3s")
	for i := 1; i < len(seen); i++ {
		assert.False(t, seen[i].same(seen[i-1]), "progress is reported only when it changes")
	}

	desc, err := tc.ScheduleClient().GetHandle(ctx, "ferry-run-ok").Describe(ctx)
	require.NoError(t, err)
	assert.True(t, desc.Schedule.State.Paused, "the manual schedule stays paused")
}

func TestFollowSurfacesFailure(t *testing.T) {
	ctx := testCtx(t)
	cfg := testConfig(t, `  run-fail:
    source: nas-a:fail
    target: nas-b:replicas/fail
    every: 24h
`)
	setFake("run-fail", &fakeJob{fail: temporal.NewApplicationErrorWithOptions(
		"nas-b has 1.0 GiB free, the step needs 4.0 GiB", activities.ErrNoSpace, temporal.ApplicationErrorOptions{NonRetryable: true})})
	_, err := Apply(ctx, tc, cfg, ApplyOptions{})
	require.NoError(t, err)
	started, err := Run(ctx, tc, "run-fail")
	require.NoError(t, err)
	assert.False(t, started.Paused)

	_, err = Follow(ctx, tc, started.WorkflowID, started.RunID, nil)
	var re *RunError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, activities.ErrNoSpace, re.Type)
	assert.Equal(t, "nas-b has 1.0 GiB free, the step needs 4.0 GiB", re.Message)
	assert.Equal(t, started.WorkflowID, re.WorkflowID)
	assert.Equal(t, "run "+started.WorkflowID+" failed: NoSpace: nas-b has 1.0 GiB free, the step needs 4.0 GiB", re.Error())
	var wee *temporal.WorkflowExecutionError
	assert.True(t, errors.As(err, &wee), "the SDK's error stays reachable")
}

func TestStatus(t *testing.T) {
	ctx := testCtx(t)
	const jobs = `  st-ok:
    source: nas-a:ok
    target: nas-b:ok
  st-fail:
    source: nas-a:fail
    target: nas-b:fail
    every: 12h
`
	applied := testConfig(t, jobs)
	full := testConfig(t, jobs+`  st-never:
    source: nas-a:never
    target: nas-b:never
`)
	_, err := Apply(ctx, tc, applied, ApplyOptions{})
	require.NoError(t, err)

	setFake("st-fail", &fakeJob{fail: temporal.NewApplicationErrorWithOptions(
		"target diverged: ferry_st-fail_x", activities.ErrConflict, temporal.ApplicationErrorOptions{NonRetryable: true})})
	failed, err := Run(ctx, tc, "st-fail")
	require.NoError(t, err)
	_, err = Follow(ctx, tc, failed.WorkflowID, failed.RunID, nil)
	require.Error(t, err)

	// Two successes: the later one is the last success. It records no
	// memo, as runs before the memo did: Status reads its history. The
	// failure above recorded one: Status reads the error from it.
	var done Started
	var res workflows.ReplicateResult
	for i := range 2 {
		setFake("st-ok", &fakeJob{noMemo: i == 1})
		done, err = Run(ctx, tc, "st-ok")
		require.NoError(t, err)
		res, err = Follow(ctx, tc, done.WorkflowID, done.RunID, nil)
		require.NoError(t, err)
	}

	// A second run holding mid-stream is the current one.
	release := make(chan struct{})
	setFake("st-ok", &fakeJob{release: release})
	current, err := Run(ctx, tc, "st-ok")
	require.NoError(t, err)

	byJob := map[string]JobStatus{}
	require.Eventually(t, func() bool {
		sts, err := Status(ctx, tc, full)
		require.NoError(t, err)
		require.Len(t, sts, 3)
		assert.Equal(t, []string{"st-fail", "st-never", "st-ok"}, []string{sts[0].Job, sts[1].Job, sts[2].Job}, "sorted by job")
		for _, s := range sts {
			byJob[s.Job] = s
		}
		// Visibility catches up shortly after each change.
		ok, fail := byJob["st-ok"], byJob["st-fail"]
		return ok.Current != nil && ok.Current.Bytes > 0 && ok.LastSuccess != nil && fail.LastError != nil
	}, 15*time.Second, 200*time.Millisecond)

	never := byJob["st-never"]
	assert.False(t, never.Applied())
	assert.Nil(t, never.Current)
	assert.Nil(t, never.LastSuccess)
	assert.Nil(t, never.LastError)
	assert.Empty(t, never.Problems)

	ok := byJob["st-ok"]
	assert.Empty(t, ok.Problems)
	require.True(t, ok.Applied())
	assert.True(t, ok.Schedule.Paused)
	assert.True(t, ok.Schedule.NextRun.IsZero())
	assert.Equal(t, "nas-a:ok", ok.Source)
	assert.Equal(t, current.WorkflowID, ok.Current.WorkflowID)
	assert.Equal(t, workflows.PhaseStream, ok.Current.Phase)
	assert.EqualValues(t, fakeExpected, ok.Current.Expected)
	assert.Equal(t, 3*time.Second, ok.Current.ETA)
	js, err := json.Marshal(ok)
	require.NoError(t, err)
	assert.Contains(t, string(js), `"eta_seconds":3`)
	assert.Contains(t, string(js), `"phase":"stream"`)
	assert.Contains(t, string(js), `"schedule":{"id":"ferry-st-ok","paused":true`)
	assert.Equal(t, done.WorkflowID, ok.LastSuccess.WorkflowID)
	assert.Equal(t, "Completed", ok.LastSuccess.Status)
	assert.Equal(t, res.Snapshot, ok.LastSuccess.Snapshot)
	assert.EqualValues(t, fakeExpected, ok.LastSuccess.Bytes)
	assert.Equal(t, 1, ok.LastSuccess.Steps)
	assert.False(t, ok.LastSuccess.CloseTime.IsZero())
	assert.Nil(t, ok.LastError)

	fail := byJob["st-fail"]
	assert.Empty(t, fail.Problems)
	require.True(t, fail.Applied())
	assert.False(t, fail.Schedule.Paused)
	assert.False(t, fail.Schedule.NextRun.IsZero())
	assert.Nil(t, fail.Current)
	assert.Nil(t, fail.LastSuccess)
	assert.Equal(t, failed.WorkflowID, fail.LastError.WorkflowID)
	assert.Equal(t, "Failed", fail.LastError.Status)
	assert.Equal(t, activities.ErrConflict, fail.LastError.ErrorType)
	assert.Equal(t, "target diverged: ferry_st-fail_x", fail.LastError.Error)

	// One job by name.
	sts, err := Status(ctx, tc, full, "st-never")
	require.NoError(t, err)
	require.Len(t, sts, 1)
	_, err = Status(ctx, tc, full, "nope")
	require.Error(t, err)

	close(release)
	_, err = Follow(ctx, tc, current.WorkflowID, current.RunID, nil)
	require.NoError(t, err)
}

// Status relies on what the pinned server's SQL visibility does: no ORDER
// BY, IN on ExecutionStatus accepted, newest closed run first.
func TestSQLiteVisibilityQueries(t *testing.T) {
	ctx := testCtx(t)
	_, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: "FerryJob = 'x' ORDER BY StartTime DESC"})
	require.Error(t, err, "if ORDER BY is accepted now, Status could use it")
	assert.Contains(t, err.Error(), "ORDER BY")
	_, err = tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: fmt.Sprintf(queryError, visibility.Job, quote("x"))})
	require.NoError(t, err)
}

func TestFormat(t *testing.T) {
	assert.Equal(t, "512 B", FormatBytes(512))
	assert.Equal(t, "1.5 KiB", FormatBytes(1536))
	assert.Equal(t, "4.0 GiB", FormatBytes(4<<30))
	assert.Equal(t, "48.0 MiB/s", FormatRate(48<<20))
	assert.Equal(t, "350ms", FormatDuration(350*time.Millisecond+200*time.Microsecond))
	assert.Equal(t, "45s", FormatDuration(45*time.Second))
	assert.Equal(t, "3m20s", FormatDuration(200*time.Second))
	assert.Equal(t, "2h05m", FormatDuration(2*time.Hour+5*time.Minute))
	assert.Equal(t, "3d04h", FormatDuration(76*time.Hour))
	assert.Equal(t, "1d", formatEvery(24*time.Hour))
	assert.Equal(t, "90m", formatEvery(90*time.Minute))
	p := Progress{Status: "Running", Phase: "verify", Step: 2, Steps: 3, DoneBytes: 5 << 30}
	assert.Equal(t, "verify step 2/3  5.0 GiB moved on the wire", p.String())
	p = Progress{Status: "Running", Phase: "stream", Step: 1, Steps: 1, Bytes: 10, Attempt: 3, LastFailure: "connection reset"}
	assert.Equal(t, "stream step 1/1  10 B stream  (attempt 3, after: connection reset)", p.String())
}

func TestProgressNamesTheStepsSnapshotAndTheKeptPartial(t *testing.T) {
	kept := activities.Partial{Name: "ferry_s_1", Resume: &activities.ResumePosition{Offset: 100 << 20}}
	plan := workflows.Plan{Steps: []workflows.Step{
		{To: "ferry_s_1", Resume: &kept},
		{From: "ferry_s_1", To: "ferry_s_2"},
	}}
	st := workflows.Status{Phase: workflows.PhaseStream, Snapshot: "ferry_s_2", Step: 1, Steps: 2, Plan: &plan,
		Note: "ferry_x, the cursor, was deleted on nas-a"}
	p := Progress{Status: "Running"}
	p.applyStatus(st)
	assert.Equal(t, "ferry_s_1", p.Snapshot, "the step being streamed, not the run's new snapshot")
	assert.Equal(t, "stream step 1/2 ferry_s_1  (resuming from 100.0 MiB kept by an earlier run)", p.String())
	assert.Equal(t, st.Note, p.Note)

	st.Step = 2
	p = Progress{Status: "Running"}
	p.applyStatus(st)
	assert.Equal(t, "stream step 2/2 ferry_s_2", p.String())

	st.Plan, st.Step = nil, 0
	p = Progress{Status: "Running"}
	p.applyStatus(st)
	assert.Equal(t, "ferry_s_2", p.Snapshot, "before the plan the run's snapshot is all there is")
}
