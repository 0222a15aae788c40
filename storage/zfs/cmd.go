package zfs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os/exec"
	"strings"

	"github.com/ferry-nas/ferry/storage"
)

// cmdError is a failed zfs or zpool subprocess: its arguments, how it ended
// and (trimmed) what it wrote to stderr.
type cmdError struct {
	args   []string
	err    error
	stderr string
	// ctxErr is set when the process was killed because ctx ended.
	ctxErr error
}

func (e *cmdError) Error() string {
	msg := strings.Join(e.args, " ") + ": "
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

func (e *cmdError) says(subs ...string) bool {
	for _, s := range subs {
		if strings.Contains(e.stderr, s) {
			return true
		}
	}
	return false
}

func (e *cmdError) notFound() bool {
	return e.says("does not exist", "dataset does not exist", "could not find any snapshots")
}

func (e *cmdError) noSpace() bool {
	return e.says("out of space", "No space left on device", "Disk quota exceeded", "quota exceeded")
}

// kind classifies a failed command from what the tool said.
func (e *cmdError) kind(def storage.Kind) storage.Kind {
	switch {
	case e.noSpace():
		return storage.KindNoSpace
	case e.notFound():
		return storage.KindNotFound
	case e.says("permission denied", "Permission denied", "Operation not permitted"):
		return storage.KindUnsupported
	}
	return def
}

// run runs bin with args and returns its stdout; a failure is a *cmdError.
func run(ctx context.Context, bin string, stdin io.Reader, args ...string) (string, error) {
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	if err := cmd.Run(); err != nil {
		ce := &cmdError{args: append([]string{bin}, args...), err: err, stderr: trim(errb.String())}
		if ctx.Err() != nil {
			ce.ctxErr = ctx.Err()
		}
		return out.String(), ce
	}
	return out.String(), nil
}

func trim(s string) string {
	s = strings.TrimSpace(strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " "))
	if len(s) > 2000 {
		s = s[:2000] + "…"
	}
	return s
}

// classify turns a command failure into a *storage.Error for op.
func classify(err error, def storage.Kind, op, dataset, snapshot, fix string) error {
	if err == nil {
		return nil
	}
	var se *storage.Error
	if errors.As(err, &se) {
		return err
	}
	kind := def
	var ce *cmdError
	if errors.As(err, &ce) {
		if ce.ctxErr != nil {
			kind = storage.KindTemporary
		} else {
			kind = ce.kind(def)
		}
	}
	if kind == storage.KindNoSpace && fix == "" {
		fix = storage.FixNoSpace
	}
	return &storage.Error{Kind: kind, Op: op, Dataset: dataset, Snapshot: snapshot, Err: err, Fix: fix}
}
