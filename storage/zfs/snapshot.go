package zfs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/storage"
)

// find returns dataset's snapshot name (ferry's or not) and every snapshot.
func (b *Backend) find(ctx context.Context, op, dataset, name string) (*zsnap, []zsnap, bool, error) {
	snaps, exists, err := b.snapshots(ctx, b.full(dataset))
	if err != nil {
		return nil, nil, false, classify(err, storage.KindTemporary, op, dataset, name, "")
	}
	for i := range snaps {
		if snaps[i].name == name {
			return &snaps[i], snaps, exists, nil
		}
	}
	return nil, snaps, exists, nil
}

func notFound(op, dataset, name string) error {
	return storage.Errorf(storage.KindNotFound, op, dataset, name, "", "snapshot %s@%s not found", dataset, name)
}

func foreignSnapshot(op, dataset, name string) error {
	return storage.Errorf(storage.KindConflict, op, dataset, name,
		"rename or destroy that snapshot if it is not needed (ferry never touches snapshots it did not make)",
		"%s@%s is a snapshot ferry did not make", dataset, name)
}

// CreateSnapshot implements storage.Backend: `zfs snapshot` with ferry's
// properties set atomically with it.
func (b *Backend) CreateSnapshot(ctx context.Context, dataset, name string) (storage.Snapshot, error) {
	const op = "create snapshot"
	if err := checkNames(op, dataset, name); err != nil {
		return storage.Snapshot{}, err
	}
	unlock, err := b.locks.LockSnapshot(op, dataset, name)
	if err != nil {
		return storage.Snapshot{}, err
	}
	defer unlock()
	s, _, exists, err := b.find(ctx, op, dataset, name)
	switch {
	case err != nil:
		return storage.Snapshot{}, err
	case !exists:
		return storage.Snapshot{}, storage.Errorf(storage.KindNotFound, op, dataset, name, "create the dataset with `zfs create "+b.full(dataset)+"` or fix the job's dataset",
			"dataset %s does not exist", b.full(dataset))
	case s != nil && s.ferrys():
		return s.toSnapshot(dataset), nil
	case s != nil:
		return storage.Snapshot{}, foreignSnapshot(op, dataset, name)
	}
	guid, err := run(ctx, b.zfs, nil, "get", "-H", "-p", "-o", "value", "guid", b.full(dataset))
	if err != nil {
		return storage.Snapshot{}, classify(err, storage.KindTemporary, op, dataset, name, "")
	}
	if _, err := run(ctx, b.zfs, nil, "snapshot", "-o", propSnapshot+"=local", "-o", propDatasetGUID+"="+strings.TrimSpace(guid),
		b.full(dataset)+"@"+name); err != nil {
		return storage.Snapshot{}, classify(err, storage.KindTemporary, op, dataset, name, "")
	}
	s, _, _, err = b.find(ctx, op, dataset, name)
	if err != nil {
		return storage.Snapshot{}, err
	}
	if s == nil || !s.ferrys() {
		return storage.Snapshot{}, storage.Errorf(storage.KindTemporary, op, dataset, name, "", "zfs snapshot succeeded but %s@%s is not listed", dataset, name)
	}
	return s.toSnapshot(dataset), nil
}

// ListSnapshots implements storage.Backend: ferry's snapshots by createtxg.
func (b *Backend) ListSnapshots(ctx context.Context, dataset string) ([]storage.Snapshot, error) {
	const op = "list snapshots"
	if err := checkNames(op, dataset); err != nil {
		return nil, err
	}
	snaps, _, err := b.snapshots(ctx, b.full(dataset))
	if err != nil {
		return nil, classify(err, storage.KindTemporary, op, dataset, "", "")
	}
	out := []storage.Snapshot{}
	for _, s := range snaps {
		if s.ferrys() {
			out = append(out, s.toSnapshot(dataset))
		}
	}
	return b.withCursorBookmarks(ctx, dataset, snaps, out), nil
}

