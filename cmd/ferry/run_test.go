package main

import (
	"strings"
	"testing"
	"time"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/workflows"
)

func TestRunSummarySaysWhatWasResumed(t *testing.T) {
	kept := activities.Partial{Name: "ferry_s_1", Resume: &activities.ResumePosition{Offset: 100 << 20}}
	res := workflows.ReplicateResult{Snapshot: "ferry_s_2", Bytes: 40 << 20, Plan: workflows.Plan{Steps: []workflows.Step{
		{To: "ferry_s_1", Resume: &kept}, {From: "ferry_s_1", To: "ferry_s_2"},
	}}}
	var b strings.Builder
	printRunSummary(&b, res, 3*time.Second)
	want := "done in 3s: snapshot ferry_s_2, 40.0 MiB in 2 step(s) (resumed 100.0 MiB kept by an earlier run)\n"
	if b.String() != want {
		t.Errorf("summary\n got %q\nwant %q", b.String(), want)
	}

	res.Plan.Steps[0].Resume = nil
	b.Reset()
	printRunSummary(&b, res, 3*time.Second)
	if want := "done in 3s: snapshot ferry_s_2, 40.0 MiB in 2 step(s)\n"; b.String() != want {
		t.Errorf("summary without a resume\n got %q\nwant %q", b.String(), want)
	}
}
