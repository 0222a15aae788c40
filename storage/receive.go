package storage

import (
	"errors"
	"fmt"
)

// The answers every backend's Receive gives the same way.

// ErrSnapshotExists is the Conflict of a receive whose snapshot name the
// target already holds as a complete snapshot.
func ErrSnapshotExists(op, dataset, name string) *Error {
	return Errorf(KindConflict, op, dataset, name,
		"the target already holds a complete snapshot of that name; destroy it first if it is not the one being sent",
		"snapshot %q already exists on the target", name)
}

// BaseNotFound turns the backend's NotFound for a receive's incremental
// base into one that says it is the base and what to do; other errors are
// returned unchanged.
func BaseNotFound(err error, parent string) error {
	var se *Error
	if errors.As(err, &se) && se.Kind == KindNotFound {
		se.Err = fmt.Errorf("incremental base %q is not on the target: %w", parent, se.Err)
		se.Fix = "send a full stream, or restore the base snapshot on the target"
	}
	return err
}

// KeepsPartial reports whether a receive that failed with err keeps what it
// staged: only a temporary failure does, for the next attempt to resume.
// Refused, contradicting or out of space, it discards it: retrying the same
// stream cannot help, and a full disk is not left full.
func KeepsPartial(err error) bool { return KindOf(err) == KindTemporary }
