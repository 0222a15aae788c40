package dir

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/google/uuid"

	"github.com/ferry-nas/ferry/storage/metafile"
)

// datasetRecord is .ferry/datasets/<ds>.json: what ferry keeps about a
// dataset beyond its snapshots. UUID is the dataset's identity (what a
// target records as the source dataset of a snapshot it received); Seq is
// the last sequence number given to a snapshot made or received here, so
// that snapshots are ordered by it and not by a clock that can step back.
type datasetRecord struct {
	Version int    `json:"version"`
	Dataset string `json:"dataset"`
	UUID    string `json:"uuid"`
	Seq     uint64 `json:"seq"`
	// Restored is the snapshot a restore made this dataset live from.
	Restored string `json:"restored,omitempty"`
}

func (b *Backend) datasetPath(ds string) string { return b.lay.DatasetRecord(ds) }

// loadDataset reads the dataset's record; a dataset ferry never recorded
// gets a new one (not yet written).
func (b *Backend) loadDataset(ds string) (*datasetRecord, error) {
	var r datasetRecord
	found, err := metafile.ReadJSON(b.datasetPath(ds), &r)
	switch {
	case err == nil && !found:
		return &datasetRecord{Version: 1, Dataset: ds, UUID: uuid.NewString()}, nil
	case err != nil && !errors.Is(err, metafile.ErrCorrupt):
		return nil, err
	}
	if err != nil || r.UUID == "" {
		return nil, fmt.Errorf("corrupt dataset record %s (%v): move it aside and the dataset gets a new identity (its replicas then count as another source's)", b.datasetPath(ds), err)
	}
	return &r, nil
}

// nextSeq assigns the next sequence number of the dataset, above every
// snapshot it holds (even if the record was lost), and makes it durable
// before the snapshot that carries it is committed. The caller holds the
// dataset's lock.
func (b *Backend) nextSeq(ds string) (*datasetRecord, error) {
	r, err := b.loadDataset(ds)
	if err != nil {
		return nil, err
	}
	metas, err := b.listMetas(ds)
	if err != nil {
		return nil, err
	}
	for _, m := range metas {
		r.Seq = max(r.Seq, m.Seq)
	}
	r.Seq++
	if err := b.lay.MkdirAll(filepath.Dir(b.datasetPath(ds))); err != nil {
		return nil, err
	}
	if err := metafile.WriteJSON(b.datasetPath(ds), r); err != nil {
		return nil, err
	}
	return r, nil
}
