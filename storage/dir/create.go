// Creating a snapshot: the live dataset copied into a read-only tree
// (unchanged files hard-linked from the previous snapshot, the rest
// reflinked or copied, hard links, xattrs and holes kept) with its manifest.

package dir

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/logging"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/replicaview"
)

// CreateSnapshot implements storage.Backend.
func (b *Backend) CreateSnapshot(ctx context.Context, ds, name string) (storage.Snapshot, error) {
	const op = "create snapshot"
	unlock, err := b.locks.LockSnapshot(op, ds, name)
	if err != nil {
		return storage.Snapshot{}, err
	}
	defer unlock()
	if m, ok, err := b.loadMeta(ds, name); err != nil {
		return storage.Snapshot{}, storage.Wrap(err, storage.KindConflict, op, ds, name)
	} else if ok {
		return m.snapshot(), nil
	}
	if err := b.checkLive(op, ds); err != nil {
		return storage.Snapshot{}, err
	}
	if err := replicaview.Refuse(op, b.root, ds); err != nil {
		return storage.Snapshot{}, err
	}
	if a := b.foreignAt(ds, name); a != nil {
		return storage.Snapshot{}, a.Err(op)
	}
	m, err := b.createSnapshot(ctx, ds, name)
	if err != nil {
		removeTree(filepath.Join(b.tmpDir(ds), name))
		os.Remove(b.tmpDir(ds))
		return storage.Snapshot{}, storage.Wrap(err, storage.KindTemporary, op, ds, name)
	}
	return m.snapshot(), nil
}

// checkLive checks that every component of the live dataset path is a real
// directory (no symlink leading out of the root).
func (b *Backend) checkLive(op, ds string) error {
	p := b.root
	for _, c := range strings.Split(ds, "/") {
		p = filepath.Join(p, c)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return storage.Errorf(storage.KindNotFound, op, ds, "", "create the dataset directory or fix the job's dataset", "dataset directory %s does not exist", b.live(ds))
		}
		if err != nil {
			return storage.Wrap(err, storage.KindTemporary, op, ds, "")
		}
		if fi.Mode().Type() == fs.ModeSymlink {
			return storage.Errorf(storage.KindInvalid, op, ds, "", "datasets must be real directories inside the root", "%s is a symlink", p)
		}
		if !fi.IsDir() {
			return storage.Errorf(storage.KindInvalid, op, ds, "", "", "%s is not a directory", p)
		}
	}
	return nil
}

type snapshotter struct {
	b        *Backend
	ctx      context.Context
	live     string // the live dataset
	tree     string // the temporary tree being built
	prevTree string // the previous snapshot's tree, if any
	prev     *manifestReader
	out      *manifestWriter
	m        *meta
	buf      []byte
	h        hash.Hash
	rootMode uint32
	// prevDirs and treeDirs hold the directory of the last file linked
	// from the previous snapshot, in it and in the new tree.
	prevDirs, treeDirs *dirCache
	// links holds the entry of the first path of every live inode with
	// more than one link: later paths become hard links to its copy.
	links map[devIno]*Entry
	// deferLinks: the unchanged files (of one link) are linked from the
	// previous snapshot after the walk, a directory at a time on a few
	// goroutines (linkFiles), and the directories get their metadata
	// after that; toLink and dirs hold them until then.
	deferLinks bool
	toLink     linkPlan
	dirs       []pendingDir
}

// pendingDir is a directory of the new tree whose metadata waits for the
// deferred links (which would move its mtime, and need it writable).
type pendingDir struct {
	rel, dst string
	st       statOf
	xs       []storage.Xattr
}

// errDeferredLink is a deferred link that failed (the previous copy gone,
// too many links): the snapshot is made again, linking as it walks, which
// copies what it cannot link.
var errDeferredLink = errors.New("a deferred link failed")

func (b *Backend) createSnapshot(ctx context.Context, ds, name string) (*meta, error) {
	m, err := b.makeSnapshot(ctx, ds, name, true)
	if errors.Is(err, errDeferredLink) {
		b.log.Debug("dir snapshot: a deferred link failed; making the snapshot again, linking as it walks", zap.String("dataset", ds), logging.Snapshot(name), zap.Error(err))
		m, err = b.makeSnapshot(ctx, ds, name, false)
	}
	return m, err
}

