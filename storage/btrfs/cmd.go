package btrfs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ferry-nas/ferry/storage"
)

// cmdError is a failed btrfs subprocess: its arguments, how it ended and
// (trimmed) what it wrote to stderr.
type cmdError struct {
	args   []string
	err    error
	stderr string
	// ctxErr is set when the process was killed because ctx ended.
	ctxErr error
}

func (e *cmdError) Error() string {
	msg := "btrfs " + strings.Join(e.args, " ") + ": "
	if e.ctxErr != nil {
		msg += "interrupted (" + e.ctxErr.Error() + ")"
	} else {
		msg += e.err.Error()
	}
	if e.stderr != "" {
		msg += ": " + e.stderr
	}
	return msg
}

func (e *cmdError) Unwrap() error {
	if e.ctxErr != nil {
		return e.ctxErr
	}
	return e.err
}

// noSpace reports whether btrfs said the filesystem is full.
func (e *cmdError) noSpace() bool {
	return containsAny(e.stderr, "No space left on device", "Disk quota exceeded")
}

func (e *cmdError) notPermitted() bool {
	return containsAny(e.stderr, "Operation not permitted", "Permission denied")
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

// String is the kept output without btrfs's progress chatter, one line
// per "; ", at most 1 KiB.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lines []string
	for _, l := range strings.Split(string(t.buf), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "At subvol ") || strings.HasPrefix(l, "At snapshot ") || strings.HasPrefix(l, "Chroot to ") {
			continue
		}
		lines = append(lines, l)
	}
	s := strings.Join(lines, "; ")
	if len(s) > 1024 {
		s = "..." + s[len(s)-1024:]
	}
	return s
}

// proc is a running btrfs subprocess in its own process group: cancelling
// ctx (or kill) kills the whole group, and wait always reaps it.
type proc struct {
	cmd    *exec.Cmd
	ctx    context.Context
	args   []string
	stderr *tailBuffer
	killed bool
}

// start starts `btrfs args...`; stdin and stdout are set by the caller
// through the setup function before the process starts.
func (b *Backend) start(ctx context.Context, setup func(*exec.Cmd) error, args ...string) (*proc, error) {
	cmd := exec.CommandContext(ctx, b.bin, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	p := &proc{cmd: cmd, ctx: ctx, args: args, stderr: &tailBuffer{max: 16 << 10}}
	cmd.Stderr = p.stderr
	if setup != nil {
		if err := setup(cmd); err != nil {
			return nil, err
		}
	}
	b.log.Debug("btrfs", zapArgs(args))
	if err := cmd.Start(); err != nil {
		return nil, &cmdError{args: args, err: err}
	}
	return p, nil
}

// startReceive starts `btrfs args...` reading its stdin from a 1 MiB pipe
// (storage.Pipe), so that it reads large chunks of the stream; the caller
// writes the stream to stdin and closes it.
func (b *Backend) startReceive(ctx context.Context, args ...string) (*os.File, *proc, error) {
	pr, stdin, err := storage.Pipe()
	if err != nil {
		return nil, nil, err
	}
	p, err := b.start(ctx, func(c *exec.Cmd) error { c.Stdin, c.Stdout = pr, io.Discard; return nil }, args...)
	pr.Close() // the child holds its own copy
	if err != nil {
		stdin.Close()
		return nil, nil, err
	}
	return stdin, p, nil
}

// kill ends the process group at once (the caller still waits).
func (p *proc) kill() {
	if p.cmd.Process != nil && !p.killed {
		p.killed = true
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// wait reaps the process; a failure is a *cmdError.
func (p *proc) wait() error {
	err := p.cmd.Wait()
	if err == nil {
		return nil
	}
	ce := &cmdError{args: p.args, err: err, stderr: p.stderr.String()}
	if p.ctx.Err() != nil {
		ce.ctxErr = p.ctx.Err()
	} else if p.killed {
		ce.err = errors.New("killed by ferry")
	}
	return ce
}

// run runs `btrfs args...` to the end and returns its stdout.
func (b *Backend) run(ctx context.Context, args ...string) (string, error) {
	var stdout bytes.Buffer
	p, err := b.start(ctx, func(c *exec.Cmd) error { c.Stdout = &stdout; return nil }, args...)
	if err != nil {
		return "", err
	}
	if err := p.wait(); err != nil {
		return stdout.String(), err
	}
	return stdout.String(), nil
}

// classify turns an error of op into a *storage.Error: ENOSPC (from a
// syscall or in btrfs's stderr) is NoSpace, a killed process after ctx ended
// Temporary, a refused privilege Unsupported, anything else def.
func classify(err error, def storage.Kind, op, ds, name string) error {
	if err == nil {
		return nil
	}
	var se *storage.Error
	if errors.As(err, &se) {
		return err
	}
	var ce *cmdError
	if errors.As(err, &ce) {
		kind, fix := cmdKind(ce, def)
		return &storage.Error{Kind: kind, Op: op, Dataset: ds, Snapshot: name, Err: err, Fix: fix}
	}
	return storage.Wrap(err, def, op, ds, name)
}

// cmdKind classifies a failed btrfs process: killed after ctx ended
// Temporary, a full filesystem (in its stderr) NoSpace, a refused privilege
// Unsupported, anything else def.
func cmdKind(ce *cmdError, def storage.Kind) (storage.Kind, string) {
	switch {
	case ce.ctxErr != nil:
		return storage.KindTemporary, ""
	case ce.noSpace():
		return storage.KindNoSpace, storage.FixNoSpace
	case ce.notPermitted():
		return storage.KindUnsupported, fixPrivileges
	}
	return def, ""
}

// writingRE finds the path btrfs receive names when a write fails
// ("ERROR: writing to dir/file failed: No space left on device").
var writingRE = regexp.MustCompile(`ERROR: (?:writing to|mkfile|mkdir|symlink|link|truncate|open|clone|set xattr) (.+?)(?: -> .*)? failed`)

// failedPath is the path inside the subvolume a failed btrfs receive was
// writing, if its stderr says.
func (e *cmdError) failedPath() string {
	if m := writingRE.FindStringSubmatch(e.stderr); m != nil {
		return m[1]
	}
	return ""
}

const (
	fixPrivileges = "run the ferry worker as root, or give it the capabilities btrfs needs as ambient capabilities (systemd: AmbientCapabilities=CAP_SYS_ADMIN CAP_FOWNER CAP_SYS_CHROOT CAP_CHOWN CAP_DAC_OVERRIDE CAP_FSETID CAP_MKNOD CAP_SETFCAP)"
)
