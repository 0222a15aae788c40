package activities

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/logging"
)

// ErrHookFailed: a hook command failed, timed out or is not declared by the
// worker's host. Never retried: a hook is the administrator's own command,
// and running a half-failed freeze again is not ferry's call.
const ErrHookFailed = "HookFailed"

// Hook phases (RunHookInput.Phase, FERRY_HOOK in the hook's environment).
const (
	HookPreSnapshot  = "pre_snapshot"
	HookPostSnapshot = "post_snapshot"
)

// HookCommand is a hook as the worker's own config declares it.
type HookCommand struct {
	Command []string
	Timeout time.Duration
}

// hookOutputLines is how many of a hook's last output lines an error and
// the log carry.
const hookOutputLines = 20

// hookOutputKeep bounds the output kept in memory while a hook runs.
const hookOutputKeep = 64 << 10

// hookWaitDelay is how long a killed hook's output pipes may stay open (a
// grandchild holding them) before the worker stops waiting for them.
const hookWaitDelay = 5 * time.Second

// RunHookInput names the hook to run; the command itself comes from the
// worker's config, never from the workflow.
type RunHookInput struct {
	Job     string `json:"job"`
	Dataset string `json:"dataset"`
	// Snapshot is the snapshot the run takes (FERRY_SNAPSHOT).
	Snapshot string `json:"snapshot"`
	// Hook is the name under hosts.<h>.hooks.
	Hook string `json:"hook"`
	// Phase is HookPreSnapshot or HookPostSnapshot.
	Phase string `json:"phase"`
}

// RunHookResult is what the hook printed last.
type RunHookResult struct {
	Output string `json:"output,omitempty"`
}

// RunHook runs one of this host's hooks with the job, dataset and snapshot
// in its environment. A hook that exits non-zero, is killed or outlives its
// timeout fails as ErrHookFailed with its last output lines in the message.
func (h *Host) RunHook(ctx context.Context, in RunHookInput) (RunHookResult, error) {
	log := h.log(ctx, in.Job, "hook").With(logging.Snapshot(in.Snapshot), zap.String("hook", in.Hook), zap.String("phase", in.Phase))
	hook, ok := h.Hooks[in.Hook]
	if !ok {
		declared := "it declares none"
		if len(h.Hooks) > 0 {
			names := make([]string, 0, len(h.Hooks))
			for n := range h.Hooks {
				names = append(names, n)
			}
			sort.Strings(names)
			declared = "declared: " + strings.Join(names, ", ")
		}
		err := fmt.Errorf("host %s has no hook %q in the config its worker runs with (%s): add hosts.%s.hooks.%s to that config and restart `ferry worker --host %s`, or fix jobs.%s.hooks.%s",
			h.Name, in.Hook, declared, h.Name, in.Hook, h.Name, in.Job, in.Phase)
		log.Error("hook not declared", zap.Error(err))
		return RunHookResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrHookFailed, nil)
	}

	runCtx, cancel := context.WithTimeout(ctx, hook.Timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, hook.Command[0], hook.Command[1:]...)
	cmd.Env = append(os.Environ(),
		"FERRY_JOB="+in.Job, "FERRY_DATASET="+in.Dataset, "FERRY_SNAPSHOT="+in.Snapshot,
		"FERRY_HOST="+h.Name, "FERRY_HOOK="+in.Phase)
	if h.Root != "" {
		cmd.Env = append(cmd.Env, "FERRY_ROOT="+h.Root)
	}
	out := &tailBuffer{max: hookOutputKeep}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so that a timeout kills what a shell script
	// started as well.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = hookWaitDelay

	// The program only: arguments may hold credentials, and the error
	// below ends up in the run's history, readable by anyone with
	// Temporal access.
	log.Info("running hook", zap.String("program", hook.Command[0]), zap.Int("args", len(hook.Command)-1), zap.Duration("timeout", hook.Timeout))
	began := time.Now()
	err := cmd.Run()
	last := lastLines(out.String(), hookOutputLines)
	if err == nil {
		log.Info("hook succeeded", zap.Duration("took", time.Since(began)), zap.String("output", last))
		return RunHookResult{Output: last}, nil
	}
	var why string
	var exit *exec.ExitError
	switch {
	case errors.Is(runCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		why = fmt.Sprintf("did not finish within its timeout %s and was killed", hook.Timeout)
	case ctx.Err() != nil:
		// The activity itself was cancelled (worker stopping, run
		// cancelled): that is not the hook's failure.
		log.Warn("hook interrupted", zap.Error(ctx.Err()))
		return RunHookResult{Output: last}, ctx.Err()
	case errors.As(err, &exit):
		why = "failed: " + exit.String()
	default:
		why = "could not run: " + err.Error()
	}
	msg := fmt.Sprintf("%s hook %q (%s) on %s %s", in.Phase, in.Hook, hook.Command[0], h.Name, why)
	if last != "" {
		msg += "; its last output:\n" + last
	} else {
		msg += "; it printed nothing"
	}
	log.Error("hook failed", zap.String("error_type", ErrHookFailed), zap.String("reason", why), zap.String("output", last))
	return RunHookResult{Output: last}, temporal.NewNonRetryableApplicationError(msg, ErrHookFailed, nil)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// lastLines returns the last n lines of s, without a trailing newline.
func lastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
