package btrfs

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ferry-nas/ferry/storage"
)

// Marks live in <root>/.ferry/marks/<escaped dataset>/<mark>, each file
// holding the name of the snapshot it points at (as in the dir backend).

// SetMark implements storage.Backend.
func (b *Backend) SetMark(ctx context.Context, ds, mark, snapshot string) error {
	const op = "set mark"
	if err := checkDataset(op, ds); err != nil {
		return err
	}
	if err := checkName(op, ds, mark); err != nil {
		return err
	}
	if err := checkName(op, ds, snapshot); err != nil {
		return err
	}
	if _, err := b.complete(ctx, op, ds, snapshot); err != nil {
		return err
	}
	if err := os.MkdirAll(b.marksDir(ds), 0o700); err != nil {
		return classify(err, storage.KindTemporary, op, ds, snapshot)
	}
	return classify(writeFileAtomic(filepath.Join(b.marksDir(ds), mark), []byte(snapshot+"\n")), storage.KindTemporary, op, ds, snapshot)
}

// Marks implements storage.Backend.
func (b *Backend) Marks(ctx context.Context, ds string) (map[string]string, error) {
	const op = "list marks"
	if err := checkDataset(op, ds); err != nil {
		return nil, err
	}
	out := map[string]string{}
	entries, err := os.ReadDir(b.marksDir(ds))
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, classify(err, storage.KindTemporary, op, ds, "")
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(b.marksDir(ds), e.Name()))
		if err != nil {
			return nil, classify(err, storage.KindTemporary, op, ds, "")
		}
		out[e.Name()] = strings.TrimSpace(string(data))
	}
	return out, nil
}
