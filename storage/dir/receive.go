// Receive: the checks before a receive and the decision to resume a
// staged partial or start over; the stream itself is read in receive_stream.go.

package dir

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
)

// Receive implements storage.Backend.
func (b *Backend) Receive(ctx context.Context, req storage.ReceiveRequest, s resume.Stream) (storage.Snapshot, error) {
	const op = "receive"
	ds, name := req.Dataset, req.Name
	unlock, err := b.locks.LockSnapshot(op, ds, name, req.Parent)
	if err != nil {
		return storage.Snapshot{}, err
	}
	defer unlock()

	if _, ok, err := b.loadMeta(ds, name); err != nil {
		return storage.Snapshot{}, storage.Wrap(err, storage.KindConflict, op, ds, name)
	} else if ok {
		return storage.Snapshot{}, storage.Errorf(storage.KindConflict, op, ds, name,
			"the target already holds a complete snapshot of that name; destroy it first if it is not the one being sent",
			"snapshot %q already exists on the target", name)
	}
	var parent *meta
	if req.Parent != "" {
		if parent, err = b.mustMeta(op, ds, req.Parent); err != nil {
			var se *storage.Error
			if errors.As(err, &se) && se.Kind == storage.KindNotFound {
				se.Err = fmt.Errorf("incremental base %q is not on the target: %w", req.Parent, se.Err)
				se.Fix = "send a full stream, or restore the base snapshot on the target"
			}
			return storage.Snapshot{}, err
		}
	}

	rx := &receiver{
		b: b, ctx: ctx, req: req, s: s, parent: parent,
		dir: filepath.Join(b.stagingDir(ds), name),
		buf: make([]byte, 1<<20), h: sha256.New(),
	}
	rx.tree = filepath.Join(rx.dir, stTree)
	rx.tmp = filepath.Join(rx.dir, stTmp)

	if req.Resume {
		var info streamInfo
		var ck checkpoint
		okInfo, err1 := loadJSON(filepath.Join(rx.dir, stStream), &info)
		okCk, err2 := loadJSON(filepath.Join(rx.dir, stCheckpoint), &ck)
		if err := errors.Join(err1, err2); err != nil {
			b.discardStaging(ds, name)
			return storage.Snapshot{}, storage.Wrap(err, storage.KindInvalid, op, ds, name)
		}
		switch pos := s.Position(); {
		case okInfo && okCk:
			if pos.Offset != ck.Position.Offset || !bytes.Equal(pos.HashState, ck.Position.HashState) {
				return storage.Snapshot{}, storage.Errorf(storage.KindInvalid, op, ds, name,
					"resume from the partial's position, or receive without resume",
					"stream starts at offset %d but the partial receive is durable up to offset %d", pos.Offset, ck.Position.Offset)
			}
			if info.TargetParent != req.Parent {
				return storage.Snapshot{}, storage.Errorf(storage.KindInvalid, op, ds, name, "receive without resume",
					"the partial receive was based on %q, not %q", info.TargetParent, req.Parent)
			}
			rx.info, rx.ck = &info, &ck
		case pos.Offset == 0:
			// Nothing durable to resume: start over.
			if err := b.discardStaging(ds, name); err != nil {
				return storage.Snapshot{}, storage.Wrap(err, storage.KindTemporary, op, ds, name)
			}
		default:
			return storage.Snapshot{}, storage.Errorf(storage.KindInvalid, op, ds, name, "receive from offset 0 without resume",
				"stream starts at offset %d but there is no resumable partial receive", pos.Offset)
		}
	} else if err := b.discardStaging(ds, name); err != nil {
		return storage.Snapshot{}, storage.Wrap(err, storage.KindTemporary, op, ds, name)
	}

	snap, err := rx.run()
	if err != nil {
		err = storage.Wrap(err, storage.KindTemporary, op, ds, name)
		switch storage.KindOf(err) {
		case storage.KindTemporary, storage.KindNoSpace:
			// Kept as a partial: resumable or discarded by the workflow.
		default:
			// Refused: retrying the same stream fails again.
			b.discardStaging(ds, name)
		}
		if rx.treeFd > 0 {
			unix.Close(rx.treeFd)
		}
		if rx.tmpFd > 0 {
			unix.Close(rx.tmpFd)
		}
		return storage.Snapshot{}, err
	}
	return snap, nil
}

// discardStaging removes a receive's staging directory and any tree or
// manifest of that name left in place without metadata.
func (b *Backend) discardStaging(ds, name string) error {
	err := removeTree(filepath.Join(b.stagingDir(ds), name))
	os.Remove(b.stagingDir(ds))
	if _, ok, _ := b.loadMeta(ds, name); !ok {
		err = errors.Join(err, removeTree(b.snapTree(ds, name)))
		if rerr := os.Remove(b.manifestPath(ds, name)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		os.Remove(b.snapDir(ds))
	}
	return err
}
