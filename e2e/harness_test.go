// Package e2e runs ferry end to end: one embedded Temporal server (in the
// test process, shared by every test), and per test two NAS workers that are
// real OS processes of the freshly built ferry binary, on the dir backend (or,
// for the btrfs tests, on two loop-mounted btrfs images), with a
// byte-counting relay in front of the source's data server. Faults are real
// too: workers are killed with SIGKILL and started again.
//
// The tests are skipped with -short. FERRY_E2E_KEEP=1 keeps each test's
// directory (config, certificates, both hosts' storage, worker logs).
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/certs"
	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/internal/logcheck"
	"github.com/ferry-nas/ferry/internal/loopfs"
	"github.com/ferry-nas/ferry/internal/relay"
	"github.com/ferry-nas/ferry/internal/sampleshare"
	"github.com/ferry-nas/ferry/internal/zfspool"
	"github.com/ferry-nas/ferry/logging"
	"github.com/ferry-nas/ferry/server"
	"github.com/ferry-nas/ferry/starter"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/worker"
	"github.com/ferry-nas/ferry/workflows"
)

// Every test replicates nas-a:share to nas-b:replicas/share.
const (
	source     = "nas-a"
	target     = "nas-b"
	srcDataset = "share"
	tgtDataset = "replicas/share"
	// heartbeat is the jobs' timeouts.heartbeat: a killed receiver is
	// noticed this long after its last heartbeat.
	heartbeat = 5 * time.Second
	// testTimeout bounds one test, processes and polling included.
	testTimeout = 2 * time.Minute
)

var (
	// ferryBin is the ferry binary built by TestMain.
	ferryBin string
	// tsrv is the embedded Temporal server every test shares, tc a client of it.
	tsrv *server.Server
	tc   client.Client
	// jobSeq makes job names unique within the test process (-count=N).
	jobSeq atomic.Int64
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		return m.Run() // every test skips itself
	}
	if os.Geteuid() == 0 {
		// Loop filesystems of an earlier run that crashed (only ferry's,
		// only of dead processes) would hold loop devices: release them.
		if reaped, err := loopfs.ReapStale(""); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: reaping stale loop filesystems:", err)
		} else if len(reaped) > 0 {
			fmt.Fprintf(os.Stderr, "e2e: released %d loop filesystem(s) of a crashed run\n", len(reaped))
		}
	}
	tmp, err := os.MkdirTemp("", "ferry-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	began := time.Now()
	ferryBin = filepath.Join(tmp, "ferry")
	goTool, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: the go command is needed to build ferry:", err)
		return 1
	}
	build := exec.Command(goTool, "build", "-o", ferryBin, "github.com/ferry-nas/ferry/cmd/ferry")
	build.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/ferry: %v\n%s", err, out)
		return 1
	}
	built := time.Since(began)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tsrv, err = server.Start(ctx, server.Options{Ephemeral: true, Address: "127.0.0.1:0", UIAddress: ""})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: start the embedded Temporal server:", err)
		return 1
	}
	defer tsrv.Stop()
	tc, err = client.DialContext(ctx, client.Options{
		HostPort: tsrv.FrontendAddress(), Namespace: tsrv.Namespace(),
		Logger: logging.Temporal(zap.NewNop()),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: dial the embedded Temporal server:", err)
		return 1
	}
	defer tc.Close()
	fmt.Fprintf(os.Stderr, "e2e: ferry built in %v, Temporal at %s (namespace %s) up in %v\n",
		built.Round(time.Millisecond), tsrv.FrontendAddress(), tsrv.Namespace(), (time.Since(began) - built).Round(time.Millisecond))
	return m.Run()
}