// DestroySnapshot implements storage.Backend. On a replica (a dataset
// ferry set read-only when it received it) whose newest snapshot this is,
// the head is rolled back to the snapshot before it, whose content the
// destroyed one was built on, so that the next incremental can be received
// (a read-only head holds nothing but the destroyed snapshot's content).
func (b *Backend) DestroySnapshot(ctx context.Context, dataset, name string) error {
	const op = "destroy snapshot"
	if err := checkNames(op, dataset, name); err != nil {
		return err
	}
	unlock, err := b.locks.LockSnapshot(op, dataset, name)
	if err != nil {
		return err
	}
	defer unlock()
	return b.destroy(ctx, op, dataset, name, false)
}

// destroy removes dataset@name; anyOwner also removes one ferry did not
// mark as its own (a receive's unrecorded leftover).
func (b *Backend) destroy(ctx context.Context, op, dataset, name string, anyOwner bool) error {
	s, snaps, _, err := b.find(ctx, op, dataset, name)
	if err != nil || s == nil {
		return err
	}
	if !s.ferrys() && !anyOwner {
		return foreignSnapshot(op, dataset, name)
	}
	if err := b.releaseOwn(ctx, op, dataset, name); err != nil {
		return err
	}
	fds := b.full(dataset)
	if n := len(snaps); n >= 2 && snaps[n-1].name == name && b.replicaHead(ctx, fds, name) {
		_, err = run(ctx, b.zfs, nil, "rollback", "-r", fds+"@"+snaps[n-2].name)
	} else {
		_, err = run(ctx, b.zfs, nil, "destroy", fds+"@"+name)
	}
	if err != nil {
		ce, ok := err.(*cmdError)
		if ok && ce.notFound() {
			return nil
		}
		return classify(err, storage.KindTemporary, op, dataset, name, "")
	}
	return nil
}

// replicaHead reports whether fds is a replica ferry received (marked
// ferry:replica) whose read-only setting nobody turned off, so that its
// head holds nothing but its newest snapshot's content. (zfs-fuse reports
// a mounted read-only dataset as "off, temporary", so only an explicit
// local "off" counts as turned off.) Where the pool has written@, a head
// written since its newest snapshot is never rolled back.
func (b *Backend) replicaHead(ctx context.Context, fds, newest string) bool {
	out, err := run(ctx, b.zfs, nil, "get", "-H", "-o", "property,value,source", "readonly,"+propReplica, fds)
	if err != nil {
		return false
	}
	marked, off := false, false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 3 {
			continue
		}
		switch {
		case f[0] == propReplica && f[1] == "on" && f[2] == "local":
			marked = true
		case f[0] == "readonly" && f[1] == "off" && f[2] == "local":
			off = true
		}
	}
	if !marked || off {
		return false
	}
	if b.feat.Written {
		w, err := run(ctx, b.zfs, nil, "get", "-H", "-p", "-o", "value", "written@"+newest, fds)
		if err != nil || strings.TrimSpace(w) != "0" {
			return false
		}
	}
	return true
}

// SetMark implements storage.Backend: a user property ferry:mark:<mark> on
// the dataset, holding the snapshot's name.
func (b *Backend) SetMark(ctx context.Context, dataset, mark, snapshot string) error {
	const op = "set mark"
	if err := checkNames(op, dataset, snapshot); err != nil {
		return err
	}
	if err := storage.CheckSnapshotName(op, dataset, mark); err != nil {
		return err
	}
	unlock, err := b.locks.Lock(op, dataset)
	if err != nil {
		return err
	}
	defer unlock()
	s, _, _, err := b.find(ctx, op, dataset, snapshot)
	if err != nil {
		return err
	}
	if s == nil || !s.ferrys() {
		return notFound(op, dataset, snapshot)
	}
	// Hold the new snapshot, move the mark, then release the old one
	// (holds.go): a crash in between leaves an extra hold, never a mark on
	// a snapshot anyone could destroy.
	if err := b.holdMark(ctx, op, dataset, mark, snapshot); err != nil {
		return err
	}
	if _, err := run(ctx, b.zfs, nil, "set", markPrefix+escapeProp(mark)+"="+snapshot, b.full(dataset)); err != nil {
		return classify(err, storage.KindTemporary, op, dataset, snapshot, "")
	}
	b.markMoved(ctx, dataset, mark, snapshot)
	return nil
}

