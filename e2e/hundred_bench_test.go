package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/certs"
	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/internal/benchrec"
	"github.com/ferry-nas/ferry/internal/sampleshare"
	"github.com/ferry-nas/ferry/logging"
	"github.com/ferry-nas/ferry/starter"
	"github.com/ferry-nas/ferry/worker"
)

// Shape of the 100-jobs row: hundredJobs dir jobs of hundredShare bytes
// each, hundredRuns times on fresh processes.
const (
	hundredJobs  = 100
	hundredShare = 64 << 10
	hundredRuns  = 3
	hundredWait  = 90 * time.Second
)

// BenchmarkRowHundredJobs triggers 100 dir jobs at once on one `ferry
// server` process (SQLite database) and two `ferry worker` processes (nas-a
// the source of every job, nas-b the target), and waits for every run. Each
// of the runs starts fresh processes, so each records its own peak RSS
// (VmHWM); every replica's content digest must equal its source's.
func BenchmarkRowHundredJobs(b *testing.B) {
	if testing.Short() {
		b.Skip("e2e: builds ferry and runs processes; skipped with -short")
	}
	const table, tool = "Orchestration", "ferry (1 server, 2 workers, dir backend)"
	const cs = "100 jobs triggered at once"
	for b.Loop() {
		var took, failures, srvRSS, wrkRSS []float64
		for run := range hundredRuns {
			r := hundredJobsOnce(b, run)
			took = append(took, r.took.Seconds())
			failures = append(failures, float64(r.failures))
			srvRSS = append(srvRSS, r.serverMiB)
			wrkRSS = append(wrkRSS, r.workerMiB)
		}
		b.ReportMetric(benchrec.Median(took), "s")
		benchrec.Record(b, benchrec.Row{Table: table, Case: cs + ": total time", Tool: tool, Unit: benchrec.Seconds, Values: took,
			Note: fmt.Sprintf("first trigger to the last run's result; %d full runs of %d KiB shares, fresh processes each run", hundredJobs, hundredShare>>10)})
		benchrec.Record(b, benchrec.Row{Table: table, Case: cs + ": failures", Tool: tool, Unit: benchrec.Failures, Values: failures,
			Limit: benchrec.AtMost(0), Note: "runs that failed, were not done within 90 s of the triggers, or whose replica's content digest differs from the source's"})
		benchrec.Record(b, benchrec.Row{Table: table, Case: cs + ": server peak RSS", Tool: tool, Unit: benchrec.MiB, Values: srvRSS,
			Note: "VmHWM of the `ferry server` process (embedded Temporal, SQLite file)"})
		benchrec.Record(b, benchrec.Row{Table: table, Case: cs + ": worker peak RSS", Tool: tool, Unit: benchrec.MiB, Values: wrkRSS,
			Note: "VmHWM of the larger of the two `ferry worker` processes"})
	}
}

type hundredResult struct {
	took                 time.Duration
	failures             int
	serverMiB, workerMiB float64
}