// envOptions shape one test's setup.
type envOptions struct {
	// ShareSize is the sample share's size on nas-a (default 32 MiB).
	ShareSize int64
	// BWLimit is the job's stream.bwlimit ("" for unlimited).
	BWLimit string
	// Resume is the job's stream.resume ("" for the default, auto).
	Resume string
	// Backend is both hosts' backend: config.BackendDir (default),
	// config.BackendBtrfs, for which each host's root is a loop-mounted
	// btrfs image of Images[host] bytes (default 1 GiB, sparse) made with
	// internal/loopfs and released after the workers are gone, and the
	// share is a subvolume, or config.BackendZFS: a pool of Images[host]
	// bytes on a sparse file (internal/zfspool), root <pool>/ferry, the
	// share a dataset. The caller checks the prerequisites.
	Backend string
	Images  map[string]int64
	// WriteShare fills the share (default sampleshare.Write).
	WriteShare func(dir string, size int64) error
	// Direct points nas-a's data_address at its data server itself rather
	// than the relay (benchmarks: no copy through the test process).
	Direct bool
	// Ext4Image, for the dir backend, puts both hosts' roots and Scratch
	// on one loop-mounted ext4 image of this many bytes (sparse, made
	// with internal/loopfs, released after the workers are gone; root
	// only, the caller checks): every run starts on the same empty
	// filesystem, and its teardown is an unmount.
	Ext4Image int64
	// Timeout bounds the test (default testTimeout).
	Timeout time.Duration
	// HostTimeout is the job's timeouts.host ("" for the default, 10m).
	HostTimeout string
	// Verify is the job's verify ("" for the default, quick).
	Verify string
	// Retention is the job's retention, a YAML flow mapping ("" for none).
	Retention string
	// Metrics serves /metrics on both workers: nas-a's address comes from
	// its hosts.nas-a.metrics_address, nas-b's from --metrics-address.
	Metrics bool
	// SourceHooks is nas-a's hooks, a YAML flow mapping ("" for none).
	SourceHooks string
	// JobExtra is more of the job's keys, YAML lines indented 4 spaces.
	JobExtra string
}

// env is one test's world: its own directory, certificates, config file,
// job, relay and worker processes. Everything goes away when the test ends.
type env struct {
	t   testing.TB
	ctx context.Context
	dir string
	// scratch is where a benchmark puts the other tools' copies: on the
	// hosts' filesystem (e.dir, or the ext4 image's).
	scratch string
	job     string
	cfgPath string
	cfg     *config.Config
	// relay sits between nas-b and nas-a's data server: Upstream counts
	// every byte the source sent, across kills and reconnects.
	relay *relay.Relay
	// listen is where each worker's data server listens.
	listen map[string]string
	// metrics is where each worker serves /metrics (empty: off).
	metrics   map[string]string
	roots     map[string]string
	kind      string // both hosts' backend
	share     string
	shareSize int64

	mu      sync.Mutex
	workers map[string]*workerProc
	started map[string]int
	logs    []string // every worker incarnation's log file, in start order
	runs    []starter.Started
	// relayAt is the relay's upstream count when each run was started.
	relayAt map[string]int64
}

// workerProc is one incarnation of a `ferry worker` process.
type workerProc struct {
	host   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
}

var nonJob = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

