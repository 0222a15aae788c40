// Receive: the checks before a receive and the decision to resume a
// staged partial or start over; the stream itself is read in receive_stream.go.

package dir

import (
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/logging"
	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/metafile"
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

	if m, ok, err := b.loadMeta(ds, name); err != nil {
		return storage.Snapshot{}, storage.Wrap(err, storage.KindConflict, op, ds, name)
	} else if ok {
		return b.receivedAlready(ctx, op, req, m)
	}
	var parent *meta
	if req.Parent != "" {
		if parent, err = b.mustMeta(op, ds, req.Parent); err != nil {
			return storage.Snapshot{}, storage.BaseNotFound(err, req.Parent)
		}
		if what, damaged, err := b.modificationOf(ds, req.Parent, true); err != nil {
			return storage.Snapshot{}, storage.Wrap(err, storage.KindTemporary, op, ds, name)
		} else if what != "" {
			return storage.Snapshot{}, b.damagedErr(op, ds, req.Parent, what, damaged)
		}
	}
	if a := b.foreignAt(ds, name); a != nil {
		return storage.Snapshot{}, a.Err(op)
	}
	if err := b.view(ds).Check(op); err != nil {
		return storage.Snapshot{}, err
	}

	rx := &receiver{
		b: b, ctx: ctx, req: req, s: s, parent: parent,
		dir: filepath.Join(b.stagingDir(ds), name),
		buf: make([]byte, 1<<20), h: sha256.New(),
	}
	rx.tree = filepath.Join(rx.dir, stTree)
	rx.tmp = filepath.Join(rx.dir, stTmp)

	held, info, ck := b.heldPartial(ds, name)
	parentGUID := ""
	if parent != nil {
		parentGUID = parent.GUID
	}
	continues, err := storage.CheckResume(op, req, storage.OriginOf(req, parentGUID), s.Position(), held)
	if err != nil {
		return storage.Snapshot{}, err
	}
	if continues {
		rx.info, rx.ck = info, ck
	} else if err := b.discardStaging(ds, name); err != nil {
		return storage.Snapshot{}, storage.Wrap(err, storage.KindTemporary, op, ds, name)
	}

	snap, err := rx.run()
	if err != nil {
		err = storage.Wrap(err, storage.KindTemporary, op, ds, name)
		if rx.treeFd > 0 {
			unix.Close(rx.treeFd)
		}
		if rx.tmpFd > 0 {
			unix.Close(rx.tmpFd)
		}
		if !storage.KeepsPartial(err) {
			derr := b.discardStaging(ds, name)
			if storage.KindOf(err) == storage.KindNoSpace {
				err = rx.noSpace(err)
			}
			if derr != nil {
				storage.Logger(ctx, b.log).Warn("discarding a failed receive", zap.String("dataset", ds), logging.Snapshot(name), zap.Error(derr))
			}
		}
		return storage.Snapshot{}, err
	}
	b.refreshView(ds, name, req.Parent)
	return snap, nil
}

// receivedAlready answers a receive of a name already committed: the
// snapshot being sent, unmodified since its commit, is the receive's
// result; anything else is a Conflict (modified, or storage.ReceivedAlready's).
func (b *Backend) receivedAlready(ctx context.Context, op string, req storage.ReceiveRequest, m *meta) (storage.Snapshot, error) {
	if what, err := b.modification(req.Dataset, req.Name, false); err != nil {
		return storage.Snapshot{}, storage.Wrap(err, storage.KindTemporary, op, req.Dataset, req.Name)
	} else if what != "" {
		return storage.Snapshot{}, b.modifiedErr(op, req.Dataset, req.Name, what)
	}
	return storage.ReceivedAlready(ctx, op, req, m.snapshot())
}

// heldPartial is the resumable partial receive of name in staging, if any:
// its stream header and its last checkpoint. State that cannot be read is
// not resumable (Partials says why).
func (b *Backend) heldPartial(ds, name string) (*storage.HeldPartial, *streamInfo, *checkpoint) {
	dir := filepath.Join(b.stagingDir(ds), name)
	var info streamInfo
	var ck checkpoint
	okInfo, err1 := metafile.ReadJSON(filepath.Join(dir, stStream), &info)
	okCk, err2 := metafile.ReadJSON(filepath.Join(dir, stCheckpoint), &ck)
	if !okInfo || !okCk || err1 != nil || err2 != nil {
		return nil, nil, nil
	}
	return &storage.HeldPartial{Origin: info.origin(), Position: ck.Position}, &info, &ck
}

// discardStaging removes a receive's staging directory and any tree or
// manifest of that name left in place without metadata.
func (b *Backend) discardStaging(ds, name string) error {
	var err error
	if stage := filepath.Join(b.stagingDir(ds), name); stagingForeign(stage) == "" {
		err = removeTree(stage)
	}
	os.Remove(b.stagingDir(ds))
	if _, ok, _ := b.loadMeta(ds, name); !ok && b.foreignAt(ds, name) == nil {
		err = errors.Join(err, removeTree(b.snapTree(ds, name)))
		if rerr := os.Remove(b.manifestPath(ds, name)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		os.Remove(b.snapDir(ds))
	}
	return err
}
