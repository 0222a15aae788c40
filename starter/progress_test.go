package starter

import (
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	activitypb "go.temporal.io/api/activity/v1"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	failurepb "go.temporal.io/api/failure/v1"
	"go.temporal.io/api/serviceerror"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/workflows"
)

// pending is a pending Receive as DescribeWorkflowExecution shows it.
func pending(t *testing.T, state enumspb.PendingActivityState, attempt int32, hb activities.ReceiveProgress, hbAt, started time.Time, heartbeatLost bool) *workflowpb.PendingActivityInfo {
	t.Helper()
	payloads, err := converter.GetDefaultDataConverter().ToPayloads(hb)
	require.NoError(t, err)
	pa := &workflowpb.PendingActivityInfo{
		ActivityType:      &commonpb.ActivityType{Name: ReceiveActivity},
		State:             state,
		Attempt:           attempt,
		HeartbeatDetails:  payloads,
		LastHeartbeatTime: timestamppb.New(hbAt),
		LastStartedTime:   timestamppb.New(started),
	}
	if heartbeatLost {
		pa.LastFailure = &failurepb.Failure{Message: "activity Heartbeat timeout", FailureInfo: &failurepb.Failure_TimeoutFailureInfo{
			TimeoutFailureInfo: &failurepb.TimeoutFailureInfo{TimeoutType: enumspb.TIMEOUT_TYPE_HEARTBEAT}}}
	}
	return pa
}

// A receiver killed mid-stream, seen by `ferry status` and `run --wait`
// step by step: its heartbeat goes stale, the retry waits for a worker,
// the restarted worker resumes.
func TestProgressThroughAReceiverKill(t *testing.T) {
	const mib = 1 << 20
	t0 := time.Date(2026, 11, 30, 21, 0, 0, 0, time.UTC)
	base := func() Progress {
		return Progress{Status: "Running", Phase: workflows.PhaseStream, Step: 1, Steps: 1, Snapshot: "ferry_s_1", TargetHost: "nas-b"}
	}
	hb := activities.ReceiveProgress{Bytes: 80 * mib, Expected: 293 * mib, Rate: 20 * mib, WireRate: 20 * mib,
		StreamSent: 80 * mib, WireSent: 81 * mib, Attempt: 1, Interval: 2}

	// Live: rates labelled, the wire rate first (what bwlimit caps).
	p := base()
	p.applyReceive(pending(t, enumspb.PENDING_ACTIVITY_STATE_STARTED, 1, hb, t0, t0.Add(-time.Minute), false), t0.Add(time.Second))
	assert.Equal(t, "stream step 1/1 ferry_s_1  80.0 MiB / 293.0 MiB stream (27%)  20.0 MiB/s wire  ETA 11s", p.String())

	// Compressed: the stream outruns the wire; both are named.
	c := hb
	c.Rate = 50 * mib
	p = base()
	p.applyReceive(pending(t, enumspb.PENDING_ACTIVITY_STATE_STARTED, 1, c, t0, t0.Add(-time.Minute), false), t0.Add(time.Second))
	assert.Contains(t, p.String(), "20.0 MiB/s wire (50.0 MiB/s stream)")

	// Killed: 25 s without a heartbeat (over twice its 2 s interval).
	p = base()
	p.applyReceive(pending(t, enumspb.PENDING_ACTIVITY_STATE_STARTED, 1, hb, t0, t0.Add(-time.Minute), false), t0.Add(25*time.Second))
	assert.Equal(t, "stream step 1/1 ferry_s_1  80.0 MiB / 293.0 MiB stream (27%)  no progress from nas-b for 25s — worker down?", p.String())
	assert.Zero(t, p.Rate, "no stale rate")
	assert.Zero(t, p.ETA, "no stale ETA")
	assert.Equal(t, 25*time.Second, p.Silent)

	// The heartbeat timeout fired; attempt 2 waits for a worker of nas-b.
	p = base()
	p.applyReceive(pending(t, enumspb.PENDING_ACTIVITY_STATE_SCHEDULED, 2, hb, t0, t0.Add(-time.Minute), true), t0.Add(30*time.Second))
	assert.True(t, p.Waiting)
	assert.Equal(t, "stream step 1/1 ferry_s_1  80.0 MiB / 293.0 MiB stream (27%)  no progress from nas-b for 30s — worker down? (attempt 2 waits for `ferry worker --host nas-b`)", p.String())
	// The server dropped the heartbeat's time with the attempt: the time
	// since that attempt ended is a lower bound.
	pa := pending(t, enumspb.PENDING_ACTIVITY_STATE_SCHEDULED, 2, hb, t0, t0.Add(-time.Minute), true)
	pa.LastHeartbeatTime, pa.LastAttemptCompleteTime = nil, timestamppb.New(t0.Add(5*time.Second))
	p = base()
	p.applyReceive(pa, t0.Add(17*time.Second))
	assert.Equal(t, "stream step 1/1 ferry_s_1  80.0 MiB / 293.0 MiB stream (27%)  no progress from nas-b for at least 12s — worker down? (attempt 2 waits for `ferry worker --host nas-b`)", p.String())

	// The restarted worker took attempt 2 up but has not reported yet: the
	// old attempt's rate is not shown as this one's.
	p = base()
	p.applyReceive(pending(t, enumspb.PENDING_ACTIVITY_STATE_STARTED, 2, hb, t0, t0.Add(40*time.Second), true), t0.Add(41*time.Second))
	assert.Zero(t, p.Rate)
	assert.NotContains(t, p.String(), "MiB/s")

	// It resumed at the kept checkpoint, and counts every attempt.
	r := activities.ReceiveProgress{Bytes: 100 * mib, Expected: 293 * mib, Rate: 20 * mib, WireRate: 20 * mib, StartOffset: 79 * mib,
		StreamSent: 101 * mib, WireSent: 102 * mib, Attempt: 2, Resumes: 1, Reconnects: 3, Interval: 2}
	p = base()
	p.applyReceive(pending(t, enumspb.PENDING_ACTIVITY_STATE_STARTED, 2, r, t0.Add(45*time.Second), t0.Add(40*time.Second), true), t0.Add(46*time.Second))
	assert.Equal(t, "stream step 1/1 ferry_s_1  100.0 MiB / 293.0 MiB stream (34%)  20.0 MiB/s wire  ETA 10s"+
		"  (resumed at 26% after nas-b stopped reporting, 3 reconnects, 102.0 MiB on the wire over 2 attempts)", p.String())
	assert.EqualValues(t, 79*mib, p.ResumedAt)
	assert.EqualValues(t, 101*mib, p.StreamSent)

	// In off mode the retry starts over.
	r = activities.ReceiveProgress{Bytes: 5 * mib, Expected: 293 * mib, Rate: 20 * mib, WireRate: 20 * mib,
		StreamSent: 85 * mib, WireSent: 86 * mib, Attempt: 2, Restarts: 1, Restart: activities.RestartModeOff, Interval: 2}
	p = base()
	p.applyReceive(pending(t, enumspb.PENDING_ACTIVITY_STATE_STARTED, 2, r, t0.Add(45*time.Second), t0.Add(40*time.Second), true), t0.Add(46*time.Second))
	assert.Contains(t, p.String(), "(restarted from 0 after nas-b stopped reporting: off mode, 86.0 MiB on the wire over 2 attempts)")

	js, err := json.Marshal(p)
	require.NoError(t, err)
	var back Progress
	require.NoError(t, json.Unmarshal(js, &back))
	assert.Equal(t, p.String(), back.String(), "read back from JSON")
	for _, field := range []string{`"stream_bytes":5242880`, `"wire_sent":90177536`, `"stream_sent":89128960`, `"restarts":1`, `"restart":"off mode"`, `"receiver_lost":true`} {
		assert.Contains(t, string(js), field)
	}
}