func newEnv(t testing.TB, opts envOptions) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: builds ferry and runs worker processes; skipped with -short")
	}
	if opts.ShareSize == 0 {
		opts.ShareSize = 32 << 20
	}
	if opts.Backend == "" {
		opts.Backend = config.BackendDir
	}
	if opts.WriteShare == nil {
		opts.WriteShare = func(dir string, size int64) error {
			return sampleshare.Write(dir, size, uint64(time.Now().UnixNano()))
		}
	}
	if opts.Timeout == 0 {
		opts.Timeout = testTimeout
	}
	root, err := os.MkdirTemp("", "ferry-e2e-")
	require.NoError(t, err)
	// Snapshots are read-only trees: make them writable again to remove them.
	t.Cleanup(func() {
		if os.Getenv("FERRY_E2E_KEEP") != "" {
			t.Logf("FERRY_E2E_KEEP is set: leaving %s", root)
			return
		}
		if err := removeAll(root); err != nil {
			t.Errorf("remove %s: %v", root, err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	t.Cleanup(cancel)

	name := strings.TrimPrefix(nonJob.ReplaceAllString(t.Name(), "-"), "Test")
	if len(name) > 40 {
		name = name[:40]
	}
	e := &env{
		t: t, ctx: ctx, dir: root,
		job:       fmt.Sprintf("%s-%d", strings.Trim(name, "-_"), jobSeq.Add(1)),
		listen:    map[string]string{source: freeAddr(t), target: freeAddr(t)},
		metrics:   map[string]string{},
		roots:     map[string]string{source: filepath.Join(root, source), target: filepath.Join(root, target)},
		kind:      opts.Backend,
		shareSize: opts.ShareSize,
		workers:   map[string]*workerProc{},
		started:   map[string]int{},
		relayAt:   map[string]int64{},
	}
	if e.kind == config.BackendBtrfs {
		// Registered before the teardown, so released after the workers
		// are gone.
		for _, h := range []string{source, target} {
			size := opts.Images[h]
			if size == 0 {
				size = 1 << 30
			}
			e.roots[h] = loopfs.New(t, size)
		}
	}
	e.scratch = root
	if opts.Ext4Image > 0 && e.kind == config.BackendDir {
		// Registered before the teardown, so released after the workers.
		mnt := loopfs.NewFS(t, opts.Ext4Image, "ext4")
		e.roots = map[string]string{source: filepath.Join(mnt, source), target: filepath.Join(mnt, target)}
		e.scratch = filepath.Join(mnt, "scratch")
		require.NoError(t, os.Mkdir(e.scratch, 0o755))
	}
	// A zfs host's config root is a dataset (<pool>/ferry); e.roots holds
	// where it is mounted.
	cfgRoots := map[string]string{source: e.roots[source], target: e.roots[target]}
	if e.kind == config.BackendZFS {
		for _, h := range []string{source, target} {
			size := opts.Images[h]
			if size == 0 {
				size = 1 << 30
			}
			pool := zfspool.New(t, size)
			zfspool.Zfs(t, "create", pool.Name+"/ferry")
			cfgRoots[h], e.roots[h] = pool.Name+"/ferry", filepath.Join(pool.Mount, "ferry")
		}
	}
	e.share = filepath.Join(e.roots[source], srcDataset)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "logs"), 0o755))

	certDir := filepath.Join(root, "certs")
	_, _, err = certs.Init(certDir, false)
	require.NoError(t, err)
	for _, h := range []string{source, target} {
		_, _, err := certs.Issue(certDir, h, certs.IssueOptions{})
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(e.roots[h], 0o755))
	}

	e.relay, err = relay.Start(e.listen[source])
	require.NoError(t, err)
	t.Cleanup(func() { e.relay.Close() })

	stream := "{compress: none"
	if opts.BWLimit != "" {
		stream += ", bwlimit: " + opts.BWLimit
	}
	if opts.Resume != "" {
		stream += ", resume: " + opts.Resume
	}
	stream += "}"
	hostTimeout := ""
	if opts.HostTimeout != "" {
		hostTimeout = ", host: " + opts.HostTimeout
	}
	verify := ""
	if opts.Verify != "" {
		verify = "\n    verify: " + opts.Verify
	}
	if opts.Retention != "" { // the job's last keys, after verify
		verify += "\n    retention: " + opts.Retention
	}
	srcMetrics := ""
	if opts.Metrics {
		e.metrics[source], e.metrics[target] = freeAddr(t), freeAddr(t)
		srcMetrics = fmt.Sprintf(", metrics_address: %q", e.metrics[source])
	}
	if opts.JobExtra != "" {
		verify += "\n" + opts.JobExtra
	}
	srcHooks := ""
	if opts.SourceHooks != "" {
		srcHooks = ", hooks: " + opts.SourceHooks
	}
	srcData := e.relay.Addr()
	if opts.Direct {
		srcData = e.listen[source]
	}
	cfg := fmt.Sprintf(`# written by the e2e test %s
temporal: {address: %q, namespace: %q}
tls: {ca: certs/ca.pem}
hosts:
  %s: {data_address: %q, backend: %s, root: %q%s}
  %s: {data_address: %q, backend: %s, root: %q}
jobs:
  %s:
    source: %s:%s
    target: %s:%s
    stream: %s
    timeouts: {heartbeat: %s%s}%s
`, t.Name(), tsrv.FrontendAddress(), tsrv.Namespace(),
		source, srcData, e.kind, cfgRoots[source], srcMetrics+srcHooks,
		target, e.listen[target], e.kind, cfgRoots[target],
		e.job, source, srcDataset, target, tgtDataset, stream, heartbeat, hostTimeout, verify)
	e.cfgPath = filepath.Join(root, "ferry.yaml")
	require.NoError(t, os.WriteFile(e.cfgPath, []byte(cfg), 0o644))
	e.cfg, err = config.Load(e.cfgPath)
	require.NoError(t, err)

	switch e.kind {
	case config.BackendBtrfs:
		out, err := exec.Command("btrfs", "subvolume", "create", e.share).CombinedOutput()
		require.NoError(t, err, "btrfs subvolume create %s: %s", e.share, out)
	case config.BackendZFS:
		zfspool.Zfs(t, "create", cfgRoots[source]+"/"+srcDataset)
	default:
		require.NoError(t, os.MkdirAll(e.share, 0o755))
	}
	require.NoError(t, opts.WriteShare(e.share, opts.ShareSize))

	// Registered after the relay and the directory, so it runs before them.
	t.Cleanup(e.teardown)
	e.startWorker(source)
	e.startWorker(target)
	return e
}

