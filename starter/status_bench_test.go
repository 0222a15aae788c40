package starter

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"

	"github.com/ferry-nas/ferry/internal/benchrec"
)

// statusRuns is how many Status calls the row times.
const statusRuns = 5

// BenchmarkRowStatus200Jobs: `ferry status` over 200 applied jobs, each with
// a finished run, 10 of them with a run in progress, on the embedded server
// (SQLite visibility, as `ferry server` uses). The runs are the package's
// stand-in workflow under ReplicateWorkflow's name: they cost nothing but
// look to Status as real runs do. make bench runs it and records each of
// statusRuns calls, every one checked to see all 200 jobs as they are.
func BenchmarkRowStatus200Jobs(b *testing.B) {
	const jobs, running = 200, 10
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var yaml strings.Builder
	for i := range jobs {
		fmt.Fprintf(&yaml, "  bench%03d:\n    source: nas-a:b%03d\n    target: nas-b:b%03d\n", i, i, i)
	}
	cfg := testConfig(b, yaml.String())
	if _, err := Apply(ctx, tc, cfg, ApplyOptions{}); err != nil {
		b.Fatal(err)
	}
	release := make(chan struct{})
	defer close(release)
	run := func(job string, hold bool) error {
		f := &fakeJob{}
		if hold {
			f.release = release
		}
		setFake(job, f)
		st, err := Run(ctx, tc, job)
		if err != nil {
			return err
		}
		if hold {
			return nil
		}
		_, err = Follow(ctx, tc, st.WorkflowID, st.RunID, nil)
		return err
	}
	// Every job finishes a run; then the first ones start another and hold it.
	names := cfg.JobNames()
	errs := make(chan error, jobs)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := run(name, false); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	for _, name := range names[:running] {
		if err := run(name, true); err != nil {
			b.Fatal(err)
		}
	}
	// Visibility catches up a moment after the runs.
	for _, want := range []struct {
		status string
		n      int64
	}{{"Completed", jobs}, {"Running", running}} {
		for {
			resp, err := tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: "FerryJob STARTS_WITH 'bench' AND ExecutionStatus = '" + want.status + "'"})
			if err != nil {
				b.Fatal(err)
			}
			if resp.GetCount() >= want.n {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	for b.Loop() {
		var took []float64
		for range statusRuns {
			start := time.Now()
			sts, err := Status(ctx, tc, cfg)
			if err != nil {
				b.Fatal(err)
			}
			took = append(took, float64(time.Since(start).Microseconds())/1000)
			current, success := 0, 0
			for _, s := range sts {
				if s.Current != nil {
					current++
				}
				if s.LastSuccess != nil {
					success++
				}
				if len(s.Problems) > 0 {
					b.Fatalf("%s: %v", s.Job, s.Problems)
				}
			}
			if len(sts) != jobs || current != running || success != jobs {
				b.Fatalf("status of %d jobs: %d running, %d with a last success; want %d, %d, %d", len(sts), current, success, jobs, running, jobs)
			}
		}
		b.ReportMetric(benchrec.Median(took), "ms/status")
		benchrec.Record(b, benchrec.Row{Table: "Orchestration", Case: "`ferry status` over 200 jobs (10 running)", Tool: "ferry status",
			Unit: benchrec.Millis, Values: took,
			Note: "starter.Status against the embedded server (SQLite visibility): one schedule list and a few visibility lists, nothing per job"})
	}
}