func (b *Backend) makeSnapshot(ctx context.Context, ds, name string, deferLinks bool) (*meta, error) {
	// A leftover of an interrupted attempt at this name (a temporary tree,
	// or a tree or manifest in place without metadata) is discarded.
	tmp := filepath.Join(b.tmpDir(ds), name)
	if err := removeTree(tmp); err != nil {
		return nil, err
	}
	if err := removeTree(b.snapTree(ds, name)); err != nil {
		return nil, err
	}
	if err := b.lay.MkdirAll(tmp); err != nil {
		return nil, err
	}
	s := &snapshotter{
		b: b, ctx: ctx, live: b.live(ds), tree: filepath.Join(tmp, "tree"),
		m:   &meta{Version: 1, Dataset: ds, Name: name, GUID: uuid.NewString()},
		buf: make([]byte, 1<<20), h: sha256.New(), links: map[devIno]*Entry{},
		deferLinks: deferLinks,
	}
	// Files are shared only with an intact previous snapshot.
	metas, _, err := b.scan(ds)
	if err != nil {
		return nil, err
	}
	s.prev, _ = openManifest("")
	if len(metas) > 0 {
		last := metas[len(metas)-1]
		if p, err := openManifest(b.manifestPath(ds, last.Name)); err == nil {
			s.prev, s.prevTree = p, b.snapTree(ds, last.Name)
		}
	}
	defer s.prev.close()
	s.prevDirs, s.treeDirs = &dirCache{root: s.prevTree}, &dirCache{root: s.tree}
	defer s.prevDirs.close()
	defer s.treeDirs.close()
	s.out, err = createManifest(filepath.Join(tmp, "manifest"))
	if err != nil {
		return nil, err
	}
	fi, err := os.Lstat(s.live)
	if err != nil {
		s.out.abort()
		return nil, err
	}
	if err := s.entry(".", fi); err != nil {
		s.out.abort()
		return nil, err
	}
	if err := s.prev.err; err != nil {
		s.out.abort()
		return nil, err
	}
	if err := linkFiles(ctx, s.prevTree, s.tree, s.toLink.batches); err != nil {
		s.out.abort()
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", errDeferredLink, err)
	}
	for i := range s.dirs {
		d := &s.dirs[i]
		if err := s.finishDir(d.rel, d.dst, d.st, d.xs); err != nil {
			s.out.abort()
			return nil, err
		}
	}
	if s.m.Digest, err = s.out.close(); err != nil {
		return nil, err
	}
	s.m.Entries = s.out.n
	if err := syncFS(tmp); err != nil {
		return nil, err
	}
	if err := b.lay.MkdirAll(b.snapDir(ds)); err != nil {
		return nil, err
	}
	if err := os.Rename(filepath.Join(tmp, "manifest"), b.manifestPath(ds, name)); err != nil {
		return nil, err
	}
	if err := os.Rename(s.tree, b.snapTree(ds, name)); err != nil {
		return nil, err
	}
	if err := os.Chmod(b.snapTree(ds, name), storage.FileMode(s.rootMode&^0o222)); err != nil {
		return nil, err
	}
	if err := b.recordInodes(ds, name); err != nil {
		return nil, err
	}
	rec, err := b.nextSeq(ds)
	if err != nil {
		return nil, err
	}
	s.m.Seq, s.m.DatasetGUID = rec.Seq, rec.UUID
	s.m.CreatedAt = time.Now().UTC()
	if err := b.commitMeta(s.m); err != nil {
		return nil, err
	}
	os.Remove(tmp)
	os.Remove(b.tmpDir(ds))
	if s.m.SkippedCount > 0 {
		b.log.Warn("dir snapshot skipped special files (sockets, fifos, devices)", zap.String("dataset", ds), logging.Snapshot(name), zap.Int("count", s.m.SkippedCount), zap.String("first", s.m.Skipped[0]))
	}
	return s.m, nil
}

