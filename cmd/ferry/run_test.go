package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/workflows"
)

func TestRunSummarySaysWhatWasResumed(t *testing.T) {
	kept := activities.Partial{Name: "ferry_s_1", Resume: &activities.ResumePosition{Offset: 100 << 20}}
	res := workflows.ReplicateResult{Snapshot: "ferry_s_2", Bytes: 40 << 20, Plan: workflows.Plan{Steps: []workflows.Step{
		{To: "ferry_s_1", Resume: &kept}, {From: "ferry_s_1", To: "ferry_s_2"},
	}}}
	var b strings.Builder
	printRunSummary(&b, res, 3*time.Second)
	want := "done in 3s: snapshot ferry_s_2, 2 step(s): 40.0 MiB on the wire (resumed 100.0 MiB kept by an earlier run)\n"
	if b.String() != want {
		t.Errorf("summary\n got %q\nwant %q", b.String(), want)
	}

	res.Plan.Steps[0].Resume = nil
	b.Reset()
	printRunSummary(&b, res, 3*time.Second)
	if want := "done in 3s: snapshot ferry_s_2, 2 step(s): 40.0 MiB on the wire\n"; b.String() != want {
		t.Errorf("summary without a resume\n got %q\nwant %q", b.String(), want)
	}
}

func TestRunSummaryCountsEveryAttempt(t *testing.T) {
	res := workflows.ReplicateResult{Snapshot: "ferry_s_1", Bytes: 301 << 20, Plan: workflows.Plan{Steps: []workflows.Step{{To: "ferry_s_1"}}},
		Received: workflows.Received{StreamSize: 293 << 20, StreamBytes: 293 << 20, Resumes: 1, Reconnects: 3}}
	var b strings.Builder
	printRunSummary(&b, res, 42*time.Second)
	want := "done in 42s: snapshot ferry_s_1, 1 step(s): 293.0 MiB stream, at least 301.0 MiB on the wire, all attempts counted: 1 resume after an interruption, 3 reconnects\n"
	if b.String() != want {
		t.Errorf("summary\n got %q\nwant %q", b.String(), want)
	}
	res.Received = workflows.Received{StreamSize: 293 << 20, StreamBytes: 373 << 20, Restarts: 1, Restart: "off mode"}
	b.Reset()
	printRunSummary(&b, res, 42*time.Second)
	want = "done in 42s: snapshot ferry_s_1, 1 step(s): 293.0 MiB stream (373.0 MiB of it sent over all attempts), at least 301.0 MiB on the wire, all attempts counted: 1 restart from 0 (off mode)\n"
	if b.String() != want {
		t.Errorf("summary after a restart\n got %q\nwant %q", b.String(), want)
	}
}

func TestRunWithoutAJobListsTheJobs(t *testing.T) {
	dir := t.TempDir()
	text := `tls: {ca: ca.pem}
hosts:
  nas-a: {data_address: 127.0.0.1:7400, backend: dir, root: ` + dir + `/a}
  nas-b: {data_address: 127.0.0.1:7401, backend: dir, root: ` + dir + `/b}
jobs:
  share01: {source: nas-a:share01, target: nas-b:share01, every: 1h}
  share02: {source: nas-a:share02, target: nas-b:share02}
`
	path := filepath.Join(dir, "ferry.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := newRunCmd()
	cmd.SetArgs([]string{"--config", path})
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	err := cmd.Execute()
	if err == nil {
		t.Fatal("ferry run without a job succeeded")
	}
	for _, want := range []string{"name the job to run; " + path + " has 2 jobs:", "share01  nas-a:share01 -> nas-b:share01  every 1h", "share02  nas-a:share02 -> nas-b:share02  manual", "e.g. ferry run --config " + path + " share01 --wait"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%s", want, err)
		}
	}

	cmd = newRunCmd()
	cmd.SetArgs([]string{"--config", filepath.Join(dir, "nope.yaml")})
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "pass the config file with --config FILE") {
		t.Errorf("missing config: %v", err)
	}
}

func TestRunSummaryNamesBackendFeatures(t *testing.T) {
	res := workflows.ReplicateResult{Snapshot: "ferry_s_1", Features: map[string]map[string]string{
		"nas-b": {"resumable_receive": "no", "pool_version": "23"}, "nas-a": {"raw_send": "yes"}}}
	var b strings.Builder
	printRunSummary(&b, res, time.Second)
	want := "done in 1s: snapshot ferry_s_1, the target already had everything (nothing sent)\n" +
		"features of nas-a: raw_send yes\nfeatures of nas-b: pool_version 23, resumable_receive no\n"
	if b.String() != want {
		t.Errorf("summary\n got %q\nwant %q", b.String(), want)
	}
}

// TestWebUIURL: the run's page is under the job's notify.ui_url when the
// config names the UI there (a UI on another port or host), else on port
// 8233 of the Temporal host.
func TestWebUIURL(t *testing.T) {
	cfg := &config.Config{Temporal: config.Temporal{Address: "10.0.0.1:7233", Namespace: "default"}}
	job := config.Job{Name: "share01"}
	if got, want := webUIURL(cfg, job, "ferry-share01-1", "r1"), "http://10.0.0.1:8233/namespaces/default/workflows/ferry-share01-1/r1/history"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	job.Notify.UIURL = "https://ui.lan:18233/"
	if got, want := webUIURL(cfg, job, "ferry-share01-1", "r1"), "https://ui.lan:18233/namespaces/default/workflows/ferry-share01-1/r1/history"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
