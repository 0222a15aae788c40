package dir

import (
	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/replicaview"
)

// view is the dataset's replica view: <root>/<dataset>/<name> -> its tree.
func (b *Backend) view(ds string) replicaview.View {
	return replicaview.View{Root: b.root, Dataset: ds, Target: func(name string) string { return b.rel(b.snapTree(ds, name)) }}
}

// syncView shows the dataset's intact snapshots in its view, leaving out
// `except` (one about to be destroyed) and taking those in `fresh` as
// intact unchecked (scanFresh). The caller holds the dataset's lock.
func (b *Backend) syncView(ds, except string, fresh ...string) error {
	metas, _, err := b.scanFresh(ds, fresh...)
	if err != nil {
		return err
	}
	snaps := make([]storage.Snapshot, 0, len(metas))
	for _, m := range metas {
		if m.Name != except {
			snaps = append(snaps, m.snapshot())
		}
	}
	skipped, err := b.view(ds).SyncSnapshots(snaps)
	if len(skipped) > 0 {
		b.log.Warn("replica view: entries held by something ferry did not make were left alone",
			zap.String("dataset", ds), zap.String("path", b.view(ds).Path()), zap.Strings("entries", skipped))
	}
	return err
}

// refreshView is syncView after a receive's commit (fresh: the new
// snapshot and its base) or a mark, where the snapshot is already safe: a
// failure is logged and repaired by the next commit, destroy or mark.
func (b *Backend) refreshView(ds string, fresh ...string) {
	if err := b.syncView(ds, "", fresh...); err != nil {
		b.log.Warn("replica view not updated; the next receive, prune or mark repairs it",
			zap.String("dataset", ds), zap.String("path", b.view(ds).Path()), zap.Error(err))
	}
}
