package dir

import (
	"context"
	"path/filepath"

	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/metafile"
)

// Marks live in <root>/.ferry/marks/<escaped dataset>/<mark>, each file
// holding the name of the snapshot it points at.
func (b *Backend) marksDir(ds string) string {
	return filepath.Join(b.root, storage.MetaDir, "marks", storage.EscapeDataset(ds))
}

// SetMark implements storage.Backend.
func (b *Backend) SetMark(ctx context.Context, ds, mark, snapshot string) error {
	const op = "set mark"
	if err := storage.CheckDataset(op, ds); err != nil {
		return err
	}
	if err := storage.CheckSnapshotName(op, ds, mark); err != nil {
		return err
	}
	if _, err := b.mustMeta(op, ds, snapshot); err != nil {
		return err
	}
	return storage.Wrap(metafile.SetMark(b.marksDir(ds), mark, snapshot), storage.KindTemporary, op, ds, snapshot)
}

// Marks implements storage.Backend.
func (b *Backend) Marks(ctx context.Context, ds string) (map[string]string, error) {
	const op = "list marks"
	if err := storage.CheckDataset(op, ds); err != nil {
		return nil, err
	}
	marks, err := metafile.ReadMarks(b.marksDir(ds))
	return marks, storage.Wrap(err, storage.KindTemporary, op, ds, "")
}