// entry copies one live entry (and, for a directory, its subtree) into the
// temporary tree and records it in the manifest.
func (s *snapshotter) entry(rel string, fi fs.FileInfo) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	src := filepath.Join(s.live, filepath.FromSlash(rel))
	dst := filepath.Join(s.tree, filepath.FromSlash(rel))
	st := statInfo(fi)
	e := Entry{Path: rel, Mode: st.mode, Mtime: st.mtime, UID: st.uid, GID: st.gid, Dev: st.dev, Ino: st.ino, Ctime: st.ctime}
	switch st.fileType {
	case fs.ModeDir:
		e.Type = typeDir
		if rel == "." {
			s.rootMode = st.mode
		}
		if err := os.Mkdir(dst, 0o700); err != nil {
			return err
		}
		xs, err := storage.ReadXattrs(src)
		if err != nil {
			return err
		}
		e.Xattrs = storage.XattrsDigest(xs)
		if err := s.out.add(&e); err != nil {
			return err
		}
		// An entry deleted while we looked is skipped.
		if err := walkDir(src, true, true, func(_ *openDir, n string, cfi fs.FileInfo) error {
			return s.entry(join(rel, n), cfi)
		}); err != nil {
			return err
		}
		// The directory gets its metadata once its children are in (its
		// default ACL would otherwise be inherited by their copies), and
		// with deferred links once those are made too.
		if s.deferLinks {
			s.dirs = append(s.dirs, pendingDir{rel: rel, dst: dst, st: st, xs: xs})
			return nil
		}
		return s.finishDir(rel, dst, st, xs)
	case fs.ModeSymlink:
		e.Type = typeSymlink
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		e.Link = target
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
		if err := s.b.own(dst, st.uid, st.gid); err != nil {
			return err
		}
		if e.Xattrs, err = s.copyXattrs(rel, src, dst); err != nil {
			return err
		}
		if err := setTimes(dst, st.atime, st.mtime); err != nil {
			return err
		}
		s.skipPrev(rel)
		return s.out.add(&e)
	case 0:
		e.Type = typeFile
		if err := s.file(rel, src, dst, st, &e); err != nil {
			return err
		}
		return s.out.add(&e)
	default:
		s.m.SkippedCount++
		if len(s.m.Skipped) < maxSkipped {
			s.m.Skipped = append(s.m.Skipped, strconv.Quote(rel))
		}
		return nil
	}
}

// finishDir gives a directory of the new tree its metadata, its children
// all in.
func (s *snapshotter) finishDir(rel, dst string, st statOf, xs []storage.Xattr) error {
	if err := s.b.own(dst, st.uid, st.gid); err != nil {
		return err
	}
	// Even with none: the copy may have inherited a default ACL from
	// .ferry (a root whose directory has one).
	if err := s.b.setXattrs("create snapshot", s.m.Dataset, s.m.Name, rel, dst, xs); err != nil {
		return err
	}
	// The tree's root stays writable until it has been renamed into
	// place: moving a directory to another parent needs write access
	// to it (its ".." entry changes).
	if rel != "." {
		if err := os.Chmod(dst, storage.FileMode(st.mode&^0o222)); err != nil {
			return err
		}
	}
	return setTimes(dst, st.atime, st.mtime)
}

// skipPrev advances the previous manifest up to rel and returns its entry
// for rel, if it has one.
func (s *snapshotter) skipPrev(rel string) *Entry {
	for p := s.prev.peek(); p != nil && storage.ComparePaths(p.Path, rel) < 0; p = s.prev.peek() {
		s.prev.take()
	}
	if p := s.prev.peek(); p != nil && p.Path == rel {
		return s.prev.take()
	}
	return nil
}

// copyXattrs gives dst exactly the carried xattrs of src (removing any it
// inherited from a default ACL above it) and returns their digest.
func (s *snapshotter) copyXattrs(rel, src, dst string) (string, error) {
	xs, err := storage.ReadXattrs(src)
	if err != nil {
		return "", err
	}
	return storage.XattrsDigest(xs), s.b.setXattrs("create snapshot", s.m.Dataset, s.m.Name, rel, dst, xs)
}

