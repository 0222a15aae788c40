package replicaview

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/storage"
)

// Replaceable checks, changing nothing, that Replace may put a dataset at
// the view's path: it is absent (false) or ferry's view (true); anything
// else is KindConflict.
func (v View) Replaceable(op string) (exists bool, err error) {
	p := v.Path()
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, storage.Wrap(err, storage.KindTemporary, op, v.Dataset, "")
	case !fi.IsDir() || !IsView(p):
		return true, storage.Errorf(storage.KindConflict, op, v.Dataset, "",
			"move "+p+" out of the way or restore to another dataset; ferry never overwrites a dataset",
			"%s exists and is not ferry's view of the restored replica", p)
	}
	return true, nil
}

// Replace puts built (a finished tree on the root's filesystem) at the
// view's path, which must be absent or ferry's view: a view is swapped out
// in one renameat2(RENAME_EXCHANGE), so a reader sees the replica's view or
// the restored dataset, never neither, and the old view is then removed.
// Anything else at the path is KindConflict and nothing changes.
func (v View) Replace(op, built string) error {
	p := v.Path()
	exists, err := v.Replaceable(op)
	switch {
	case err != nil:
		return err
	case !exists:
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return storage.Wrap(err, storage.KindTemporary, op, v.Dataset, "")
		}
		if err := os.Rename(built, p); err != nil {
			return storage.Wrap(err, storage.KindTemporary, op, v.Dataset, "")
		}
		return syncDir(filepath.Dir(p))
	}
	if err := unix.Renameat2(unix.AT_FDCWD, built, unix.AT_FDCWD, p, unix.RENAME_EXCHANGE); err != nil {
		return storage.Wrap(err, storage.KindTemporary, op, v.Dataset, "")
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return storage.Wrap(err, storage.KindTemporary, op, v.Dataset, "")
	}
	// built now holds the old view: ferry's symlinks and marker only.
	if err := os.Chmod(built, 0o755); err != nil {
		return storage.Wrap(err, storage.KindTemporary, op, v.Dataset, "")
	}
	return storage.Wrap(os.RemoveAll(built), storage.KindTemporary, op, v.Dataset, "")
}
