package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// CheckNewDatasetUnder is CheckNewDataset for a backend whose datasets are
// paths under root: the dataset is checked, then neither a path at
// <root>/<dataset> nor any complete snapshot listed for it may exist.
func CheckNewDatasetUnder(ctx context.Context, root, dataset string, list func(context.Context, string) ([]Snapshot, error)) error {
	const op = "restore into"
	if err := CheckDataset(op, dataset); err != nil {
		return err
	}
	snaps, err := list(ctx, dataset)
	if err != nil {
		return err
	}
	return CheckNewPath(op, root, dataset, len(snaps))
}

// CheckNewPath is the path half of CheckNewDataset, shared by the backends:
// anything at <root>/<dataset> (even a dangling symlink) means the dataset
// exists; snapshots says how many complete snapshots ferry holds for it.
func CheckNewPath(op, root, dataset string, snapshots int) error {
	if err := CheckDataset(op, dataset); err != nil {
		return err
	}
	p := filepath.Join(root, filepath.FromSlash(dataset))
	_, err := os.Lstat(p)
	switch {
	case err == nil:
		return Errorf(KindConflict, op, dataset, "",
			"restore to a dataset that does not exist yet (another --to HOST:DATASET), or move "+p+" out of the way; ferry never overwrites a dataset",
			"dataset %s already exists at %s", dataset, p)
	case !errors.Is(err, fs.ErrNotExist):
		return Wrap(err, KindTemporary, op, dataset, "")
	case snapshots > 0:
		return Errorf(KindConflict, op, dataset, "",
			fmt.Sprintf("restore to a dataset ferry holds nothing for (another --to HOST:DATASET), or remove its snapshots under %s", filepath.Join(root, MetaDir)),
			"dataset %s has no directory at %s but ferry holds %d snapshot(s) of it", dataset, p, snapshots)
	}
	return nil
}

// SentGUID is the identity a backend's stream of snapshot s carries, which
// the receiving side records as its ReceivedGUID: btrfs sends a received
// subvolume under its received_uuid (the original's), dir under the
// snapshot's own GUID.
func SentGUID(kind string, s Snapshot) string {
	if kind == "btrfs" && s.ReceivedGUID != "" {
		return s.ReceivedGUID
	}
	return s.GUID
}
