package main

import (
	"testing"
	"time"

	"github.com/ferry-nas/ferry/config"
)

// TestPruneWaitingNote: a prune or listing the workers do not answer says
// which workers it waits for, the command to check, and when it gives up.
func TestPruneWaitingNote(t *testing.T) {
	job := config.Job{Name: "share01", Source: config.Endpoint{Host: "nas-a", Dataset: "share01"},
		Target: config.Endpoint{Host: "nas-b", Dataset: "replicas/share01"}}
	want := "no answer yet from the workers of nas-b and nas-a after 10s: are `ferry worker --host nas-b` and `ferry worker --host nas-a` running and connected to Temporal? (it gives up when a host has not answered within timeouts.host, 10m0s)"
	if got := pruneWaitingNote(job); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	job.Target.Host, job.Timeouts.Host = "nas-a", 30*time.Second
	want = "no answer yet from the worker of nas-a after 10s: is `ferry worker --host nas-a` running and connected to Temporal? (it gives up when a host has not answered within timeouts.host, 30s)"
	if got := pruneWaitingNote(job); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}
