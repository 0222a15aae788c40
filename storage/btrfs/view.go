package btrfs

import (
	"context"

	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/storage/replicaview"
)

// view is the dataset's replica view: <root>/<dataset>/<name> -> its
// read-only subvolume.
func (b *Backend) view(ds string) replicaview.View {
	return replicaview.View{Root: b.root, Dataset: ds, Target: func(name string) string { return b.lay.Rel(b.subvolPath(ds, name)) }}
}

// syncView shows the dataset's complete snapshots in its view, leaving out
// `except` (one about to be destroyed). The caller holds the dataset's lock.
func (b *Backend) syncView(ctx context.Context, ds, except string) error {
	snaps, err := b.ListSnapshots(ctx, ds)
	if err != nil {
		return err
	}
	kept := snaps[:0]
	for _, s := range snaps {
		if s.Name != except {
			kept = append(kept, s)
		}
	}
	skipped, err := b.view(ds).SyncSnapshots(kept)
	if len(skipped) > 0 {
		b.log.Warn("replica view: entries held by something ferry did not make were left alone",
			zap.String("dataset", ds), zap.String("path", b.view(ds).Path()), zap.Strings("entries", skipped))
	}
	return err
}

// refreshView is syncView after a commit, where the snapshot is already
// safe: a failure is logged and repaired by the next commit, destroy or mark.
func (b *Backend) refreshView(ctx context.Context, ds string) {
	if err := b.syncView(context.WithoutCancel(ctx), ds, ""); err != nil {
		b.log.Warn("replica view not updated; the next receive, prune or mark repairs it",
			zap.String("dataset", ds), zap.String("path", b.view(ds).Path()), zap.Error(err))
	}
}

// refuseView is the Conflict of snapshotting a replica's view as if it
// were a live dataset.
func (b *Backend) refuseView(op, ds string) error { return replicaview.Refuse(op, b.root, ds) }
