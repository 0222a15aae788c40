package dir

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/metafile"
)

func newHash() hash.Hash { return sha256.New() }

// Partials implements storage.Backend. It reports, for the dataset:
//   - receives that did not finish (.ferry/staging/<dataset>/<name>), with
//     Resume set when a checkpoint exists (a staging entry holding anything
//     else is foreign: Anomalies);
//   - snapshot creations that did not finish (.ferry/tmp/<dataset>/<name>);
//   - manifests (with or without their tree) in place without metadata: an
//     interrupted commit or destroy. A tree with neither is foreign
//     (Anomalies).
func (b *Backend) Partials(ctx context.Context, ds string) ([]storage.Partial, error) {
	const op = "list partials"
	if err := storage.CheckDataset(op, ds); err != nil {
		return nil, err
	}
	var out []storage.Partial
	names, err := readDirNames(b.stagingDir(ds))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, storage.Wrap(err, storage.KindTemporary, op, ds, "")
	}
	for _, n := range names {
		dir := filepath.Join(b.stagingDir(ds), n)
		if stagingForeign(dir) != "" {
			continue // not ferry's: Anomalies reports it
		}
		p := storage.Partial{Dataset: ds, Name: n, ID: b.rel(dir)}
		var info streamInfo
		var ck checkpoint
		okInfo, err1 := metafile.ReadJSON(filepath.Join(dir, stStream), &info)
		okCk, err2 := metafile.ReadJSON(filepath.Join(dir, stCheckpoint), &ck)
		switch {
		case errors.Join(err1, err2) != nil:
			p.Reason = fmt.Sprintf("interrupted receive with unreadable state (%v)", errors.Join(err1, err2))
		case !okInfo:
			p.Reason = "interrupted receive before the stream header was stored"
		case !okCk:
			p.SourceGUID, p.ParentGUID = info.GUID, info.ParentGUID
			p.Reason = "interrupted receive before its first checkpoint: not resumable"
		default:
			p.SourceGUID, p.ParentGUID = info.GUID, info.ParentGUID
			pos := ck.Position
			p.Resume = &pos
			p.Reason = fmt.Sprintf("interrupted receive: %d entries durable, resumable at stream offset %d", ck.Entries, pos.Offset)
		}
		out = append(out, p)
	}
	names, err = readDirNames(b.tmpDir(ds))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, storage.Wrap(err, storage.KindTemporary, op, ds, "")
	}
	for _, n := range names {
		out = append(out, storage.Partial{Dataset: ds, Name: n, ID: b.rel(filepath.Join(b.tmpDir(ds), n)),
			Reason: "interrupted snapshot creation (temporary copy)"})
	}
	names, err = readDirNames(b.snapDir(ds))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, storage.Wrap(err, storage.KindTemporary, op, ds, "")
	}
	seen := map[string]bool{}
	for _, n := range names {
		name := strings.TrimSuffix(n, ".manifest")
		if strings.HasPrefix(n, ".") || strings.HasSuffix(n, ".meta.json") || strings.HasSuffix(n, ".tmp") || seen[name] {
			continue
		}
		seen[name] = true
		if _, err := os.Lstat(b.metaPath(ds, name)); err == nil {
			continue
		}
		if b.foreignAt(ds, name) != nil {
			continue // not ferry's: Anomalies reports it
		}
		out = append(out, storage.Partial{Dataset: ds, Name: name, ID: b.rel(b.snapTree(ds, name)),
			Reason: "snapshot without metadata (interrupted commit or destroy)"})
	}
	return out, nil
}

// DiscardPartial implements storage.Backend. It only removes what Partials
// reports; a complete snapshot is never touched.
func (b *Backend) DiscardPartial(ctx context.Context, p storage.Partial) error {
	const op = "discard partial"
	if err := storage.CheckDataset(op, p.Dataset); err != nil {
		return err
	}
	abs := filepath.Join(b.root, filepath.FromSlash(p.ID))
	parent, name := filepath.Dir(abs), filepath.Base(abs)
	if filepath.Clean(abs) != abs || storage.CheckSnapshotName(op, p.Dataset, name) != nil {
		return storage.Errorf(storage.KindInvalid, op, p.Dataset, p.Name, "", "%q is not a partial of this backend", p.ID)
	}
	unlock, err := b.locks.Lock(op, p.Dataset)
	if err != nil {
		return err
	}
	defer unlock()
	switch parent {
	case b.stagingDir(p.Dataset), b.tmpDir(p.Dataset):
		if what := stagingForeign(abs); what != "" && parent == b.stagingDir(p.Dataset) {
			a := storage.Anomaly{Dataset: p.Dataset, Kind: storage.Foreign, Name: name, ID: p.ID, What: what}
			return a.Err(op)
		}
		err = removeTree(abs)
		os.Remove(parent)
	case b.snapDir(p.Dataset):
		if _, ok, _ := b.loadMeta(p.Dataset, name); ok {
			return storage.Errorf(storage.KindConflict, op, p.Dataset, name, "use DestroySnapshot for complete snapshots", "%q is a complete snapshot", name)
		}
		if a := b.foreignAt(p.Dataset, name); a != nil {
			return a.Err(op)
		}
		err = removeTree(abs)
		if rerr := os.Remove(b.manifestPath(p.Dataset, name)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		os.Remove(parent)
	default:
		return storage.Errorf(storage.KindInvalid, op, p.Dataset, p.Name, "", "%q is not a partial of dataset %q", p.ID, p.Dataset)
	}
	return storage.Wrap(err, storage.KindTemporary, op, p.Dataset, name)
}
