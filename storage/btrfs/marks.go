package btrfs

import "context"

// Marks live in the shared layout (storage/layout): one file per mark in
// <root>/.ferry/marks/<escaped dataset>/, holding the snapshot's name.

// SetMark implements storage.Backend.
func (b *Backend) SetMark(ctx context.Context, ds, mark, snapshot string) error {
	return b.lay.SetMark(ds, mark, snapshot, func() error {
		_, err := b.complete(ctx, "set mark", ds, snapshot)
		return err
	})
}

// Marks implements storage.Backend.
func (b *Backend) Marks(ctx context.Context, ds string) (map[string]string, error) {
	return b.lay.ReadMarks(ds)
}