// hundredJobsOnce runs the row once on fresh processes in a fresh directory.
func hundredJobsOnce(b *testing.B, run int) hundredResult {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	root, err := os.MkdirTemp("", "ferry-e2e-hundred-")
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := removeAll(root); err != nil {
			b.Errorf("remove %s: %v", root, err)
		}
	}()
	for _, d := range []string{"logs", "nas-a", "nas-b"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}

	began := time.Now()
	srv, frontend := startServerProc(b, root)
	b.Logf("run %d: server up in %v", run+1, time.Since(began).Round(time.Millisecond))
	defer stopProc(srv)

	certDir := filepath.Join(root, "certs")
	if _, _, err := certs.Init(certDir, false); err != nil {
		b.Fatal(err)
	}
	listen := map[string]string{source: freeAddr(b), target: freeAddr(b)}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "temporal: {address: %q, namespace: default}\ntls: {ca: certs/ca.pem}\nhosts:\n", frontend)
	for _, h := range []string{source, target} {
		if _, _, err := certs.Issue(certDir, h, certs.IssueOptions{}); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(&cfg, "  %s: {data_address: %q, backend: dir, root: %q}\n", h, listen[h], filepath.Join(root, h))
	}
	cfg.WriteString("jobs:\n")
	for i := range hundredJobs {
		fmt.Fprintf(&cfg, "  j%03d:\n    source: %s:s%03d\n    target: %s:replicas/s%03d\n    stream: {compress: none}\n", i, source, i, target, i)
		share := filepath.Join(root, source, fmt.Sprintf("s%03d", i))
		if err := os.MkdirAll(share, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := sampleshare.Write(share, hundredShare, uint64(run*hundredJobs+i+1)); err != nil {
			b.Fatal(err)
		}
	}
	cfgPath := filepath.Join(root, "ferry.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	conf, err := config.Load(cfgPath)
	if err != nil {
		b.Fatal(err)
	}
	c, err := client.DialContext(ctx, client.Options{HostPort: frontend, Namespace: "default", Logger: logging.Temporal(zap.NewNop())})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := starter.Apply(ctx, c, conf, starter.ApplyOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Logf("run %d: applied at %v", run+1, time.Since(began).Round(time.Millisecond))
	workers := map[string]*exec.Cmd{}
	for _, h := range []string{source, target} {
		workers[h] = startWorkerProc(b, root, cfgPath, h, listen[h])
		defer stopProc(workers[h])
	}

	// All at once: every trigger and every wait in its own goroutine.
	start := time.Now()
	b.Logf("run %d: workers up at %v", run+1, start.Sub(began).Round(time.Millisecond))
	var mu sync.Mutex
	var failed []string
	fail := func(job string, err error) {
		mu.Lock()
		defer mu.Unlock()
		failed = append(failed, fmt.Sprintf("%s: %v", job, err))
	}
	snaps := make([]string, hundredJobs)
	var wg sync.WaitGroup
	// A run not done within hundredWait counts as a failure (measured: a
	// few of 100 sometimes stall after their source mark), so the row
	// stays within make bench's budget.
	runsCtx, cancelRuns := context.WithTimeout(ctx, hundredWait)
	defer cancelRuns()
	for i, job := range conf.JobNames() {
		wg.Go(func() {
			ctx := runsCtx
			st, err := starter.Run(ctx, c, job)
			if err != nil {
				fail(job, err)
				return
			}
			res, err := starter.Follow(ctx, c, st.WorkflowID, st.RunID, nil)
			if err != nil {
				fail(job, err)
				return
			}
			snaps[i] = res.Snapshot
		})
	}
	wg.Wait()
	took := time.Since(start)
	r := hundredResult{took: took, serverMiB: vmHWM(b, srv.Process.Pid)}
	for _, h := range []string{source, target} {
		r.workerMiB = max(r.workerMiB, vmHWM(b, workers[h].Process.Pid))
	}

	src, err := worker.OpenBackend(conf.Hosts[source], zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	tgt, err := worker.OpenBackend(conf.Hosts[target], zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	for i, job := range conf.JobNames() {
		if snaps[i] == "" {
			continue // failed above
		}
		s, err1 := src.ContentDigest(ctx, fmt.Sprintf("s%03d", i), snaps[i])
		t, err2 := tgt.ContentDigest(ctx, fmt.Sprintf("replicas/s%03d", i), snaps[i])
		if err1 != nil || err2 != nil || s != t {
			fail(job, fmt.Errorf("replica %s: digest %s (%v), source %s (%v)", snaps[i], t, err2, s, err1))
		}
	}
	r.failures = len(failed)
	b.Logf("run %d: %d jobs in %v, %d failure(s), server VmHWM %.0f MiB, worker VmHWM %.0f MiB", run+1, hundredJobs, took.Round(time.Millisecond), r.failures, r.serverMiB, r.workerMiB)
	for _, f := range failed {
		b.Log(f)
	}
	return r
}

// startServerProc starts `ferry server` on a free port with its database in
// root and returns once it says it is running.
func startServerProc(b testing.TB, root string) (*exec.Cmd, string) {
	addr := freeAddr(b)
	return startServerProcAt(b, root, addr), addr
}

// startServerProcAt is startServerProc on addr (a restart on the same port).
func startServerProcAt(b testing.TB, root, addr string) *exec.Cmd {
	cmd := exec.Command(ferryBin, "server", "--db", filepath.Join(root, "temporal.db"), "--address", addr, "--ui-address", "off")
	cmd.Dir = root
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(root, "logs", "server.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = logf
	dieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	running := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := false
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "Running;") && !ok {
				ok = true
				running <- true
			}
		}
		if !ok {
			running <- false
		}
	}()
	select {
	case ok := <-running:
		if !ok {
			stopProc(cmd)
			b.Fatalf("ferry server exited before running:\n%s", tail(logf.Name(), 20))
		}
	case <-time.After(2 * time.Minute):
		stopProc(cmd)
		b.Fatalf("ferry server did not say it runs within 2m:\n%s", tail(logf.Name(), 20))
	}
	return cmd
}

// startWorkerProc starts `ferry worker` for host and returns once it serves.
func startWorkerProc(b *testing.B, root, cfgPath, host, listen string) *exec.Cmd {
	logPath := filepath.Join(root, "logs", host+".log")
	f, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(ferryBin, "worker", "--config", cfgPath, "--host", host, "--log-json", "--listen", listen)
	cmd.Stdout, cmd.Stderr = f, f
	dieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); len(logLines(logPath, "worker running")) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			stopProc(cmd)
			b.Fatalf("worker %s did not start within 30s:\n%s", host, tail(logPath, 20))
		}
	}
	return cmd
}

// stopProc ends a process this benchmark started: SIGTERM, SIGKILL after 10 s.
func stopProc(cmd *exec.Cmd) {
	if cmd.Process == nil || cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// vmHWM is a process's peak resident set size in MiB.
func vmHWM(b testing.TB, pid int) float64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatalf("peak RSS of %d: %v", pid, err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				b.Fatalf("VmHWM of %d: %q: %v", pid, v, err)
			}
			return kb / 1024
		}
	}
	b.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}
