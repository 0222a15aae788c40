package dir

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/storage"
)

// treeWalker computes a manifest from a tree on disk, in ComparePaths order.
type treeWalker struct {
	root string
	out  *manifestWriter // where entries go (or d alone)
	d    *digester
	buf  []byte
	h    hash.Hash

	// strip makes freshly written entries read-only as they are recorded
	// (a receive's last step).
	strip bool
	// parent and parentTree identify files hard-linked from the incremental
	// base: they keep the base's true mode and content hash.
	parent     *manifestReader
	parentTree string
	parentDirs *dirCache
	// parentInodes, when the base has one, is the base's inode list: a
	// file of the base's inode (checked against that list as the receive
	// began) is one of its links, found without an fstatat in its tree.
	parentInodes *inodeList
	// stored, when set, is the snapshot's own manifest: true modes come from
	// it and the on-disk mode must be the true mode without write bits.
	stored *manifestReader
	// rootMode is the root's true mode (stripped by the caller).
	rootMode uint32
	// trueDirModes: staged directories have owner rwx added (ferry is not
	// root); their true modes come from dirModes (what the stream set) or
	// else from parent (what the base had).
	trueDirModes bool
	dirModes     *dirModesReader
	// written, at a receive's commit, is what it wrote: those files (same
	// inode and size) take the hash checked as they were written.
	written *writtenList
	// quick, at Verify, is the snapshot's inode list: a file as ferry
	// committed it (inodeList.unwritten) takes the manifest's content hash
	// and xattrs unread. Nil reads every file.
	quick *inodeList
	// links holds the entry of the first path of every inode seen with
	// more than one link (files shared with the base count too).
	links map[devIno]*Entry
	// inodes, when set (a receive's commit), collects every entry's inode
	// and ctime as the walk leaves it (after the walker's own chmod): the
	// committed tree's inode list, without walking it again.
	inodes *[]inodeRec
}

func (w *treeWalker) walk() error {
	w.links = map[devIno]*Entry{}
	defer func() {
		if w.parentDirs != nil {
			w.parentDirs.close()
		}
	}()
	fi, err := os.Lstat(w.root)
	if err != nil {
		return err
	}
	if err := w.entry(".", fi, nil); err != nil {
		return err
	}
	if w.stored != nil {
		if e := w.stored.peek(); e != nil {
			return fmt.Errorf("%q is missing: %w", e.Path, errTampered)
		}
		if w.stored.err != nil {
			return w.stored.err
		}
	}
	if w.parent != nil && w.parent.err != nil {
		return w.parent.err
	}
	return nil
}

// parentStat is the lstat of rel in the parent's tree, if it is there.
func (w *treeWalker) parentStat(rel string) (statOf, bool) {
	if w.parentDirs == nil {
		w.parentDirs = &dirCache{root: w.parentTree}
	}
	fd, base, err := w.parentDirs.at(rel)
	if err != nil {
		return statOf{}, false
	}
	fi := &statFI{name: base}
	if unix.Fstatat(fd, base, &fi.st, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return statOf{}, false
	}
	return statInfo(fi), true
}

// baseLink says whether the staged file rel (st) is a hard link to the
// base's copy of rel.
func (w *treeWalker) baseLink(rel string, st statOf) bool {
	if w.parentInodes != nil {
		r := w.parentInodes.seek(rel)
		return r != nil && r.ino == st.ino
	}
	pst, ok := w.parentStat(rel)
	return ok && sameInode(pst, st)
}

func (w *treeWalker) emit(e *Entry) error {
	if w.d != nil {
		w.d.add(e)
	}
	if w.out != nil {
		return w.out.add(e)
	}
	return nil
}

// seek advances m to rel and returns its entry for rel, or nil; skipped
// entries are reported through skipped.
func seek(m *manifestReader, rel string, skipped func(*Entry) error) (*Entry, error) {
	for e := m.peek(); e != nil && storage.ComparePaths(e.Path, rel) < 0; e = m.peek() {
		m.take()
		if skipped != nil {
			if err := skipped(e); err != nil {
				return nil, err
			}
		}
	}
	if e := m.peek(); e != nil && e.Path == rel {
		return m.take(), nil
	}
	return nil, m.err
}

