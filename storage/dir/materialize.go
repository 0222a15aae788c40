// A restore's last step: the received replica becomes a live dataset.

package dir

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"

	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/logging"

	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/metafile"
	"github.com/ferry-nas/ferry/storage/replicaview"
)

// CheckNewDataset implements storage.Backend.
func (b *Backend) CheckNewDataset(ctx context.Context, ds string) error {
	return storage.CheckNewDatasetUnder(ctx, b.root, ds, b.ListSnapshots)
}

// Materialize implements storage.Backend: a copy of the snapshot's tree
// built under .ferry/tmp from its manifest (reflinked where the filesystem
// can, else copied; never hard-linked to the snapshot, so edits stay out
// of it), with the snapshot's true modes, owners, xattrs, mtimes and hard
// links, then put at <root>/<ds> in place of the replica's view. The
// dataset's record remembers the snapshot, which makes a retry a no-op.
func (b *Backend) Materialize(ctx context.Context, ds, name string) (string, error) {
	const op = "materialize restore"
	if err := storage.CheckDataset(op, ds); err != nil {
		return "", err
	}
	if err := storage.CheckSnapshotName(op, ds, name); err != nil {
		return "", err
	}
	unlock, err := b.locks.Lock(op, ds)
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := b.mustMeta(op, ds, name); err != nil {
		return "", err
	}
	live := b.live(ds)
	rec, err := b.loadDataset(ds)
	if err != nil {
		return "", storage.Wrap(err, storage.KindTemporary, op, ds, name)
	}
	if fi, err := os.Lstat(live); err == nil && fi.IsDir() && !replicaview.IsView(live) && rec.Restored == name {
		return live, nil
	}
	if _, err := b.view(ds).Replaceable(op); err != nil {
		return "", err
	}
	if err := b.lay.MkdirAll(b.tmpDir(ds)); err != nil {
		return "", storage.Wrap(err, storage.KindTemporary, op, ds, name)
	}
	built := filepath.Join(b.tmpDir(ds), "restore-"+name)
	if err := removeTree(built); err != nil {
		return "", storage.Wrap(err, storage.KindTemporary, op, ds, name)
	}
	if err := b.copySnapshot(ctx, ds, name, built); err != nil {
		removeTree(built)
		return "", storage.Wrap(err, storage.KindTemporary, op, ds, name)
	}
	if err := b.view(ds).Replace(op, built); err != nil {
		removeTree(built)
		return "", err
	}
	rec.Restored = name
	if err := b.lay.MkdirAll(filepath.Dir(b.datasetPath(ds))); err != nil {
		return "", storage.Wrap(err, storage.KindTemporary, op, ds, name)
	}
	if err := metafile.WriteJSON(b.datasetPath(ds), rec); err != nil {
		return "", storage.Wrap(err, storage.KindTemporary, op, ds, name)
	}
	b.log.Info("restored dataset is live", zap.String("dataset", ds), logging.Snapshot(name), zap.String("path", live))
	return live, nil
}

// copySnapshot writes the snapshot's tree to dst (absent), durably.
func (b *Backend) copySnapshot(ctx context.Context, ds, name, dst string) error {
	man, err := openManifest(b.manifestPath(ds, name))
	if err != nil {
		return err
	}
	defer man.close()
	src := b.snapTree(ds, name)
	var dirs []*Entry
	buf := make([]byte, 1<<20)
	for e := man.take(); e != nil; e = man.take() {
		if err := ctx.Err(); err != nil {
			return err
		}
		from, to := filepath.Join(src, filepath.FromSlash(e.Path)), filepath.Join(dst, filepath.FromSlash(e.Path))
		switch e.Type {
		case typeDir:
			if err := os.Mkdir(to, 0o700); err != nil {
				return err
			}
			dirs = append(dirs, e)
			continue
		case typeFile:
			if e.HardLink != "" {
				if err := os.Link(filepath.Join(dst, filepath.FromSlash(e.HardLink)), to); err != nil {
					return err
				}
				continue
			}
			if err := b.copyFile(from, to, buf); err != nil {
				return err
			}
		case typeSymlink:
			if err := os.Symlink(e.Link, to); err != nil {
				return err
			}
		}
		if err := b.setMeta(e, from, to); err != nil {
			return err
		}
	}
	if man.err != nil {
		return man.err
	}
	// Directories last, deepest first: filling a directory moves its mtime.
	for _, e := range slices.Backward(dirs) {
		if err := b.setMeta(e, filepath.Join(src, filepath.FromSlash(e.Path)), filepath.Join(dst, filepath.FromSlash(e.Path))); err != nil {
			return err
		}
	}
	return syncFS(dst)
}

// setMeta gives to the entry's owner, xattrs (read from the snapshot's
// copy), true mode and mtime; chmod after chown, which clears setuid.
func (b *Backend) setMeta(e *Entry, from, to string) error {
	if err := b.own(to, e.UID, e.GID); err != nil {
		return err
	}
	xs, err := storage.ReadXattrs(from)
	if err != nil {
		return err
	}
	if len(xs) > 0 || e.Type == typeDir {
		if err := storage.SetXattrs(to, xs); err != nil {
			return err
		}
	}
	if e.Type != typeSymlink {
		if err := os.Chmod(to, storage.FileMode(e.Mode)); err != nil {
			return err
		}
	}
	return setTimes(to, e.Mtime, e.Mtime)
}

// copyFile clones from into a new file to, or copies it where the
// filesystem cannot clone.
func (b *Backend) copyFile(from, to string, buf []byte) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := ficlone(out, in); err != nil {
		if !reflinkFallback(err) {
			out.Close()
			return err
		}
		if _, err := io.CopyBuffer(out, in, buf); err != nil {
			out.Close()
			return err
		}
	}
	return errors.Join(out.Sync(), out.Close())
}
