// Snapshot metadata, listing and destroying; creating one is create.go.

package dir

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/metafile"
)

// meta is <name>.meta.json beside a snapshot's tree. Its presence is what
// makes a snapshot complete: it is written last, atomically.
type meta struct {
	Version      int       `json:"version"`
	Dataset      string    `json:"dataset"`
	Name         string    `json:"name"`
	GUID         string    `json:"guid"`
	ReceivedGUID string    `json:"received_guid,omitempty"`
	ParentGUID   string    `json:"parent_guid,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	// Digest is the manifest digest.
	Digest  string `json:"digest"`
	Entries int64  `json:"entries"`
	// Skipped lists (quoted, at most maxSkipped) the special files the
	// snapshot left out; SkippedCount counts all of them.
	Skipped      []string `json:"skipped,omitempty"`
	SkippedCount int      `json:"skipped_count,omitempty"`
	// Linked and Copied count how the files got into a local snapshot.
	Linked int64 `json:"linked,omitempty"`
	Copied int64 `json:"copied,omitempty"`
	// Rehashed counts the linked files read first: only their ctime had
	// changed since the previous snapshot.
	Rehashed int64 `json:"rehashed,omitempty"`
	// Seq is the dataset's sequence number given at commit (datasetRecord);
	// 0 for a snapshot committed before ferry kept one.
	Seq uint64 `json:"seq,omitempty"`
	// DatasetGUID is the dataset's identity for a local snapshot, the
	// source dataset's for a received one.
	DatasetGUID string `json:"dataset_guid,omitempty"`
}

const maxSkipped = 1000

func (m *meta) snapshot() storage.Snapshot {
	return storage.Snapshot{
		Dataset: m.Dataset, Name: m.Name, GUID: m.GUID, ReceivedGUID: m.ReceivedGUID,
		ParentGUID: m.ParentGUID, CreatedAt: m.CreatedAt, ReadOnly: true, Digest: m.Digest,
		Seq: m.Seq, DatasetGUID: m.DatasetGUID,
	}
}

// loadMeta reads a complete snapshot's metadata; ok is false when there is
// no complete snapshot of that name.
func (b *Backend) loadMeta(ds, name string) (*meta, bool, error) {
	var m meta
	if found, err := metafile.ReadJSON(b.metaPath(ds, name), &m); !found || err != nil {
		return nil, false, err
	}
	if fi, err := os.Lstat(b.snapTree(ds, name)); err != nil || !fi.IsDir() {
		return nil, false, fmt.Errorf("snapshot metadata %s has no tree beside it", b.metaPath(ds, name))
	}
	return &m, true, nil
}

func (b *Backend) mustMeta(op, ds, name string) (*meta, error) {
	m, ok, err := b.loadMeta(ds, name)
	if err != nil {
		return nil, storage.Wrap(err, storage.KindConflict, op, ds, name)
	}
	if !ok {
		return nil, storage.Errorf(storage.KindNotFound, op, ds, name, "", "no snapshot %q of dataset %q on this host", name, ds)
	}
	return m, nil
}

// commitMeta writes the metadata last, which makes the snapshot complete.
func (b *Backend) commitMeta(m *meta) error {
	return metafile.WriteJSON(b.metaPath(m.Dataset, m.Name), m)
}

// ListSnapshots implements storage.Backend: complete snapshots whose tree
// is as ferry committed it (see integrity.go), oldest first by sequence
// number.
func (b *Backend) ListSnapshots(ctx context.Context, ds string) ([]storage.Snapshot, error) {
	const op = "list snapshots"
	if err := storage.CheckDataset(op, ds); err != nil {
		return nil, err
	}
	metas, _, err := b.scan(ds)
	if err != nil {
		return nil, storage.Wrap(err, storage.KindTemporary, op, ds, "")
	}
	out := make([]storage.Snapshot, 0, len(metas))
	for _, m := range metas {
		out = append(out, m.snapshot())
	}
	return out, nil
}

// listMetas reads the metadata of every committed snapshot of the dataset,
// modified ones included and unchecked (for the sequence counter).
func (b *Backend) listMetas(ds string) ([]*meta, error) {
	names, err := readDirNames(b.snapDir(ds))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*meta
	for _, n := range names {
		name, ok := strings.CutSuffix(n, ".meta.json")
		if !ok || storage.CheckSnapshotName("", ds, name) != nil {
			continue
		}
		m, ok, err := b.loadMeta(ds, name)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, m)
		}
	}
	slices.SortStableFunc(out, compareMetas)
	return out, nil
}

// compareMetas orders snapshots by sequence number, which a clock stepped
// back cannot reorder. Snapshots committed before ferry kept one (Seq 0)
// are older than every numbered one and keep the order they always had
// among themselves: creation time, then name.
func compareMetas(a, b *meta) int {
	if c := cmp.Compare(a.Seq, b.Seq); c != 0 || a.Seq != 0 {
		return c
	}
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// DestroySnapshot implements storage.Backend. The metadata goes first, so a
// half-destroyed snapshot is never listed as complete.
func (b *Backend) DestroySnapshot(ctx context.Context, ds, name string) error {
	const op = "destroy snapshot"
	unlock, err := b.locks.LockSnapshot(op, ds, name)
	if err != nil {
		return err
	}
	defer unlock()
	if a := b.foreignAt(ds, name); a != nil {
		return a.Err(op)
	}
	// The view lets go of the snapshot before its files go, so no entry
	// ever dangles.
	if err := b.syncView(ds, name); err != nil {
		return storage.Wrap(err, storage.KindTemporary, op, ds, name)
	}
	return storage.Wrap(b.destroy(ds, name), storage.KindTemporary, op, ds, name)
}

func (b *Backend) destroy(ds, name string) error {
	if err := os.Remove(b.metaPath(ds, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := syncPath(b.snapDir(ds)); err != nil {
		return err
	}
	if err := removeTree(b.snapTree(ds, name)); err != nil {
		return err
	}
	if err := os.Remove(b.manifestPath(ds, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := b.removeInodes(ds, name); err != nil {
		return err
	}
	os.Remove(b.snapDir(ds)) // only if now empty
	return nil
}
