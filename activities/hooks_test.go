package activities

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
)

// writeScript writes an executable shell script into dir.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755))
	return p
}

// TestRunHookPassesTheRunInItsEnvironment runs a real script, which sees
// the job, dataset, snapshot, host and phase.
func TestRunHookPassesTheRunInItsEnvironment(t *testing.T) {
	dir := t.TempDir()
	seen := filepath.Join(dir, "seen")
	script := writeScript(t, dir, "env.sh", `echo "$FERRY_JOB $FERRY_DATASET $FERRY_SNAPSHOT $FERRY_HOST $FERRY_HOOK $FERRY_ROOT" > "$1"; echo flushed`)
	h := &Host{Name: "nas-a", Root: "/srv/a", Hooks: map[string]HookCommand{"flush": {Command: []string{script, seen}, Timeout: 10 * time.Second}}}
	res, err := runActivity(t, h.RunHook, RunHookInput{Job: "j1", Dataset: "share", Snapshot: "ferry_j1_x", Hook: "flush", Phase: HookPreSnapshot})
	require.NoError(t, err)
	require.Equal(t, "flushed", res.Output)
	got, err := os.ReadFile(seen)
	require.NoError(t, err)
	require.Equal(t, "j1 share ferry_j1_x nas-a pre_snapshot /srv/a\n", string(got))
}

// TestRunHookFailureCarriesItsLastLines: a script that prints 30 lines and
// exits 3 fails as HookFailed, not retried, with its last 20 lines.
func TestRunHookFailureCarriesItsLastLines(t *testing.T) {
	script := writeScript(t, t.TempDir(), "fail.sh", `i=1; while [ $i -le 30 ]; do echo "line $i"; i=$((i+1)); done; echo "database is busy" >&2; exit 3`)
	h := &Host{Name: "nas-a", Hooks: map[string]HookCommand{"freeze": {Command: []string{script}, Timeout: 10 * time.Second}}}
	_, err := runActivity(t, h.RunHook, RunHookInput{Job: "j1", Dataset: "share", Snapshot: "s", Hook: "freeze", Phase: HookPreSnapshot})
	requireType(t, err, ErrHookFailed)
	requireNonRetryable(t, err)
	msg := err.Error()
	require.Contains(t, msg, `pre_snapshot hook "freeze" (`+script+`) on nas-a failed: exit status 3; its last output:`)
	require.Contains(t, msg, "line 30\ndatabase is busy")
	require.Contains(t, msg, "line 12\n")
	require.NotContains(t, msg, "line 11\n", "more than the last 20 lines")
}

// TestRunHookTimeoutKillsTheScript: a hook that outlives its timeout is
// killed with what it started (its process group), and says so.
func TestRunHookTimeoutKillsTheScript(t *testing.T) {
	dir := t.TempDir()
	child := filepath.Join(dir, "child.pid")
	script := writeScript(t, dir, "hang.sh", fmt.Sprintf("echo starting; sleep 300 & echo $! > %s; wait\n", child))
	h := &Host{Name: "nas-a", Hooks: map[string]HookCommand{"slow": {Command: []string{script}, Timeout: time.Second}}}
	_, err := runActivity(t, h.RunHook, RunHookInput{Job: "j1", Dataset: "share", Snapshot: "s", Hook: "slow", Phase: HookPreSnapshot})
	requireType(t, err, ErrHookFailed)
	require.Contains(t, err.Error(), "did not finish within its timeout 1s and was killed; its last output:\nstarting")
	pid, rerr := os.ReadFile(child)
	require.NoError(t, rerr)
	_, serr := os.Stat("/proc/" + strings.TrimSpace(string(pid)))
	require.True(t, errors.Is(serr, os.ErrNotExist) || processIsZombie(strings.TrimSpace(string(pid))), "the hook's child %s survived the timeout", pid)
}

func processIsZombie(pid string) bool {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return true
	}
	f := strings.Fields(string(stat))
	return len(f) > 2 && f[2] == "Z"
}

// TestRunHookRefusesAnUnknownName: the name comes from workflow input; the
// command only from the worker's config.
func TestRunHookRefusesAnUnknownName(t *testing.T) {
	h := &Host{Name: "nas-a", Hooks: map[string]HookCommand{"freeze": {Command: []string{"/bin/true"}, Timeout: time.Second}}}
	_, err := runActivity(t, h.RunHook, RunHookInput{Job: "j1", Dataset: "share", Snapshot: "s", Hook: "/bin/rm", Phase: HookPostSnapshot})
	requireType(t, err, ErrHookFailed)
	requireNonRetryable(t, err)
	require.Contains(t, err.Error(), `host nas-a has no hook "/bin/rm" in the config its worker runs with (declared: freeze)`)
	require.Contains(t, err.Error(), "jobs.j1.hooks.post_snapshot")
}

func requireNonRetryable(t *testing.T, err error) {
	t.Helper()
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae))
	require.True(t, ae.NonRetryable(), "error %v is retryable", err)
}