// teardown ends the test's runs (terminate: nothing of the test may keep
// running against the next test's workers, which poll the same queues),
// deletes its schedule, kills its workers and, when the test failed, prints
// the tail of every worker log.
func (e *env) teardown() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	e.mu.Lock()
	runs := append([]starter.Started(nil), e.runs...)
	e.mu.Unlock()
	for _, r := range runs {
		d, err := tc.DescribeWorkflowExecution(ctx, r.WorkflowID, r.RunID)
		if err == nil && d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			e.t.Logf("teardown: terminating run %s still in progress", r.WorkflowID)
			_ = tc.TerminateWorkflow(ctx, r.WorkflowID, r.RunID, "e2e test ended")
		}
	}
	_ = tc.ScheduleClient().GetHandle(ctx, starter.ScheduleID(e.job)).Delete(ctx)
	for _, h := range []string{source, target} {
		e.kill(h)
	}
	e.checkLogs()
	if e.t.Failed() {
		for _, l := range e.logs {
			e.t.Logf("---- tail of %s ----\n%s", l, tail(l, 40))
		}
	}
}

// checkLogs reads every worker log (written with --log-json) as a log
// shipper would: each line one JSON object with each key once. The only
// other line allowed is the command's exit message ("ferry: ...", printed by
// main when the worker exits with an error).
func (e *env) checkLogs() {
	e.mu.Lock()
	logs := append([]string(nil), e.logs...)
	e.mu.Unlock()
	for _, l := range logs {
		data, err := os.ReadFile(l)
		if err != nil {
			e.t.Errorf("worker log: %v", err)
			continue
		}
		var jsonLines []byte
		for line := range strings.Lines(string(data)) {
			if !strings.HasPrefix(line, "ferry: ") {
				jsonLines = append(jsonLines, line...)
			}
		}
		if err := logcheck.Lines(jsonLines); err != nil {
			e.t.Errorf("worker log %s is not clean JSON lines:\n%v", l, err)
		}
	}
}

