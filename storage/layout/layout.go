// Package layout is the part of a backend's root that belongs to ferry,
// the same for every backend:
//
//	<root>/.ferry/snapshots/<dataset>/  complete snapshots and their metadata
//	<root>/.ferry/staging/<dataset>/    receives in progress (partials)
//	<root>/.ferry/marks/<dataset>/      one file per mark, holding a snapshot name
//	<root>/.ferry/tmp/<dataset>/        a backend's scratch space (dir: snapshot copies)
//	<root>/.ferry/datasets/<dataset>.json  a backend's record of the dataset (dir: identity, sequence)
//
// where <dataset> is storage.EscapeDataset of the dataset, one path
// component. What each backend keeps inside a snapshot's or a receive's
// entry is its own (docs/storage.md).
package layout

import (
	"os"
	"path/filepath"

	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/metafile"
)

// The directories under storage.MetaDir.
const (
	Snapshots = "snapshots"
	Staging   = "staging"
	Marks     = "marks"
	Tmp       = "tmp"
	Datasets  = "datasets"
)

// Layout is the .ferry tree of one backend root.
type Layout struct {
	// Root is the backend's root (absolute, symlinks resolved).
	Root string
}

// Dir is <root>/.ferry/<area>/<escaped dataset>.
func (l Layout) Dir(area, dataset string) string {
	return filepath.Join(l.Root, storage.MetaDir, area, storage.EscapeDataset(dataset))
}

// SnapshotsDir is where the dataset's complete snapshots live.
func (l Layout) SnapshotsDir(dataset string) string { return l.Dir(Snapshots, dataset) }

// StagingDir is where the dataset's receives in progress live.
func (l Layout) StagingDir(dataset string) string { return l.Dir(Staging, dataset) }

// MarksDir is where the dataset's marks live.
func (l Layout) MarksDir(dataset string) string { return l.Dir(Marks, dataset) }

// TmpDir is the dataset's scratch space.
func (l Layout) TmpDir(dataset string) string { return l.Dir(Tmp, dataset) }

// DatasetRecord is the file a backend keeps about a dataset beyond its
// snapshots.
func (l Layout) DatasetRecord(dataset string) string { return l.Dir(Datasets, dataset) + ".json" }

// MkdirAll creates p, a directory under <root>/.ferry, with its missing
// parents below .ferry, but never .ferry or the root themselves: those are
// made only when the worker opens the root, so a root whose disk was
// unmounted under a running worker is refused (NotFound) instead of
// growing a new tree, and replicas, on the disk beneath it.
func (l Layout) MkdirAll(p string) error {
	meta := filepath.Join(l.Root, storage.MetaDir)
	if fi, err := os.Lstat(meta); err != nil || !fi.IsDir() {
		return storage.Errorf(storage.KindNotFound, "create "+l.Rel(p), "", "",
			"mount the filesystem that holds the root again, then restart `ferry worker`; ferry creates .ferry only when it starts on an existing root",
			"%s is gone, so the root %s is not the filesystem the worker started on (unmounted?); ferry does not recreate it", meta, l.Root)
	}
	return os.MkdirAll(p, 0o700)
}

// Rel is p relative to the root with forward slashes, for Partial IDs and
// messages; p itself when it is not under the root.
func (l Layout) Rel(p string) string {
	r, err := filepath.Rel(l.Root, p)
	if err != nil {
		return p
	}
	return filepath.ToSlash(r)
}

// SetMark records that mark points at snapshot in dataset, after checking
// the names and, through exists, that the snapshot is a complete one (a
// backend's own NotFound error otherwise).
func (l Layout) SetMark(dataset, mark, snapshot string, exists func() error) error {
	const op = "set mark"
	if err := storage.CheckDataset(op, dataset); err != nil {
		return err
	}
	if err := storage.CheckSnapshotName(op, dataset, mark); err != nil {
		return err
	}
	if err := storage.CheckSnapshotName(op, dataset, snapshot); err != nil {
		return err
	}
	if err := exists(); err != nil {
		return err
	}
	if err := l.MkdirAll(l.MarksDir(dataset)); err != nil {
		return storage.Wrap(err, storage.KindTemporary, op, dataset, snapshot)
	}
	return storage.Wrap(metafile.SetMark(l.MarksDir(dataset), mark, snapshot), storage.KindTemporary, op, dataset, snapshot)
}

// ReadMarks returns the dataset's marks, mark name -> snapshot name.
func (l Layout) ReadMarks(dataset string) (map[string]string, error) {
	const op = "list marks"
	if err := storage.CheckDataset(op, dataset); err != nil {
		return nil, err
	}
	marks, err := metafile.ReadMarks(l.MarksDir(dataset))
	return marks, storage.Wrap(err, storage.KindTemporary, op, dataset, "")
}
