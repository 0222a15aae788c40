// A restore's last step: the received replica becomes a live dataset.

package zfs

import (
	"context"
	"strings"

	"github.com/ferry-nas/ferry/storage"
)

// CheckNewDataset implements storage.Backend: the zfs dataset
// <root>/<dataset> must not exist.
func (b *Backend) CheckNewDataset(ctx context.Context, dataset string) error {
	const op = "restore into"
	if err := checkNames(op, dataset); err != nil {
		return err
	}
	_, exists, err := b.snapshots(ctx, b.full(dataset))
	if err != nil {
		return err
	}
	if exists {
		where := ""
		if out, err := run(ctx, b.zfs, nil, "get", "-H", "-o", "value", "mountpoint", b.full(dataset)); err == nil {
			where = " (mounted at " + strings.TrimSpace(out) + ")"
		}
		return storage.Errorf(storage.KindConflict, op, dataset, "",
			"restore to a dataset that does not exist yet (another --to HOST:DATASET), or rename "+b.full(dataset)+" out of the way; ferry never overwrites a dataset",
			"dataset %s already exists%s", b.full(dataset), where)
	}
	return nil
}

// Materialize implements storage.Backend: the full receive made the
// dataset with the snapshot as its only one, read-only and marked as a
// replica; it becomes live by lifting both and recording the snapshot in
// ferry:restored (which makes a retry a no-op). A dataset that is not such
// a replica is refused. Its path is its mountpoint.
func (b *Backend) Materialize(ctx context.Context, dataset, name string) (string, error) {
	const op = "materialize restore"
	if err := checkNames(op, dataset, name); err != nil {
		return "", err
	}
	unlock, err := b.locks.Lock(op, dataset)
	if err != nil {
		return "", err
	}
	defer unlock()
	s, _, _, err := b.find(ctx, op, dataset, name)
	if err != nil {
		return "", err
	}
	if s == nil || !s.ferrys() {
		return "", notFound(op, dataset, name)
	}
	fds := b.full(dataset)
	prop := func(name string) (string, error) {
		out, err := run(ctx, b.zfs, nil, "get", "-H", "-o", "value", name, fds)
		if err != nil {
			return "", classify(err, storage.KindTemporary, op, dataset, name, "")
		}
		return strings.TrimSpace(out), nil
	}
	replica, err := prop(propReplica)
	if err != nil {
		return "", err
	}
	restored, err := prop(propRestored)
	if err != nil {
		return "", err
	}
	switch {
	case replica == "on":
	case restored == name:
		return prop("mountpoint") // done before: a retry
	default:
		return "", storage.Errorf(storage.KindConflict, op, dataset, name,
			"restore to a dataset that does not exist yet; ferry never overwrites a dataset",
			"dataset %s is not a replica a restore received", fds)
	}
	if _, err := run(ctx, b.zfs, nil, "set", propRestored+"="+name, fds); err != nil {
		return "", classify(err, storage.KindTemporary, op, dataset, name, "")
	}
	if _, err := run(ctx, b.zfs, nil, "set", "readonly=off", fds); err != nil {
		return "", classify(err, storage.KindTemporary, op, dataset, name, "")
	}
	if _, err := run(ctx, b.zfs, nil, "inherit", propReplica, fds); err != nil {
		return "", classify(err, storage.KindTemporary, op, dataset, name, "")
	}
	return prop("mountpoint")
}

// propRestored, on a dataset a restore made live: the snapshot it came from.
const propRestored = "ferry:restored"
