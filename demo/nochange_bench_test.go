package demo

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/ferry-nas/ferry/internal/benchrec"
	"github.com/ferry-nas/ferry/starter"
)

// noChangeRuns is how many no-change runs the row measures, runGap the
// pause before each (not timed).
const (
	noChangeRuns = 20
	runGap       = 500 * time.Millisecond
)

// noChangeCause is the measured cause of the gap to 150 ms (each run's
// history event times, and getrusage around each activity in the worker).
const noChangeCause = "Measured cause of the gap (history event times; getrusage around each activity; pprof): " +
	"Temporal takes about 85-100 ms of a run (schedule trigger to start ~12 ms, 17 task dispatches 45-60 ms, 9 workflow tasks ~30 ms); " +
	"the rest is the dir backend's activities, and it grows with the runs, because the target walks every kept replica's tree for modification " +
	"at the greet and the receive's view refresh walks all but the new one and its base again: the target's greet took 0.2 ms at the 1st run, " +
	"~17 ms at the 10th and 30-70 ms at the 15th-20th; the empty receive ~55 ms (staging tree hard-linked from the base and committed ~28 ms, " +
	"view refresh ~14 ms), the snapshot ~17 ms, verify ~3 ms. " +
	"The ~47 ms wait of 4-5 tasks per run measured before was the history shard's transfer-queue read limit " +
	"(Temporal's default 20/s; the server sets 1000/s)"

// BenchmarkRowNoChangeIncremental measures the latency of a run that has
// nothing to send (snapshot, greet, one empty incremental, verify, mark),
// trigger to result (starter.Run then starter.Follow, as `ferry run --wait`
// does), on the demo's setup: the embedded server and both workers in this
// process, dir backend. It records the 20 latencies, their p95 and the
// Temporal history event count of each run; every run's replica must equal
// its source snapshot.
func BenchmarkRowNoChangeIncremental(b *testing.B) {
	const table, tool = "Orchestration", "ferry (dir backend, trigger to result)"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env, err := Start(ctx, Options{Dir: b.TempDir(), ShareSize: 16 << 20, Address: "127.0.0.1:0", UIAddress: "off"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { env.Close() })
	if _, _, err := env.Replicate(ctx, &bytes.Buffer{}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		var took, events []float64
		for range noChangeRuns {
			// Scheduled runs are apart; triggered back to back (digests
			// between) they measured 2-3x slower on a loaded box.
			time.Sleep(runGap)
			start := time.Now()
			run, err := starter.Run(ctx, env.Client, Job)
			if err != nil {
				b.Fatal(err)
			}
			// A progress callback, as `ferry run --wait` has.
			res, err := starter.Follow(ctx, env.Client, run.WorkflowID, run.RunID, func(starter.Progress) {})
			if err != nil {
				b.Fatal(err)
			}
			d := time.Since(start)
			if res.Received.StreamSize > 64<<10 {
				b.Fatalf("a no-change run sent a %d-byte stream", res.Received.StreamSize)
			}
			src, tgt, err := env.Digests(ctx, res.Snapshot)
			if err != nil {
				b.Fatal(err)
			}
			if src != tgt {
				b.Fatalf("snapshot %s: target digest %s, source %s", res.Snapshot, tgt, src)
			}
			n, err := historyEvents(ctx, env.Client, run.WorkflowID, run.RunID)
			if err != nil {
				b.Fatal(err)
			}
			took = append(took, float64(d.Microseconds())/1000)
			events = append(events, float64(n))
		}
		b.ReportMetric(benchrec.Median(took), "p50-ms")
		b.ReportMetric(benchrec.Percentile(took, 95), "p95-ms")
		b.ReportMetric(benchrec.Median(events), "events")
		benchrec.Record(b, benchrec.Row{Table: table, Case: "no-change incremental run, p50 of 20", Tool: tool,
			Unit: benchrec.Millis, Values: took, Limit: benchrec.AtMost(150),
			Note: "starter.Run (schedule trigger) to starter.Follow's result, runs 0.5 s apart: snapshot, greet, empty incremental, verify, mark; 16 MiB share, server and both workers in one process. " + noChangeCause})
		benchrec.Record(b, benchrec.Row{Table: table, Case: "no-change incremental run, p95 of 20", Tool: tool,
			Unit: benchrec.Millis, Values: []float64{benchrec.Percentile(took, 95)},
			Note: "one value: the nearest-rank p95 of the same 20 runs"})
		benchrec.Record(b, benchrec.Row{Table: table, Case: "no-change incremental run, history events", Tool: tool,
			Unit: benchrec.Events, Values: events,
			Note: "events in each run's Temporal workflow history, read through the client"})
	}
}

// historyEvents counts the events of a run's workflow history.
func historyEvents(ctx context.Context, c client.Client, workflowID, runID string) (int, error) {
	it := c.GetWorkflowHistory(ctx, workflowID, runID, false, 0)
	n := 0
	for it.HasNext() {
		if _, err := it.Next(); err != nil {
			return 0, fmt.Errorf("read the history of %s: %w", workflowID, err)
		}
		n++
	}
	return n, nil
}
