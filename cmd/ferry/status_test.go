package main

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferry-nas/ferry/starter"
	"github.com/ferry-nas/ferry/workflows"
)

func TestStatusTableNamesStreamAndWireBytes(t *testing.T) {
	now := time.Date(2026, 11, 30, 21, 20, 0, 0, time.UTC)
	cur := &starter.Progress{Status: "Running", Phase: workflows.PhaseStream, Step: 1, Steps: 1, TargetHost: "nas-b",
		Bytes: 120 << 20, Expected: 300 << 20, Silent: 25 * time.Second}
	sts := []starter.JobStatus{{Job: "share03", Schedule: &starter.ScheduleState{ID: "ferry-share03", Paused: true}, Current: cur,
		LastSuccess: &starter.RunSummary{Status: "Completed", CloseTime: now.Add(-time.Minute), Snapshot: "ferry_share03_1", Steps: 1,
			Bytes: 276 << 20, Received: workflows.Received{StreamSize: 300 << 20, StreamBytes: 340 << 20, Resumes: 1}}}}
	var b strings.Builder
	printStatus(&b, sts, now)
	for _, want := range []string{
		"stream step 1/1  120.0 MiB / 300.0 MiB stream (40%)  no progress from nas-b for 25s — worker down?",
		"ferry_share03_1 (300.0 MiB stream, 276.0 MiB wire, 1 resume)",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status table lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "MiB/s") {
		t.Errorf("a stale rate is shown:\n%s", b.String())
	}
}

func TestWatchRedrawsOnlyOnATerminal(t *testing.T) {
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for name, out := range map[string]io.Writer{"/dev/null": devNull, "a pipe": w, "a buffer": &strings.Builder{}} {
		if isTerminal(out) {
			t.Errorf("%s is taken for a terminal: --watch would write screen codes into it", name)
		}
	}
}
