// The start of an incremental receive: the staging tree in the base
// snapshot's shape.

package dir

import (
	"context"
	"os"
	"path"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

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
	// Directories and symlinks first, in manifest order; the files' links
	// after, a directory at a time on a few goroutines (see linkFiles).
	var toLink linkPlan
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
			toLink.add(e.Path)
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
	if err := linkFiles(rx.ctx, ptree, rx.tree, toLink.batches); err != nil {
		return err
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

// linkBatch is the files of one directory to hard-link: dir is its path
// relative to the tree ("" for the root, else with a trailing slash).
type linkBatch struct {
	dir   string
	names []string
}

// linkPlan gathers files to link into batches, one per directory, in the
// order the directories are first met.
type linkPlan struct {
	batches []linkBatch
	of      map[string]int // directory -> its batch
}

// add puts the file rel (a path relative to the tree) in its directory's batch.
func (p *linkPlan) add(rel string) {
	dir, base := path.Split(rel)
	i, ok := p.of[dir]
	if !ok {
		if p.of == nil {
			p.of = map[string]int{}
		}
		i = len(p.batches)
		p.of[dir] = i
		p.batches = append(p.batches, linkBatch{dir: dir})
	}
	p.batches[i].names = append(p.batches[i].names, base)
}

// linkWorkers is how many directories linkFiles links at once. A linkat
// waits on the filesystem's journal as much as it computes; links in
// different directories do not contend for the directory's lock, and
// measured on ext4 (2 cores, 100,000 files in 100 directories) four
// goroutines linked in 0.6-0.75x the wall time of one.
const linkWorkers = 4

// linkFiles hard-links every file of batches from the tree src to the same
// path in the tree dst (whose directories exist), a directory at a time on
// linkWorkers goroutines; it stops at the first error.
func linkFiles(ctx context.Context, src, dst string, batches []linkBatch) error {
	var (
		mu       sync.Mutex
		firstErr error
		next     int
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	take := func() *linkBatch {
		mu.Lock()
		defer mu.Unlock()
		if firstErr != nil || next == len(batches) {
			return nil
		}
		next++
		return &batches[next-1]
	}
	for range min(linkWorkers, len(batches)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := take(); b != nil; b = take() {
				if err := ctx.Err(); err != nil {
					fail(err)
					return
				}
				if err := linkBatchAt(src, dst, b); err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// linkBatchAt links one directory's files, relative to the open source
// and destination directories (O_PATH: search permission is enough, as
// with paths; a snapshot directory may be unreadable).
func linkBatchAt(src, dst string, b *linkBatch) error {
	sdir := filepath.Join(src, filepath.FromSlash(b.dir))
	ddir := filepath.Join(dst, filepath.FromSlash(b.dir))
	sfd, err := unix.Open(sdir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: sdir, Err: err}
	}
	defer unix.Close(sfd)
	dfd, err := unix.Open(ddir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: ddir, Err: err}
	}
	defer unix.Close(dfd)
	for _, n := range b.names {
		if err := unix.Linkat(sfd, n, dfd, n, 0); err != nil {
			return &os.LinkError{Op: "link", Old: filepath.Join(sdir, n), New: filepath.Join(ddir, n), Err: err}
		}
	}
	return nil
}
