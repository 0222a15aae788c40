package btrfs

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/metafile"
)

// Anomalies implements storage.Backend: snapshots whose subvolume changed
// after ferry committed them (modified), and entries of ferry's snapshot
// and staging areas that ferry did not make (foreign).
func (b *Backend) Anomalies(ctx context.Context, ds string) ([]storage.Anomaly, error) {
	const op = "list anomalies"
	if err := storage.CheckDataset(op, ds); err != nil {
		return nil, err
	}
	states, err := b.snapStates(ctx, ds)
	if err != nil {
		return nil, classify(err, storage.KindTemporary, op, ds, "")
	}
	var out []storage.Anomaly
	for _, st := range states {
		if !st.complete && st.class != classPartial {
			out = append(out, b.anomaly(ds, st))
		}
	}
	bases, err := b.stagingBases(ds)
	if err != nil {
		return nil, classify(err, storage.KindTemporary, op, ds, "")
	}
	for _, n := range bases {
		_, foreign, err := b.stagingPartial(ctx, ds, n)
		if err != nil {
			return nil, classify(err, storage.KindTemporary, op, ds, n)
		}
		if foreign != nil {
			out = append(out, *foreign)
		}
	}
	return out, nil
}

// receiveRecord is .ferry/staging/<ds>/<name>.json: written before a
// receive creates anything in staging, it is what makes what staging holds
// for that name ferry's own partial rather than a foreign item.
type receiveRecord struct {
	Version      int       `json:"version"`
	Dataset      string    `json:"dataset"`
	Name         string    `json:"name"`
	SourceGUID   string    `json:"source_guid,omitempty"`
	TargetParent string    `json:"target_parent,omitempty"`
	StartedAt    time.Time `json:"started_at"`
}

func (b *Backend) recordPath(ds, name string) string {
	return filepath.Join(b.stagingDir(ds), name+".json")
}

// writeReceiveRecord claims staging for the receive of req.Name.
func (b *Backend) writeReceiveRecord(req storage.ReceiveRequest) error {
	if err := b.lay.MkdirAll(b.stagingDir(req.Dataset)); err != nil {
		return err
	}
	data, err := json.Marshal(&receiveRecord{Version: 1, Dataset: req.Dataset, Name: req.Name,
		SourceGUID: req.SourceGUID, TargetParent: req.Parent, StartedAt: time.Now().UTC()})
	if err != nil {
		return err
	}
	return metafile.WriteAtomic(b.recordPath(req.Dataset, req.Name), data)
}

// loadReceiveRecord reads the record of a receive of name into ds; nil when
// there is none or it is not one ferry wrote for that receive.
func loadReceiveRecord(p, ds, name string) *receiveRecord {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	var r receiveRecord
	if json.Unmarshal(data, &r) != nil || r.Version < 1 || r.Dataset != ds || r.Name != name {
		return nil
	}
	return &r
}