func missing(e *Entry) error { return fmt.Errorf("%q is missing: %w", e.Path, errTampered) }

// entry records rel; dir is its parent directory, open (nil for the root).
func (w *treeWalker) entry(rel string, fi fs.FileInfo, dir *openDir) error {
	abs := filepath.Join(w.root, filepath.FromSlash(rel))
	st := statInfo(fi)
	e := Entry{Path: rel, Mode: st.mode, Mtime: st.mtime, UID: st.uid, GID: st.gid}
	rec := -1
	if w.inodes != nil {
		rec = len(*w.inodes)
		*w.inodes = append(*w.inodes, inodeRec{path: rel, ino: st.ino, ctime: st.ctime})
	}
	var fromStored *Entry
	if w.stored != nil {
		se, err := seek(w.stored, rel, missing)
		if err != nil {
			return err
		}
		if se == nil {
			return fmt.Errorf("%q is not in the manifest: %w", rel, errTampered)
		}
		if st.fileType != fs.ModeSymlink && st.mode != se.Mode&^0o222 {
			return fmt.Errorf("%q has mode %o, its snapshot mode is %o: %w", rel, st.mode, se.Mode&^0o222, errTampered)
		}
		e.Mode, fromStored = se.Mode, se
	}
	var p *Entry // the parent snapshot's entry for rel
	if w.parent != nil {
		var err error
		if p, err = seek(w.parent, rel, nil); err != nil {
			return err
		}
	}
	unwritten := st.fileType == 0 && fromStored != nil && fromStored.Type == typeFile && w.quick.unwritten(rel, st, fromStored)
	if unwritten {
		e.Xattrs = fromStored.Xattrs // an xattr change moves the ctime
	} else if st.fileType != 0 || st.nlink < 2 || w.links[devIno{st.dev, st.ino}] == nil {
		// A later name of a hard-linked inode repeats its first name's xattrs.
		xs, err := storage.ReadXattrs(abs)
		if err != nil {
			return err
		}
		e.Xattrs = storage.XattrsDigest(xs)
	}
	switch st.fileType {
	case fs.ModeDir:
		e.Type = typeDir
		if w.trueDirModes {
			dm, err := w.dirModes.seek(rel)
			switch {
			case err != nil:
				return err
			case dm != nil:
				e.Mode = dm.Mode
			case p != nil && p.Type == typeDir:
				e.Mode = p.Mode
			}
			if st.mode != e.Mode|0o700 {
				return fmt.Errorf("staged directory %q has mode %o, expected %o", rel, st.mode, e.Mode|0o700)
			}
		}
		if rel == "." {
			w.rootMode = e.Mode
		}
		if err := w.emit(&e); err != nil {
			return err
		}
		if err := walkDir(abs, false, !w.strip, func(d *openDir, n string, cfi fs.FileInfo) error {
			return w.entry(join(rel, n), cfi, d)
		}); err != nil {
			return err
		}
		if w.strip && st.mode != e.Mode&^0o222 && rel != "." { // the root: after its rename
			return w.chmod(abs, storage.FileMode(e.Mode&^0o222), rec)
		}
		return nil
	case fs.ModeSymlink:
		e.Type = typeSymlink
		target, err := os.Readlink(abs)
		if err != nil {
			return err
		}
		e.Link = target
		return w.emit(&e)
	case 0:
		e.Type = typeFile
		if st.nlink > 1 {
			id := devIno{st.dev, st.ino}
			if first := w.links[id]; first != nil {
				// A later name of an inode: the first name's entry.
				if fromStored != nil && fromStored.HardLink != first.Path {
					return fmt.Errorf("%q is a hard link to %q, its snapshot says %q: %w", rel, first.Path, fromStored.HardLink, errTampered)
				}
				e.Mode, e.Size, e.SHA256, e.Xattrs, e.Sparse, e.Data = first.Mode, first.Size, first.SHA256, first.Xattrs, first.Sparse, first.Data
				e.HardLink = first.Path
				return w.emit(&e)
			}
			defer func() { c := e; w.links[id] = &c }()
		}
		// A hard link to the base's copy keeps the base's true mode and hash.
		if p != nil && p.Type == typeFile {
			if w.baseLink(rel, st) {
				if st.mode != p.Mode&^0o222 {
					return &storage.Error{Kind: storage.KindConflict, Op: "receive", Err: fmt.Errorf("base snapshot file %q has mode %o, its manifest says %o: %w", rel, st.mode, p.Mode&^0o222, errTampered)}
				}
				e.Mode, e.Size, e.SHA256, e.Sparse, e.Data = p.Mode, p.Size, p.SHA256, p.Sparse, p.Data
				return w.emit(&e)
			}
		}
		if unwritten {
			e.Size, e.SHA256, e.Sparse, e.Data = fromStored.Size, fromStored.SHA256, fromStored.Sparse, fromStored.Data
		} else if wf := w.written.seek(rel); wf != nil && wf.dev == st.dev && wf.ino == st.ino && wf.size == st.size {
			e.Size, e.SHA256 = wf.size, wf.sha256
			if w.out != nil {
				e.Data, e.Sparse = wf.data, wf.sparse
			}
		} else {
			f, err := dir.openFile(path.Base(rel))
			if err != nil {
				return err
			}
			w.h.Reset()
			n, err := io.CopyBuffer(w.h, f, w.buf)
			if err == nil && w.out != nil {
				e.Data, e.Sparse, err = dataSpans(f, n)
			}
			f.Close()
			if err != nil {
				return err
			}
			e.Size, e.SHA256 = n, hex.EncodeToString(w.h.Sum(nil))
		}
		if fromStored != nil && (fromStored.Size != e.Size || fromStored.SHA256 != e.SHA256) {
			return fmt.Errorf("content of %q changed: %w", rel, errTampered)
		}
		if err := w.emit(&e); err != nil {
			return err
		}
		if w.strip && st.mode&0o222 != 0 {
			return w.chmod(abs, storage.FileMode(st.mode&^0o222), rec)
		}
		return nil
	default:
		return fmt.Errorf("%q is a %s, which a dir snapshot never holds: %w", rel, st.fileType, errTampered)
	}
}