// Marks implements storage.Backend.
func (b *Backend) Marks(ctx context.Context, dataset string) (map[string]string, error) {
	const op = "read marks"
	if err := checkNames(op, dataset); err != nil {
		return nil, err
	}
	props, err := b.localUserProps(ctx, b.full(dataset), markPrefix)
	if err != nil {
		if ce, ok := err.(*cmdError); ok && ce.notFound() {
			return map[string]string{}, nil
		}
		return nil, classify(err, storage.KindTemporary, op, dataset, "", "")
	}
	out := map[string]string{}
	for k, v := range props {
		if mark, ok := unescapeProp(k); ok {
			out[mark] = v
		}
	}
	return out, nil
}

// ContentDigest implements storage.Backend over the snapshot's tree: its
// .zfs/snapshot directory where the filesystem has one, otherwise a
// temporary read-only clone (zfs-fuse has no .zfs), destroyed afterwards.
func (b *Backend) ContentDigest(ctx context.Context, dataset, name string) (string, error) {
	const op = "digest snapshot"
	if err := checkNames(op, dataset, name); err != nil {
		return "", err
	}
	s, _, _, err := b.find(ctx, op, dataset, name)
	if err != nil {
		return "", err
	}
	if s == nil || !s.ferrys() {
		return "", notFound(op, dataset, name)
	}
	if mp, err := b.mountpoint(ctx, b.full(dataset)); err == nil && mp != "" {
		dir := filepath.Join(mp, ".zfs", "snapshot", name)
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			d, err := storage.TreeDigest(dir, nil)
			return d, storage.Wrap(err, storage.KindTemporary, op, dataset, name)
		}
	}
	return b.digestClone(ctx, op, dataset, name)
}

func (b *Backend) mountpoint(ctx context.Context, fds string) (string, error) {
	out, err := run(ctx, b.zfs, nil, "get", "-H", "-o", "value", "mounted,mountpoint", fds)
	if err != nil {
		return "", err
	}
	lines := strings.Fields(out)
	if len(lines) != 2 || lines[0] != "yes" || !strings.HasPrefix(lines[1], "/") {
		return "", nil
	}
	return lines[1], nil
}

// digestClonePrefix names the temporary clones ContentDigest makes under
// the root; a worker that died while digesting leaves one, which Check
// does not remove (it may be another worker's).
const digestClonePrefix = ".ferry-digest-"

func (b *Backend) digestClone(ctx context.Context, op, dataset, name string) (string, error) {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	clone := b.root + "/" + digestClonePrefix + hex.EncodeToString(rnd[:])
	dir, err := os.MkdirTemp("", "ferry-zfs-digest-")
	if err != nil {
		return "", storage.Wrap(err, storage.KindTemporary, op, dataset, name)
	}
	defer os.Remove(dir)
	if _, err := run(ctx, b.zfs, nil, "clone", "-o", "readonly=on", "-o", "atime=off", "-o", "mountpoint="+dir,
		b.full(dataset)+"@"+name, clone); err != nil {
		return "", classify(err, storage.KindTemporary, op, dataset, name, "")
	}
	defer b.destroyClone(context.WithoutCancel(ctx), clone)
	d, err := storage.TreeDigest(dir, nil)
	return d, storage.Wrap(err, storage.KindTemporary, op, dataset, name)
}

// destroyClone destroys a digest clone, retrying while zfs-fuse still
// holds the just-unmounted dataset busy.
func (b *Backend) destroyClone(ctx context.Context, clone string) {
	var err error
	for range 40 {
		if _, err = run(ctx, b.zfs, nil, "destroy", clone); err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	storage.Logger(ctx, b.log).Warn("zfs: cannot destroy the digest clone: destroy it by hand", zap.String("clone", clone), zap.Error(err))
}
