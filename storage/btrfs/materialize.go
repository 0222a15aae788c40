// A restore's last step: the received replica becomes a live dataset.

package btrfs

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/logging"
	"github.com/ferry-nas/ferry/storage"
)

// CheckNewDataset implements storage.Backend.
func (b *Backend) CheckNewDataset(ctx context.Context, ds string) error {
	return storage.CheckNewDatasetUnder(ctx, b.root, ds, b.ListSnapshots)
}

// Materialize implements storage.Backend: a writable `btrfs subvolume
// snapshot` of the received one, made under .ferry/tmp and put at
// <root>/<ds> in place of the replica's view. btrfs records the received
// snapshot as the live subvolume's parent_uuid, which makes a retry a no-op.
func (b *Backend) Materialize(ctx context.Context, ds, name string) (string, error) {
	const op = "materialize restore"
	if err := storage.CheckDataset(op, ds); err != nil {
		return "", err
	}
	if err := storage.CheckSnapshotName(op, ds, name); err != nil {
		return "", err
	}
	unlock, err := b.locks.LockSnapshot(op, ds, name)
	if err != nil {
		return "", err
	}
	defer unlock()
	st, err := b.complete(ctx, op, ds, name)
	if err != nil {
		return "", err
	}
	live := b.live(ds)
	if ok, err := isSubvolume(live); err == nil && ok {
		if sv, err := b.show(ctx, live); err == nil && sv.ParentUUID == st.sv.UUID {
			return live, nil
		}
	}
	if _, err := b.view(ds).Replaceable(op); err != nil {
		return "", err
	}
	if err := b.lay.MkdirAll(b.lay.TmpDir(ds)); err != nil {
		return "", classify(err, storage.KindTemporary, op, ds, name)
	}
	built := filepath.Join(b.lay.TmpDir(ds), "restore-"+name)
	if _, err := os.Lstat(built); err == nil {
		if err := b.removeTree(ctx, built); err != nil {
			return "", classify(err, storage.KindTemporary, op, ds, name)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", classify(err, storage.KindTemporary, op, ds, name)
	}
	if _, err := b.run(ctx, "subvolume", "snapshot", b.subvolPath(ds, name), built); err != nil {
		return "", classify(err, storage.KindTemporary, op, ds, name)
	}
	if err := b.view(ds).Replace(op, built); err != nil {
		if rmErr := b.removeTree(ctx, built); rmErr != nil {
			b.log.Warn("could not remove the unused restore copy", zap.String("path", built), zap.Error(rmErr))
		}
		return "", err
	}
	b.log.Info("restored dataset is live", zap.String("dataset", ds), logging.Snapshot(name), zap.String("path", live))
	return live, nil
}
