package dir

import "context"

// Marks live in the shared layout (storage/layout): one file per mark in
// <root>/.ferry/marks/<escaped dataset>/, holding the snapshot's name.

// SetMark implements storage.Backend.
// A mark also repairs the replica view (a receive whose view update a
// crash cut short is marked right after), when nothing else holds the
// dataset.
func (b *Backend) SetMark(ctx context.Context, ds, mark, snapshot string) error {
	if err := b.lay.SetMark(ds, mark, snapshot, func() error {
		_, err := b.mustMeta("set mark", ds, snapshot)
		return err
	}); err != nil {
		return err
	}
	if b.view(ds).Shows(snapshot) {
		return nil
	}
	if unlock, err := b.locks.Lock("set mark", ds); err == nil {
		defer unlock()
		b.refreshView(ds)
	}
	return nil
}

// Marks implements storage.Backend.
func (b *Backend) Marks(ctx context.Context, ds string) (map[string]string, error) {
	return b.lay.ReadMarks(ds)
}
