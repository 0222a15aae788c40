package storage

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"
)

// The answers every backend's Receive gives the same way.

// ErrSnapshotExists is the Conflict of a receive whose snapshot name the
// target already holds as a complete snapshot.
func ErrSnapshotExists(op, dataset, name string) *Error {
	return Errorf(KindConflict, op, dataset, name,
		"the target already holds a complete snapshot of that name; destroy it first if it is not the one being sent",
		"snapshot %q already exists on the target", name)
}

// ReceivedAlready is every backend's answer to a receive whose name the
// target already holds as the complete snapshot have: when have is the
// snapshot being sent (received from the same source identity, and from
// the same source dataset where both are known), an earlier attempt
// finished it and only its answer was lost (a server outage): the receive
// is done and returns have, as that attempt did. Anything else of that
// name is the Conflict, never overwritten.
func ReceivedAlready(ctx context.Context, op string, req ReceiveRequest, have Snapshot) (Snapshot, error) {
	same := req.SourceGUID != "" && have.ReceivedGUID == req.SourceGUID &&
		(req.SourceDatasetGUID == "" || have.DatasetGUID == "" || have.DatasetGUID == req.SourceDatasetGUID)
	if !same {
		return Snapshot{}, ErrSnapshotExists(op, req.Dataset, req.Name)
	}
	if l := Logger(ctx, nil); l != nil {
		l.Info("the snapshot being sent is already complete on the target (an earlier attempt received it; its answer was lost): nothing to receive",
			zap.String("dataset", req.Dataset), zap.String("snapshot", req.Name), zap.String("source_guid", req.SourceGUID))
	}
	return have, nil
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