// startWorker starts a new incarnation of host's worker process with the
// same flags as every other one, and returns once it is serving.
func (e *env) startWorker(host string) *workerProc {
	e.t.Helper()
	e.mu.Lock()
	e.started[host]++
	n := e.started[host]
	e.mu.Unlock()
	logPath := filepath.Join(e.dir, "logs", fmt.Sprintf("%s.%d.log", host, n))
	f, err := os.Create(logPath)
	require.NoError(e.t, err)
	defer f.Close()
	args := []string{"worker", "--config", e.cfgPath, "--host", host, "--log-json", "--listen", e.listen[host]}
	if a := e.metrics[host]; a != "" && host == target {
		args = append(args, "--metrics-address", a)
	}
	cmd := exec.Command(ferryBin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	dieWithTest(cmd)
	require.NoError(e.t, cmd.Start())
	p := &workerProc{host: host, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	e.mu.Lock()
	e.workers[host] = p
	e.logs = append(e.logs, logPath)
	e.mu.Unlock()

	e.waitFor(30*time.Second, host+" worker to start", func() (bool, error) {
		select {
		case <-p.exited:
			return false, fmt.Errorf("worker %s exited: %v\n%s", host, cmd.ProcessState, tail(logPath, 20))
		default:
		}
		return len(logLines(logPath, "worker running")) > 0, nil
	})
	return p
}

// kill kills host's running worker with SIGKILL and waits until it is gone.
func (e *env) kill(host string) {
	e.mu.Lock()
	p := e.workers[host]
	delete(e.workers, host)
	e.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		e.t.Errorf("worker %s (pid %d) did not exit after SIGKILL", host, p.cmd.Process.Pid)
	}
}

// restart starts host's worker again after kill.
func (e *env) restart(host string) *workerProc { return e.startWorker(host) }

// apply creates the job's schedule (in-process, as `ferry apply` does).
func (e *env) apply() {
	e.t.Helper()
	_, err := starter.Apply(e.ctx, tc, e.cfg, starter.ApplyOptions{})
	require.NoError(e.t, err)
}

// start triggers the job (as `ferry run` does without --wait).
func (e *env) start() starter.Started {
	e.t.Helper()
	before := e.relay.Upstream.Load()
	st, err := starter.Run(e.ctx, tc, e.job)
	require.NoError(e.t, err)
	require.False(e.t, st.AlreadyRunning, "a run of %s was already in progress", e.job)
	e.track(st)
	e.mu.Lock()
	e.relayAt[st.WorkflowID] = before
	e.mu.Unlock()
	return st
}

func (e *env) track(st starter.Started) {
	e.mu.Lock()
	e.runs = append(e.runs, st)
	e.mu.Unlock()
}

// result waits for the run to end and returns its result or error.
func (e *env) result(st starter.Started) (workflows.ReplicateResult, error) {
	var res workflows.ReplicateResult
	err := tc.GetWorkflow(e.ctx, st.WorkflowID, st.RunID).Get(e.ctx, &res)
	return res, err
}

// mustSucceed waits for the run and fails the test unless it succeeded.
func (e *env) mustSucceed(st starter.Started) workflows.ReplicateResult {
	e.t.Helper()
	res, err := e.result(st)
	require.NoError(e.t, err, "run %s", st.WorkflowID)
	return res
}

// cliResult is a finished ferry command.
type cliResult struct {
	Out  string
	Code int
}

// ferry runs the ferry binary with args (and --config) and returns its
// combined output and exit code.
func (e *env) ferry(args ...string) cliResult {
	e.t.Helper()
	args = append(args, "--config", e.cfgPath)
	cmd := exec.CommandContext(e.ctx, ferryBin, args...)
	out, err := cmd.CombinedOutput()
	res := cliResult{Out: string(out)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	default:
		require.NoError(e.t, err, "ferry %s", strings.Join(args, " "))
	}
	e.t.Logf("$ ferry %s  (exit %d)\n%s", strings.Join(args, " "), res.Code, res.Out)
	return res
}

var (
	startedRE = regexp.MustCompile(`(?m)^(?:started (\S+) \(schedule|a run of .* is already in progress, so the trigger was skipped: (\S+))`)
	runIDRE   = regexp.MustCompile(`(?m)^run ID: (\S+)`)
)

// runCLI runs `ferry run --config F JOB --wait` and returns what it printed,
// its exit code and the run it started.
func (e *env) runCLI() (cliResult, starter.Started) {
	e.t.Helper()
	res := e.ferry("run", e.job, "--wait")
	m, r := startedRE.FindStringSubmatch(res.Out), runIDRE.FindStringSubmatch(res.Out)
	require.NotNil(e.t, m, "ferry run names no workflow")
	require.NotNil(e.t, r, "ferry run names no run ID")
	st := starter.Started{Job: e.job, WorkflowID: m[1] + m[2], RunID: r[1]}
	e.track(st)
	return res, st
}

// waitFor polls cond every 100 ms until it holds, returns an error or the
// deadline passes.
func (e *env) waitFor(limit time.Duration, what string, cond func() (bool, error)) {
	e.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, err := cond()
		require.NoError(e.t, err, "waiting for %s", what)
		if ok {
			return
		}
		if time.Now().After(deadline) || e.ctx.Err() != nil {
			e.t.Fatalf("gave up waiting for %s after %v", what, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitStreaming waits until the run's receive is under way as Temporal sees
// it (the pending Receive has heartbeated its progress) and the relay has
// forwarded more than frac of the expected bytes since the run was started,
// and returns the run's progress. The relay count is
// live, while heartbeats reach the server only every few seconds. The run
// must not end first, and the stream must not be nearly done, or an
// interruption would not land mid-stream.
func (e *env) waitStreaming(st starter.Started, frac float64) starter.Progress {
	e.t.Helper()
	e.mu.Lock()
	sinceRelay := e.relayAt[st.WorkflowID]
	e.mu.Unlock()
	var p starter.Progress
	var sent int64
	e.waitFor(time.Minute, fmt.Sprintf("the receive of %s to pass %.0f%%", st.WorkflowID, frac*100), func() (bool, error) {
		if p.Expected == 0 || p.Bytes == 0 {
			var err error
			if p, err = starter.Inspect(e.ctx, tc, st.WorkflowID, st.RunID); err != nil {
				return false, err
			}
			if !p.Running() {
				return false, fmt.Errorf("the run ended (%s) before the stream got that far; progress %+v", p.Status, p)
			}
			if p.Phase != workflows.PhaseStream {
				p.Expected, p.Bytes = 0, 0
			}
		}
		sent = e.relay.Upstream.Load() - sinceRelay
		return p.Expected > 0 && p.Bytes > 0 && float64(sent) > frac*float64(p.Expected), nil
	})
	e.t.Logf("streaming: %s; %d bytes through the relay", p, sent)
	if float64(sent) > 0.8*float64(p.Expected) {
		e.t.Fatalf("the stream is nearly done (%d of %d bytes sent) before it could be interrupted; the machine is too slow for this test's rate limit", sent, p.Expected)
	}
	return p
}

// backend opens host's storage as the worker sees it (reads only).
func (e *env) backend(host string) storage.Backend {
	e.t.Helper()
	b, err := worker.OpenBackend(e.cfg.Hosts[host], zap.NewNop())
	require.NoError(e.t, err)
	return b
}

// requireSameContent checks that the target's copy of snapshot has the
// source's content digest.
func (e *env) requireSameContent(snapshot string) {
	e.t.Helper()
	// Both sides at once: each reads its whole copy, the suite's largest
	// untimed cost with 100,000 files. Not on zfs: there each digest
	// mounts a clone, and two clones mounted at once on one zfs-fuse hung
	// once (neither mount answered a stat).
	var src, tgt string
	var srcErr, tgtErr error
	done := make(chan struct{})
	digestSource := func() {
		defer close(done)
		src, srcErr = e.backend(source).ContentDigest(e.ctx, srcDataset, snapshot)
	}
	if e.kind == config.BackendZFS {
		digestSource()
	} else {
		go digestSource()
	}
	tgt, tgtErr = e.backend(target).ContentDigest(e.ctx, tgtDataset, snapshot)
	<-done
	require.NoError(e.t, srcErr, "source content digest")
	require.NoError(e.t, tgtErr, "target content digest")
	require.Equal(e.t, src, tgt, "content digest of %s: source vs target", snapshot)
	e.t.Logf("content digest of %s on both sides: %s", snapshot, tgt)
}

// requireNoPartials checks that the target holds no partial receive and an
// empty (or no) staging directory for the dataset.
func (e *env) requireNoPartials() {
	e.t.Helper()
	ps, err := e.backend(target).Partials(e.ctx, tgtDataset)
	require.NoError(e.t, err)
	require.Empty(e.t, ps, "partials left on the target")
	staging := filepath.Join(e.roots[target], ".ferry", "staging")
	var left []string
	err = filepath.WalkDir(staging, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != staging {
			rel, _ := filepath.Rel(staging, p)
			left = append(left, rel)
		}
		return nil
	})
	if !errors.Is(err, fs.ErrNotExist) {
		require.NoError(e.t, err)
	}
	require.Empty(e.t, left, "staging on the target is not empty")
}

// activityCall is one activity execution read from a run's history.
type activityCall struct {
	Type      string
	Scheduled *historypb.ActivityTaskScheduledEventAttributes
	// Completed is set when the activity succeeded.
	Completed *historypb.ActivityTaskCompletedEventAttributes
	Failed    *historypb.ActivityTaskFailedEventAttributes
	TimedOut  *historypb.ActivityTaskTimedOutEventAttributes
}

// decode decodes a completed activity's result into v.
func (a activityCall) decode(v any) error {
	if a.Completed == nil {
		return fmt.Errorf("activity %s did not complete", a.Type)
	}
	return converter.GetDefaultDataConverter().FromPayloads(a.Completed.GetResult(), v)
}

// activities lists the run's activity executions of the given type (all
// types when empty), in the order they were scheduled.
func (e *env) activities(st starter.Started, typ string) []activityCall {
	e.t.Helper()
	var calls []*activityCall
	byID := map[int64]*activityCall{}
	it := tc.GetWorkflowHistory(e.ctx, st.WorkflowID, st.RunID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(e.t, err)
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			c := &activityCall{Type: a.GetActivityType().GetName(), Scheduled: a}
			byID[ev.GetEventId()] = c
			calls = append(calls, c)
		}
		if a := ev.GetActivityTaskCompletedEventAttributes(); a != nil && byID[a.GetScheduledEventId()] != nil {
			byID[a.GetScheduledEventId()].Completed = a
		}
		if a := ev.GetActivityTaskFailedEventAttributes(); a != nil && byID[a.GetScheduledEventId()] != nil {
			byID[a.GetScheduledEventId()].Failed = a
		}
		if a := ev.GetActivityTaskTimedOutEventAttributes(); a != nil && byID[a.GetScheduledEventId()] != nil {
			byID[a.GetScheduledEventId()].TimedOut = a
		}
	}
	var out []activityCall
	for _, c := range calls {
		if typ == "" || c.Type == typ {
			out = append(out, *c)
		}
	}
	return out
}

// logEntry is one JSON log line of a worker.
type logEntry map[string]any

// logLines returns the JSON lines of the log file whose msg contains msg.
func logLines(path, msg string) []logEntry {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []logEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(msg)) {
			continue
		}
		var l logEntry
		if json.Unmarshal(line, &l) == nil {
			if m, _ := l["msg"].(string); strings.Contains(m, msg) {
				out = append(out, l)
			}
		}
	}
	return out
}