// With Temporal unreachable Follow says so, and keeps trying instead of
// failing: a real client against a port nothing listens on.
func TestFollowReportsTemporalUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	c, err := client.NewLazyClient(client.Options{HostPort: addr})
	require.NoError(t, err)
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	seen := make(chan Progress, 16)
	done := make(chan error, 1)
	go func() {
		_, err := Follow(ctx, c, "ferry-x-1", "", func(p Progress) {
			select {
			case seen <- p:
			default:
			}
		})
		done <- err
	}()
	var p Progress
	select {
	case p = <-seen:
	case err := <-done:
		t.Fatalf("Follow gave up instead of reporting Temporal unreachable: %v", err)
	case <-ctx.Done():
		t.Fatal("Follow reported nothing while Temporal was unreachable")
	}
	assert.NotEmpty(t, p.Unreachable)
	assert.Contains(t, p.String(), "Temporal unreachable: ")
	assert.Contains(t, p.String(), "following resumes when it is back")
	select {
	case err := <-done:
		t.Fatalf("Follow stopped while Temporal was unreachable: %v", err)
	default:
	}
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
}

// A call that timed out reads as "no answer within 10s" whether it comes as
// the SDK's serviceerror or a context error, and the first report does not
// claim an outage of "0s".
func TestUnreachableTextWordsATimeout(t *testing.T) {
	for _, err := range []error{serviceerror.NewDeadlineExceeded("context deadline exceeded"), context.DeadlineExceeded} {
		assert.Equal(t, "no answer within 10s (the run goes on without it, following resumes when it is back)", unreachableText(err, 0))
		assert.Equal(t, "no answer within 10s (for 15s; the run goes on without it, following resumes when it is back)", unreachableText(err, 15*time.Second))
	}
}

// An activity no worker of its host picks up says so (not only a receive).
func TestProgressNamesAHostThatPicksNothingUp(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 21, 0, 0, 0, time.UTC)
	pa := &workflowpb.PendingActivityInfo{
		ActivityType:    &commonpb.ActivityType{Name: "Inventory"},
		State:           enumspb.PENDING_ACTIVITY_STATE_SCHEDULED,
		Attempt:         1,
		ScheduledTime:   timestamppb.New(t0),
		ActivityOptions: &activitypb.ActivityOptions{TaskQueue: &taskqueuepb.TaskQueue{Name: workflows.HostTaskQueue("nas-b")}},
	}
	p := Progress{Status: "Running", Phase: workflows.PhaseGreet, Snapshot: "ferry_s_1"}
	p.applyPickup([]*workflowpb.PendingActivityInfo{pa}, t0.Add(5*time.Second))
	assert.Equal(t, "greet ferry_s_1", p.String(), "a few seconds are no news")
	p.applyPickup([]*workflowpb.PendingActivityInfo{pa}, t0.Add(25*time.Second))
	assert.Equal(t, "greet ferry_s_1  no worker of nas-b has picked up Inventory for 25s — is `ferry worker --host nas-b` running?", p.String())
}
