package config

import (
	"strings"
	"testing"
)

// TestRestoreDestination: --to must name a declared host with the backend
// of the job's target and a dataset that passes the dataset checks.
func TestRestoreDestination(t *testing.T) {
	cfg := mustParse(t, `
temporal: {address: 127.0.0.1:7233}
tls: {ca: certs/ca.pem}
hosts:
  nas-a: {data_address: 10.0.0.1:7400, backend: btrfs, root: /mnt/a}
  nas-b: {data_address: 10.0.0.2:7400, backend: btrfs, root: /mnt/b}
  nas-c: {data_address: 10.0.0.3:7400, backend: dir, root: /srv/c}
jobs:
  share01: {source: "nas-a:share01", target: "nas-b:replicas/share01"}
`)
	job, err := cfg.Job("share01")
	if err != nil {
		t.Fatal(err)
	}
	ep, err := cfg.RestoreDestination(job, "nas-a:share01-restored")
	if err != nil || ep.Host != "nas-a" || ep.Dataset != "share01-restored" {
		t.Fatalf("got %+v, %v", ep, err)
	}
	for to, want := range map[string]string{
		"nas-z:x":         `unknown host "nas-z" (hosts: nas-a, nas-b, nas-c); restore to one of them, e.g. --to nas-a:share01-restored`,
		"nas-c:x":         "host nas-c has backend dir, but job share01's replica is on nas-b (btrfs)",
		"nas-a:/abs":      "absolute path; drop the leading /",
		"nas-a:a/../b":    `contains a ".." component; a dataset is a path relative to the host's root`,
		"nas-a:.ferry/x":  "",
		"no-colon":        `"no-colon" is not host:dataset; write --to HOST:DATASET, e.g. nas-a:share01-restored`,
		"nas-a:trailing/": "ends with a slash; remove the trailing /",
	} {
		_, err := cfg.RestoreDestination(job, to)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--to "+to) {
			t.Errorf("--to %s: got %v, want an error naming it and containing %q", to, err, want)
		}
	}
}