// workerLogs returns host's log lines with msg, across every incarnation.
func (e *env) workerLogs(host, msg string) []logEntry {
	e.mu.Lock()
	logs := append([]string(nil), e.logs...)
	e.mu.Unlock()
	var out []logEntry
	for _, l := range logs {
		if strings.HasPrefix(filepath.Base(l), host+".") {
			out = append(out, logLines(l, msg)...)
		}
	}
	return out
}

// tail returns the last n lines of the file.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// treeListing describes every entry under root (type, mode, size, mtime,
// content hash or link target), except the subtrees in skip (relative,
// slash-separated), keyed by relative path.
func treeListing(t testing.TB, root string, skip ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		for _, s := range skip {
			if rel == s {
				return fs.SkipDir
			}
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		switch {
		case fi.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			desc += " " + hex.EncodeToString(h.Sum(nil))
		case fi.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + l
		}
		out[rel] = desc
		return nil
	}))
	return out
}

// listingDiff names the entries that differ between two listings.
func listingDiff(before, after map[string]string) []string {
	var diff []string
	for p, b := range before {
		if a, ok := after[p]; !ok {
			diff = append(diff, "removed "+p)
		} else if a != b {
			diff = append(diff, fmt.Sprintf("changed %s: %s -> %s", p, b, a))
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			diff = append(diff, "added "+p)
		}
	}
	sort.Strings(diff)
	return diff
}

