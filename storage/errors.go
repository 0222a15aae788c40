package storage

import (
	"errors"
	"fmt"
	"syscall"
)

// Kind classifies a storage error where it arises, so that the workflow can
// decide between retrying, failing the run and compensating.
type Kind int

const (
	// KindTemporary may succeed when retried (I/O hiccup, busy device).
	KindTemporary Kind = iota
	// KindNotFound: the dataset or snapshot does not exist.
	KindNotFound
	// KindConflict: the target holds something that contradicts the request
	// (diverged, modified after receive, identity mismatch). Never retried.
	KindConflict
	// KindNoSpace: the filesystem is full.
	KindNoSpace
	// KindUnsupported: the backend or its tools cannot do this here.
	KindUnsupported
	// KindInvalid: the request or the stream is malformed or unsafe
	// (path escaping the root, corrupt stream); retrying the same input fails again.
	KindInvalid
)

var kindNames = map[Kind]string{
	KindTemporary:   "Temporary",
	KindNotFound:    "NotFound",
	KindConflict:    "Conflict",
	KindNoSpace:     "NoSpace",
	KindUnsupported: "Unsupported",
	KindInvalid:     "Invalid",
}

// String is the kind's name, also used as the Temporal application error type.
func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Error is a classified storage error. Its message names the operation, the
// dataset and snapshot, the cause, and what to do about it.
type Error struct {
	Kind Kind
	Op   string // e.g. "receive", "create snapshot"
	// Host is the ferry host whose storage this is; the backend does not
	// know it, the activity reporting the error fills it in.
	Host     string
	Dataset  string
	Snapshot string
	Err      error
	// Fix tells the administrator what to do; may be empty.
	Fix string
}

func (e *Error) Error() string {
	msg := e.Op
	if e.Dataset != "" {
		msg += " " + e.Dataset
		if e.Snapshot != "" {
			msg += "@" + e.Snapshot
		}
	}
	if e.Host != "" {
		msg += " on " + e.Host
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.Fix != "" {
		msg += " (" + e.Fix + ")"
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an *Error of the given kind.
func Errorf(kind Kind, op, dataset, snapshot, fix, format string, args ...any) *Error {
	return &Error{Kind: kind, Op: op, Dataset: dataset, Snapshot: snapshot, Err: fmt.Errorf(format, args...), Fix: fix}
}

// Wrap classifies err for op: ENOSPC and EDQUOT become KindNoSpace, a missing
// file KindNotFound, anything else the given default kind. An err that is
// already an *Error keeps its kind. Wrap(nil) is nil.
func Wrap(err error, def Kind, op, dataset, snapshot string) error {
	if err == nil {
		return nil
	}
	var se *Error
	if errors.As(err, &se) {
		return err
	}
	kind, fix := def, ""
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		kind, fix = KindNoSpace, FixNoSpace
	case errors.Is(err, syscall.ENOENT):
		kind = KindNotFound
	}
	return &Error{Kind: kind, Op: op, Dataset: dataset, Snapshot: snapshot, Err: err, Fix: fix}
}

// KindOf returns the kind of the first *Error in err's chain, KindNoSpace for
// a bare ENOSPC, and KindTemporary otherwise.
func KindOf(err error) Kind {
	var se *Error
	if errors.As(err, &se) {
		return se.Kind
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return KindNoSpace
	}
	return KindTemporary
}
