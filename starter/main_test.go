package starter

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.temporal.io/server/temporaltest"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/visibility"
	"github.com/ferry-nas/ferry/workflows"
)

// One embedded Temporal server (SQLite visibility, as `ferry server` uses)
// serves every test of the package: each costs seconds to start. Tests use
// their own job names and run one after the other.
var (
	testServer *temporaltest.TestServer
	tc         client.Client
)

func TestMain(m *testing.M) {
	followInterval = 200 * time.Millisecond
	flag.Parse()
	// The stand-in runs fail on purpose; their "Activity error." lines are
	// only worth seeing with -v.
	level := slog.LevelError + 1
	if testing.Verbose() {
		level = slog.LevelWarn
	}
	quiet := sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	testServer = temporaltest.NewServer(temporaltest.WithBaseClientOptions(client.Options{Logger: quiet}))
	tc = testServer.GetDefaultClient()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err := visibility.Register(ctx, tc, testServer.GetDefaultNamespace())
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "registering search attributes:", err)
		os.Exit(1)
	}
	testServer.NewWorker(workflows.WorkflowTaskQueue, func(r worker.Registry) {
		r.RegisterWorkflowWithOptions(fakeReplicate, workflow.RegisterOptions{Name: workflows.ReplicateWorkflowName})
		r.RegisterActivityWithOptions(fakeReceive, activity.RegisterOptions{Name: ReceiveActivity})
	})
	code := m.Run()
	func() {
		defer func() { _ = recover() }() // Stop logs through a nil *testing.T on shutdown errors
		testServer.Stop()
	}()
	os.Exit(code)
}

// The stand-in transfer: every step is 4 MiB, reported 1 MiB at a time.
const (
	fakeExpected = 4 << 20
	fakeRate     = 1 << 20
)

// fakeJob steers the stand-in workflow of one job: the receive holds at
// 1 MiB until release is closed, then finishes or fails with fail.
type fakeJob struct {
	release chan struct{}
	fail    error
	// noMemo: the run ends without recording its outcome in its memo, as
	// runs did before (Status then reads its history).
	noMemo bool
}

var (
	fakeMu   sync.Mutex
	fakeJobs = map[string]*fakeJob{}
)

func setFake(job string, f *fakeJob) {
	fakeMu.Lock()
	defer fakeMu.Unlock()
	fakeJobs[job] = f
}

func getFake(job string) *fakeJob {
	fakeMu.Lock()
	defer fakeMu.Unlock()
	if f, ok := fakeJobs[job]; ok {
		return f
	}
	return &fakeJob{}
}

// fakeReplicate stands in for workflows.ReplicateWorkflow under its
// registered name: the same status query, search attributes and result
// type, one heartbeating Receive step.
func fakeReplicate(ctx workflow.Context, in workflows.ReplicateInput) (workflows.ReplicateResult, error) {
	st := workflows.Status{Job: in.Job, StartedAt: workflow.Now(ctx)}
	if err := workflow.SetQueryHandler(ctx, workflows.QueryStatus, func() (workflows.Status, error) { return st, nil }); err != nil {
		return workflows.ReplicateResult{}, err
	}
	setPhase := func(phase string) {
		st.Phase = phase
		_ = workflow.UpsertTypedSearchAttributes(ctx, visibility.FerryPhase.ValueSet(phase))
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx,
		visibility.FerryJob.ValueSet(in.Job),
		visibility.FerrySource.ValueSet(in.Source.String()),
		visibility.FerryTarget.ValueSet(in.Target.String()),
	); err != nil {
		return workflows.ReplicateResult{}, err
	}
	st.Snapshot = workflows.SnapshotName(in.Job, st.StartedAt)
	plan := workflows.Plan{Steps: []workflows.Step{{To: st.Snapshot}}}
	st.Plan, st.Steps, st.Step = &plan, 1, 1
	setPhase(workflows.PhaseStream)

	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		HeartbeatTimeout:    10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	var rcv activities.ReceiveResult
	var noMemo bool
	_ = workflow.SideEffect(ctx, func(workflow.Context) any { return getFake(in.Job).noMemo }).Get(&noMemo)
	memo := func(res workflows.ReplicateResult, err error) {
		if !noMemo {
			_ = workflow.UpsertMemo(ctx, map[string]any{workflows.MemoRun: workflows.NewRunMemo(res, err)})
		}
	}
	if err := workflow.ExecuteActivity(actx, ReceiveActivity, in.Job).Get(ctx, &rcv); err != nil {
		st.LastError = err.Error()
		setPhase(workflows.PhaseFailed)
		memo(workflows.ReplicateResult{}, err)
		return workflows.ReplicateResult{}, err
	}
	st.Bytes = rcv.Bytes
	setPhase(workflows.PhaseDone)
	res := workflows.ReplicateResult{Snapshot: st.Snapshot, Plan: plan, Bytes: rcv.Bytes, Received: workflows.Received{StreamBytes: rcv.StreamSent}}
	memo(res, nil)
	return res, nil
}

func fakeReceive(ctx context.Context, job string) (activities.ReceiveResult, error) {
	f := getFake(job)
	// A long interval: the one heartbeat never looks stale while a test holds the receive.
	activity.RecordHeartbeat(ctx, activities.ReceiveProgress{Bytes: 1 << 20, Expected: fakeExpected, DurableOffset: 1 << 20, Rate: fakeRate,
		WireRate: fakeRate / 2, StreamSent: 1 << 20, WireSent: 1 << 19, Attempt: 1, Interval: 3600})
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return activities.ReceiveResult{}, ctx.Err()
		}
	}
	if f.fail != nil {
		return activities.ReceiveResult{}, f.fail
	}
	return activities.ReceiveResult{Bytes: fakeExpected, StreamSent: fakeExpected, WireSent: fakeExpected, Attempts: 1}, nil
}

// testConfig parses a config whose jobs section is jobsYAML (indented by
// two spaces), between two dir hosts.
func testConfig(t testing.TB, jobsYAML string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	text := fmt.Sprintf(`tls: {ca: ca.pem}
hosts:
  nas-a: {data_address: 127.0.0.1:7400, backend: dir, root: %s}
  nas-b: {data_address: 127.0.0.1:7401, backend: dir, root: %s}
jobs:
%s`, filepath.Join(dir, "a"), filepath.Join(dir, "b"), jobsYAML)
	cfg, err := config.Parse([]byte(text), filepath.Join(dir, "ferry.yaml"))
	require.NoError(t, err)
	return cfg
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)
	return ctx
}