// freeAddr returns a loopback address with a port that is free now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// removeAll removes a tree that may hold read-only directories (snapshots),
// which an unprivileged user cannot empty without making them writable.
func removeAll(root string) error {
	var dirs []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
			dirs = append(dirs, p)
		}
		return nil
	})
	// The files first, four directories at a time (unlinks wait on the
	// disk more than on the CPU: 100,000 files went in 12 s instead of
	// 17), then what is left.
	work := make(chan string)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for d := range work {
				removeFiles(d)
			}
		})
	}
	for _, d := range dirs {
		work <- d
	}
	close(work)
	wg.Wait()
	return os.RemoveAll(root)
}

// removeFiles removes the entries of directory d that are not directories
// (errors are left to removeAll's final os.RemoveAll to report).
func removeFiles(d string) {
	entries, err := os.ReadDir(d)
	if err != nil {
		return
	}
	for _, en := range entries {
		if !en.IsDir() {
			_ = os.Remove(filepath.Join(d, en.Name()))
		}
	}
}

// snapshotWithTargetDown starts a run while the target worker is down,
// waits until it made its snapshot and waits in the greet step, terminates
// it (cancelling would wait for the target in compensation) and returns the
// snapshot's name.
func (e *env) snapshotWithTargetDown() string {
	e.t.Helper()
	run := e.start()
	var p starter.Progress
	e.waitFor(30*time.Second, "the run with the target down to make its snapshot", func() (bool, error) {
		var err error
		p, err = starter.Inspect(e.ctx, tc, run.WorkflowID, run.RunID)
		if err != nil || !p.Running() {
			return false, fmt.Errorf("run %s: %v (status %s)", run.WorkflowID, err, p.Status)
		}
		return p.Phase == workflows.PhaseGreet, nil
	})
	snaps, err := e.backend(source).ListSnapshots(e.ctx, srcDataset)
	require.NoError(e.t, err)
	require.Contains(e.t, snapshotNames(snaps), p.Snapshot, "the run in the greet step has not made its snapshot")
	require.NoError(e.t, tc.TerminateWorkflow(e.ctx, run.WorkflowID, run.RunID, "e2e: the target is down; a later run catches up"))
	e.t.Logf("run %s made %s on %s and was terminated waiting for %s", run.WorkflowID, p.Snapshot, source, target)
	return p.Snapshot
}
