package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-nas/ferry/certs"
)

// TestWorkerCommandRefusesLocalMistakesBeforeTemporal: the worker's local
// start-up checks run before it dials Temporal, so a missing root or another
// host's certificate is reported as such even when no Temporal server
// answers (the config points at a closed port).
func TestWorkerCommandRefusesLocalMistakesBeforeTemporal(t *testing.T) {
	dir := t.TempDir()
	certDir := filepath.Join(dir, "certs")
	if _, _, err := certs.Init(certDir, false); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"nas-a", "nas-b"} {
		if _, _, err := certs.Issue(certDir, h, certs.IssueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rootA := filepath.Join(dir, "a")
	if err := os.Mkdir(rootA, 0o755); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "mnt", "backup")
	cfg := filepath.Join(dir, "ferry.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`temporal: {address: "127.0.0.1:1"}
tls: {ca: certs/ca.pem}
hosts:
  nas-a: {data_address: "127.0.0.1:7401", backend: dir, root: %q}
  nas-b: {data_address: "127.0.0.1:7402", backend: dir, root: %q}
`, rootA, missing)), 0o644); err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) error {
		cmd := newWorkerCmd()
		cmd.SetArgs(args)
		cmd.SetOut(new(strings.Builder))
		cmd.SetErr(new(strings.Builder))
		return cmd.ExecuteContext(context.Background())
	}
	err := run("--config", cfg)
	want := "name the host this worker runs on with --host; " + cfg + " declares nas-a, nas-b: e.g. ferry worker --config " + cfg + " --host nas-a"
	if err == nil || err.Error() != want {
		t.Fatalf("no --host: got %v, want %q", err, want)
	}
	err = run("--config", cfg, "--host", "nas-b")
	if err == nil || !strings.Contains(err.Error(), "root "+missing+" does not exist") {
		t.Fatalf("missing root: got %v", err)
	}
	b := certs.HostFiles(certDir, "nas-b")
	err = run("--config", cfg, "--host", "nas-a", "--cert", b.Cert, "--key", b.Key)
	if err == nil || !strings.Contains(err.Error(), `issued for host "nas-b", not for "nas-a"`) {
		t.Fatalf("another host's certificate: got %v", err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("the missing root was created: %v", err)
	}
}
