// The start of an incremental receive: the staging tree in the base
// snapshot's shape.

package dir

import (
	"os"
	"path/filepath"

	"github.com/ferry-nas/ferry/storage"
)

// populate starts the staging tree: empty for a full receive; for an
// incremental, fresh directories and symlinks with the parent's metadata
// and hard links to the parent's (read-only, never modified) files.
func (rx *receiver) populate() error {
	if err := os.Mkdir(rx.tree, 0o700); err != nil {
		return err
	}
	if rx.parent == nil {
		return nil
	}
	man, err := openManifest(rx.b.manifestPath(rx.req.Dataset, rx.req.Parent))
	if err != nil {
		return err
	}
	defer man.close()
	ptree := rx.b.snapTree(rx.req.Dataset, rx.req.Parent)
	from, to := &dirCache{root: ptree}, &dirCache{root: rx.tree}
	defer from.close()
	defer to.close()
	for e := man.take(); e != nil; e = man.take() {
		if err := rx.ctx.Err(); err != nil {
			return err
		}
		dst := filepath.Join(rx.tree, filepath.FromSlash(e.Path))
		switch e.Type {
		case typeDir:
			if e.Path != "." {
				if err := os.Mkdir(dst, 0o700); err != nil {
					return err
				}
			}
		case typeFile:
			if err := linkAt(from, to, e.Path); err != nil {
				return err
			}
		case typeSymlink:
			if err := os.Symlink(e.Link, dst); err != nil {
				return err
			}
			if err := rx.b.own(dst, e.UID, e.GID); err != nil {
				return err
			}
			if err := rx.copyXattrs(e, ptree, dst); err != nil {
				return err
			}
			if err := setTimes(dst, e.Mtime, e.Mtime); err != nil {
				return err
			}
		}
	}
	if man.err != nil {
		return man.err
	}
	// Directory metadata last (deepest first would not matter for modes,
	// but creating children moves a directory's mtime).
	man2, err := openManifest(rx.b.manifestPath(rx.req.Dataset, rx.req.Parent))
	if err != nil {
		return err
	}
	defer man2.close()
	for e := man2.take(); e != nil; e = man2.take() {
		if e.Type != typeDir {
			continue
		}
		dst := filepath.Join(rx.tree, filepath.FromSlash(e.Path))
		if err := rx.b.own(dst, e.UID, e.GID); err != nil {
			return err
		}
		if err := rx.copyXattrs(e, ptree, dst); err != nil {
			return err
		}
		if err := os.Chmod(dst, storage.FileMode(rx.b.stagingDirMode(e.Mode))); err != nil {
			return err
		}
		if err := setTimes(dst, e.Mtime, e.Mtime); err != nil {
			return err
		}
	}
	return man2.err
}

// copyXattrs gives a populated directory or symlink exactly the xattrs of
// its copy in the base snapshot (its files are the base's, xattrs and all).
// A directory is set even without any: it may have inherited a default ACL
// from above .ferry; a symlink never inherits.
func (rx *receiver) copyXattrs(e *Entry, ptree, dst string) error {
	if e.Xattrs == "" && e.Type == typeSymlink {
		return nil
	}
	xs, err := storage.ReadXattrs(filepath.Join(ptree, filepath.FromSlash(e.Path)))
	if err != nil {
		return err
	}
	return rx.setXattrs(e.Path, dst, xs)
}