func (s *snapshotter) file(rel, src, dst string, st statOf, e *Entry) error {
	p := s.skipPrev(rel)
	// A later name of an inode already copied: a hard link to that copy.
	if st.nlink > 1 {
		id := devIno{st.dev, st.ino}
		if first := s.links[id]; first != nil {
			if err := os.Link(filepath.Join(s.tree, filepath.FromSlash(first.Path)), dst); err != nil {
				return err
			}
			e.Size, e.SHA256, e.Xattrs, e.Sparse, e.Data = first.Size, first.SHA256, first.Xattrs, first.Sparse, first.Data
			e.Mode, e.Mtime, e.UID, e.GID, e.Ctime = first.Mode, first.Mtime, first.UID, first.GID, first.Ctime
			e.HardLink = first.Path
			s.m.Linked++
			return nil
		}
		defer func() { c := *e; s.links[id] = &c }()
	}
	// Unchanged since the previous snapshot: share its (read-only) copy,
	// when the manifest says that copy has the live file's xattrs (a
	// snapshot made before ferry kept them records none, and its copies
	// have none). The copy itself is not read: a copy altered since is
	// refused when it is sent (its xattrs are checked against the
	// manifest) and by Verify.
	if p != nil && p.Type == typeFile && p.Ino != 0 && p.Dev == st.dev && p.Ino == st.ino &&
		p.Size == st.size && p.Mode == st.mode && p.Mtime == st.mtime && p.UID == st.uid && p.GID == st.gid {
		xs, err := storage.ReadXattrs(src)
		if err != nil {
			return err
		}
		same := storage.XattrsDigest(xs) == p.Xattrs
		if same && p.Ctime != st.ctime {
			// Only the ctime moved (a hard link made or removed elsewhere,
			// a chown or chmod back): the content decides, read once
			// instead of written again.
			same, err = s.sameContent(src, p)
			if err != nil {
				return err
			}
		}
		if same && s.deferLinks && st.nlink == 1 {
			// Linked after the walk (a later name of an inode of several
			// links is linked to its first copy as the walk finds it, so
			// those are linked now).
			s.toLink.add(rel)
			e.Size, e.SHA256, e.Xattrs, e.Sparse, e.Data = p.Size, p.SHA256, p.Xattrs, p.Sparse, p.Data
			s.m.Linked++
			return nil
		}
		if same {
			if err := linkAt(s.prevDirs, s.treeDirs, rel); err == nil {
				e.Size, e.SHA256, e.Xattrs, e.Sparse, e.Data = p.Size, p.SHA256, p.Xattrs, p.Sparse, p.Data
				s.m.Linked++
				return nil
			}
		}
		// Too many links, the previous copy is gone or lacks the xattrs:
		// copy instead.
	}
	in, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	sum, size, err := s.b.copyContent(out, in, s.h, s.buf)
	if err == nil {
		// The snapshot's syncfs then finds it written.
		startWriteback(int(out.Fd()))
	}
	if err == nil {
		e.Data, e.Sparse, err = dataSpans(out, size)
	}
	if err == nil {
		err = s.b.fown(out, st.uid, st.gid)
	}
	if err == nil {
		e.Xattrs, err = s.copyXattrs(rel, src, dst)
	}
	if err == nil {
		err = out.Chmod(storage.FileMode(st.mode &^ 0o222))
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = setTimes(dst, st.atime, st.mtime)
	}
	if err != nil {
		return err
	}
	e.Size, e.SHA256 = size, sum
	s.m.Copied++
	return nil
}

// sameContent says whether the live file src holds p's content (its
// SHA-256 and size): read, never written.
func (s *snapshotter) sameContent(src string, p *Entry) (bool, error) {
	in, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false, err
	}
	defer in.Close()
	s.h.Reset()
	n, err := io.CopyBuffer(s.h, storage.PlainReader{Reader: in}, s.buf)
	if err != nil {
		return false, err
	}
	s.m.Rehashed++
	return n == p.Size && hex.EncodeToString(s.h.Sum(nil)) == p.SHA256, nil
}

// copyContent copies in to out, by reflink where it can, and returns the
// SHA-256 and size of what out now holds.
func (b *Backend) copyContent(out, in *os.File, h hash.Hash, buf []byte) (string, int64, error) {
	h.Reset()
	if b.reflink.Load() {
		err := b.clone(out, in)
		if err == nil {
			// Hash the clone: it is what the snapshot holds.
			if _, err := out.Seek(0, io.SeekStart); err != nil {
				return "", 0, err
			}
			rd, err := os.Open(out.Name())
			if err != nil {
				return "", 0, err
			}
			n, err := io.CopyBuffer(h, rd, buf)
			rd.Close()
			return hex.EncodeToString(h.Sum(nil)), n, err
		}
		if !reflinkFallback(err) {
			return "", 0, err
		}
		if reflinkUnsupported(err) {
			b.reflink.Store(false)
			b.log.Debug("dir backend: reflink not supported here, copying", zap.String("root", b.root), zap.Error(err))
		}
		if err := out.Truncate(0); err != nil {
			return "", 0, err
		}
	}
	fi, err := in.Stat()
	if err != nil {
		return "", 0, err
	}
	if d, sparse, err := dataSpans(in, fi.Size()); err != nil {
		return "", 0, err
	} else if sparse {
		// Only the data segments, so that the copy keeps the holes.
		rs := make([]io.Reader, len(d))
		for i, sp := range d {
			rs[i] = io.NewSectionReader(in, sp.Off, sp.Len)
		}
		_, err := writeSpans(out, io.MultiReader(rs...), d, fi.Size(), h, buf)
		return hex.EncodeToString(h.Sum(nil)), fi.Size(), err
	}
	n, err := copyHashing(out, in, h, buf)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// own sets ownership (as root only; otherwise files belong to ferry's user).
func (b *Backend) own(p string, uid, gid int) error {
	if !b.isRoot {
		return nil
	}
	return os.Lchown(p, uid, gid)
}

func (b *Backend) fown(f *os.File, uid, gid int) error {
	if !b.isRoot {
		return nil
	}
	return f.Chown(uid, gid)
}