// chmod sets the mode of the entry at abs whose inode record (if the walk
// collects them) is rec, and records the ctime the change gave it.
func (w *treeWalker) chmod(abs string, mode fs.FileMode, rec int) error {
	if err := os.Chmod(abs, mode); err != nil {
		return err
	}
	if rec < 0 {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Lstat(abs, &st); err != nil {
		return &fs.PathError{Op: "lstat", Path: abs, Err: err}
	}
	r := &(*w.inodes)[rec]
	if st.Ino != r.ino {
		return fmt.Errorf("%q was replaced while the receive committed it", r.path)
	}
	r.ctime = st.Ctim.Nano()
	return nil
}

// Verify implements storage.Backend: identities as requested, then the
// manifest digest recomputed from the tree on disk (content, modes, mtimes)
// against the stored one.
func (b *Backend) Verify(ctx context.Context, req storage.VerifyRequest) (storage.Snapshot, error) {
	const op = "verify"
	if err := storage.CheckDataset(op, req.Dataset); err != nil {
		return storage.Snapshot{}, err
	}
	if err := storage.CheckSnapshotName(op, req.Dataset, req.Name); err != nil {
		return storage.Snapshot{}, err
	}
	m, err := b.mustMeta(op, req.Dataset, req.Name)
	if err != nil {
		return storage.Snapshot{}, err
	}
	conflict := func(format string, args ...any) error {
		return storage.Errorf(storage.KindConflict, op, req.Dataset, req.Name, "discard the received snapshot and send it again", format, args...)
	}
	switch {
	case req.SourceGUID != m.ReceivedGUID:
		return storage.Snapshot{}, conflict("received from guid %q, expected %q", m.ReceivedGUID, req.SourceGUID)
	case req.ParentSourceGUID != "" && req.ParentSourceGUID != m.ParentGUID:
		return storage.Snapshot{}, conflict("applied on base guid %q, expected %q", m.ParentGUID, req.ParentSourceGUID)
	case req.Digest != "" && req.Digest != m.Digest:
		return storage.Snapshot{}, conflict("manifest digest %s, expected %s", m.Digest, req.Digest)
	}
	digest, err := b.recomputeDigest(req.Dataset, req.Name, false)
	if err != nil {
		if errors.Is(err, errTampered) {
			return storage.Snapshot{}, conflict("modified after it was made: %v", err)
		}
		return storage.Snapshot{}, storage.Wrap(err, storage.KindTemporary, op, req.Dataset, req.Name)
	}
	if digest != m.Digest {
		return storage.Snapshot{}, conflict("modified after it was made: manifest digest on disk %s, recorded %s", digest, m.Digest)
	}
	return m.snapshot(), nil
}

// recomputeDigest is the manifest digest of name's tree as it is on disk;
// with full false, files ferry committed and nothing wrote since are not
// read (see integrity.go).
func (b *Backend) recomputeDigest(ds, name string, full bool) (string, error) {
	stored, err := openManifest(b.manifestPath(ds, name))
	if err != nil {
		return "", err
	}
	defer stored.close()
	var quick *inodeList
	if !full {
		// A damaged or missing list: every file is read.
		quick, _ = b.openInodes(ds, name)
		defer quick.close()
	}
	w := &treeWalker{root: b.snapTree(ds, name), d: newDigester(), buf: make([]byte, 1<<20), h: newHash(), stored: stored, quick: quick}
	if err := w.walk(); err != nil {
		return "", err
	}
	return w.d.sum(), nil
}

// ContentDigest implements storage.Backend with storage.TreeDigest over the
// snapshot, reporting the manifest's true modes after checking that every
// on-disk mode is the true mode without write bits.
func (b *Backend) ContentDigest(ctx context.Context, ds, name string) (string, error) {
	const op = "content digest"
	if err := storage.CheckDataset(op, ds); err != nil {
		return "", err
	}
	if err := storage.CheckSnapshotName(op, ds, name); err != nil {
		return "", err
	}
	if _, err := b.mustMeta(op, ds, name); err != nil {
		return "", err
	}
	stored, err := openManifest(b.manifestPath(ds, name))
	if err != nil {
		return "", storage.Wrap(err, storage.KindTemporary, op, ds, name)
	}
	defer stored.close()
	var bad error
	digest, err := storage.TreeDigest(b.snapTree(ds, name), func(rel string, fi fs.FileInfo) fs.FileMode {
		se, err := seek(stored, rel, missing)
		switch {
		case err != nil:
		case se == nil:
			err = fmt.Errorf("%q is not in the manifest: %w", rel, errTampered)
		case fi.Mode().Type() != fs.ModeSymlink && storage.UnixMode(fi.Mode()) != se.Mode&^0o222:
			err = fmt.Errorf("%q has mode %o, its snapshot mode is %o: %w", rel, storage.UnixMode(fi.Mode()), se.Mode&^0o222, errTampered)
		default:
			return storage.FileMode(se.Mode)
		}
		if bad == nil {
			bad = err
		}
		return fi.Mode()
	})
	if err == nil && bad == nil {
		if e := stored.peek(); e != nil {
			bad = missing(e)
		}
	}
	if bad != nil {
		return "", storage.Errorf(storage.KindConflict, op, ds, name, "the snapshot was modified on disk; destroy it and take or receive it again", "%v", bad)
	}
	return digest, storage.Wrap(err, storage.KindTemporary, op, ds, name)
}
