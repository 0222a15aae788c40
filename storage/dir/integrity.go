package dir

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/metafile"
)

// A committed snapshot's tree is checked for changes without reading file
// content: against its manifest (type, on-disk mode, size, mtime, link
// target, no entry added or missing) and against the inode list recorded
// at commit in .ferry/snapshots/<ds>/.inodes/<name> (a hidden name, which
// no snapshot can have): every entry's inode number, and the ctime of
// directories and symlinks, which no user can set back and which ferry
// never changes after commit. A regular file's ctime is not compared here:
// ferry's own hard links to it (the next snapshot, a receive on top of it,
// destroying a snapshot sharing it) move it. It is recorded all the same:
// a file whose ctime is still the one recorded has not been written, had
// its times set or its xattrs changed since commit, so Verify and a
// receive on top of the snapshot take its content hash unread, and re-read
// only the files whose ctime moved.

const inodesHeader = "ferry-dir-inodes v2"

// inodesHeaderV1 is the list of a ferry that recorded 0 for every regular
// file's ctime: its files are always re-read.
const inodesHeaderV1 = "ferry-dir-inodes v1"

func (b *Backend) inodesDir(ds string) string { return filepath.Join(b.snapDir(ds), ".inodes") }
func (b *Backend) inodesPath(ds, name string) string {
	return filepath.Join(b.inodesDir(ds), name)
}

// recordInodes writes the inode list of the committed tree of name; it
// runs after the tree has its final place and modes, before the metadata.
func (b *Backend) recordInodes(ds, name string) error {
	return b.writeInodes(ds, name, func(w *bufio.Writer) error {
		return walkTree(b.snapTree(ds, name), func(rel string, fi fs.FileInfo) error {
			_, err := w.WriteString(inodeLine(rel, statInfo(fi)))
			return err
		})
	})
}

// writeInodeRecs writes the inode list of the committed tree of name from
// recs, the records of its entries in manifest order taken by the walk
// that made its manifest (the receive's commit): each stat'ed after the
// last change ferry made to it, its root after the tree's rename into
// place. This is recordInodes without a second walk of the tree.
func (b *Backend) writeInodeRecs(ds, name string, recs []inodeRec) error {
	return b.writeInodes(ds, name, func(w *bufio.Writer) error {
		for i := range recs {
			if _, err := w.WriteString(inodeLine(recs[i].path, statOf{ino: recs[i].ino, ctime: recs[i].ctime})); err != nil {
				return err
			}
		}
		return nil
	})
}

// writeInodes writes name's inode list, its lines from fill, durably.
func (b *Backend) writeInodes(ds, name string, fill func(w *bufio.Writer) error) error {
	if err := b.lay.MkdirAll(b.inodesDir(ds)); err != nil {
		return err
	}
	p := b.inodesPath(ds, name)
	f, err := os.OpenFile(p+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 256<<10)
	w.WriteString(inodesHeader + "\n")
	err = fill(w)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(p+".tmp", p)
	}
	if err == nil {
		err = metafile.SyncDir(b.inodesDir(ds))
	}
	if err != nil {
		os.Remove(p + ".tmp")
	}
	return err
}

// inodeLine is one entry of the inode list: quoted path, inode and ctime.
func inodeLine(rel string, st statOf) string {
	return fmt.Sprintf("%s %d %d\n", strconv.Quote(rel), st.ino, st.ctime)
}

// inodeRec is one parsed line of an inode list.
type inodeRec struct {
	path  string
	ino   uint64
	ctime int64
}

func parseInodeLine(line string) (inodeRec, bool) {
	q, err := strconv.QuotedPrefix(line)
	if err != nil {
		return inodeRec{}, false
	}
	p, _ := strconv.Unquote(q)
	f := strings.Fields(line[len(q):])
	if len(f) != 2 {
		return inodeRec{}, false
	}
	ino, err1 := strconv.ParseUint(f[0], 10, 64)
	ctime, err2 := strconv.ParseInt(f[1], 10, 64)
	return inodeRec{path: p, ino: ino, ctime: ctime}, err1 == nil && err2 == nil
}

// inodeList reads an inode list in manifest order.
type inodeList struct {
	f    *os.File
	r    *bufio.Reader
	next *inodeRec
	// fileCtimes: the list records regular files' ctimes (v2).
	fileCtimes bool
}

// openInodes opens name's inode list; nil without error when there is
// none (a snapshot committed before ferry kept them).
func (b *Backend) openInodes(ds, name string) (*inodeList, error) {
	f, err := os.Open(b.inodesPath(ds, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	l := &inodeList{f: f, r: bufio.NewReaderSize(f, 256<<10)}
	switch hdr, _ := l.r.ReadString('\n'); strings.TrimSuffix(hdr, "\n") {
	case inodesHeader:
		l.fileCtimes = true
	case inodesHeaderV1:
	default:
		f.Close()
		return nil, errDamagedInodes
	}
	return l, nil
}

var errDamagedInodes = errors.New("ferry's inode list of it is damaged")

func (l *inodeList) close() {
	if l != nil {
		l.f.Close()
	}
}

// read returns the next record, or nil at the end or on a damaged line.
func (l *inodeList) read() *inodeRec {
	if l.next != nil {
		r := l.next
		l.next = nil
		return r
	}
	line, err := l.r.ReadString('\n')
	if err != nil {
		return nil
	}
	r, ok := parseInodeLine(line)
	if !ok {
		return nil
	}
	return &r
}

// seek returns rel's record, skipping those before it; nil when the list
// has none.
func (l *inodeList) seek(rel string) *inodeRec {
	if l == nil {
		return nil
	}
	for r := l.read(); r != nil; r = l.read() {
		switch c := storage.ComparePaths(r.path, rel); {
		case c == 0:
			return r
		case c > 0:
			l.next = r
			return nil
		}
	}
	return nil
}

// unwritten says whether the file rel, as lstat'ed now (st) and as the
// manifest has it (se), is as ferry committed it: same inode, size and
// mtime, and the ctime recorded at commit.
func (l *inodeList) unwritten(rel string, st statOf, se *Entry) bool {
	if l == nil || !l.fileCtimes {
		return false
	}
	r := l.seek(rel)
	return r != nil && r.ino == st.ino && r.ctime == st.ctime && st.size == se.Size && st.mtime == se.Mtime
}

// removeInodes removes name's inode list (and the list directory once empty).
func (b *Backend) removeInodes(ds, name string) error {
	if err := os.Remove(b.inodesPath(ds, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	os.Remove(b.inodesPath(ds, name) + ".tmp")
	os.Remove(b.inodesDir(ds)) // only if now empty
	return nil
}

// walkTree calls fn for root (".") and every entry under it in manifest
// order (storage.ComparePaths), with its lstat.
func walkTree(root string, fn func(rel string, fi fs.FileInfo) error) error {
	var visit func(rel string, fi fs.FileInfo) error
	visit = func(rel string, fi fs.FileInfo) error {
		if err := fn(rel, fi); err != nil {
			return err
		}
		if !fi.IsDir() {
			return nil
		}
		return walkDir(filepath.Join(root, filepath.FromSlash(rel)), false, true, func(_ *openDir, n string, cfi fs.FileInfo) error {
			return visit(join(rel, n), cfi)
		})
	}
	fi, err := os.Lstat(root)
	if err != nil {
		return err
	}
	return visit(".", fi)
}

// errChanged stops the walk at the first difference.
type errChanged struct {
	what    string
	damaged string // a file whose content changed (rehash), else ""
}

func (e *errChanged) Error() string { return e.what }

// modification says how the tree of the committed snapshot name differs
// from what ferry committed, or "" when it does not (or when the snapshot
// predates inode lists and only Verify can tell). Errors are for things
// that could not be looked at. With rehash (a receive about to use the
// snapshot as its base, before it links its files), a file whose ctime is
// not the one recorded at commit is read and its content checked against
// the manifest: the new snapshot takes the base's hashes unread.
func (b *Backend) modification(ds, name string, rehash bool) (string, error) {
	what, _, err := b.modificationOf(ds, name, rehash)
	return what, err
}

// modificationOf is modification that also returns, when a rehash found
// a file's content changed, that file's path.
func (b *Backend) modificationOf(ds, name string, rehash bool) (what, damaged string, err error) {
	il, err := b.openInodes(ds, name)
	if errors.Is(err, errDamagedInodes) {
		return errDamagedInodes.Error(), "", nil
	}
	if err != nil || il == nil {
		return "", "", err
	}
	defer il.close()
	var buf []byte
	h := newHash()
	if rehash {
		buf = make([]byte, 256<<10)
	}
	m, err := openManifest(b.manifestPath(ds, name))
	if err != nil {
		return "", "", err
	}
	defer m.close()
	changed := func(format string, args ...any) error { return &errChanged{what: fmt.Sprintf(format, args...)} }
	removed := func(e *Entry) error { return changed("%q was removed", e.Path) }
	// A directory's own mtime or ctime differs whenever something in it
	// changed: the change found in its subtree says more, so that note is
	// kept for the case the subtree shows nothing else.
	var dirNote string
	tree := b.snapTree(ds, name)
	err = walkTree(tree, func(rel string, fi fs.FileInfo) error {
		se, err := seek(m, rel, removed)
		if err != nil {
			return err
		}
		if se == nil {
			return changed("%q was added", rel)
		}
		rec := il.read()
		if rec == nil || rec.path != rel {
			return changed("ferry's inode list of it does not list %q", rel)
		}
		st := statInfo(fi)
		typ := entryType(st.fileType)
		switch {
		case typ != se.Type:
			return changed("%q is a %s, ferry committed a %s", rel, typeName(typ), typeName(se.Type))
		case typ != typeSymlink && st.mode != se.Mode&^0o222:
			return changed("%q has mode %o, ferry committed %o", rel, st.mode, se.Mode&^0o222)
		case typ == typeFile && st.size != se.Size:
			return changed("%q is %d bytes, ferry committed %d", rel, st.size, se.Size)
		case typ == typeSymlink:
			if target, err := os.Readlink(filepath.Join(tree, filepath.FromSlash(rel))); err != nil {
				return err
			} else if target != se.Link {
				return changed("symlink %q points to %q, ferry committed %q", rel, target, se.Link)
			}
		}
		// ferry's own hard links move a file's ctime (see above).
		sameCtime := rec.ctime == st.ctime || typ == typeFile
		switch {
		case st.mtime == se.Mtime && rec.ino == st.ino && sameCtime:
			if rehash && typ == typeFile && se.HardLink == "" && (rec.ctime != st.ctime || !il.fileCtimes) {
				sum, err := hashFile(filepath.Join(tree, filepath.FromSlash(rel)), h, buf)
				if err != nil {
					return err
				}
				if sum != se.SHA256 {
					return &errChanged{what: fmt.Sprintf("the content of %q changed after commit", rel), damaged: rel}
				}
			}
		case typ != typeDir:
			return changed("%q was replaced or altered after commit (its modification time, inode or change time differs)", rel)
		case dirNote == "":
			dirNote = fmt.Sprintf("directory %q changed after commit (an entry was added, removed or renamed in it, or its times, owner or extended attributes changed)", rel)
		}
		return nil
	})
	if err == nil {
		if e := m.peek(); e != nil {
			err = removed(e)
		} else {
			err = m.err
		}
	}
	var ce *errChanged
	switch {
	case errors.As(err, &ce):
		return "first difference found: " + ce.what, ce.damaged, nil
	case errors.Is(err, fs.ErrNotExist):
		return "an entry vanished while it was checked", "", nil
	case err != nil:
		return "", "", err
	}
	return dirNote, "", nil
}

// hashFile is the hex SHA-256 of the file p's content (holes read as zeros).
func hashFile(p string, h hash.Hash, buf []byte) (string, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h.Reset()
	if _, err := io.CopyBuffer(h, f, buf); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func entryType(t fs.FileMode) string {
	switch t {
	case fs.ModeDir:
		return typeDir
	case fs.ModeSymlink:
		return typeSymlink
	case 0:
		return typeFile
	}
	return t.String()
}

func typeName(t string) string {
	switch t {
	case typeDir:
		return "directory"
	case typeSymlink:
		return "symlink"
	case typeFile:
		return "file"
	}
	return "special file (" + t + ")"
}

// Anomalies implements storage.Backend: committed snapshots whose tree
// changed after commit (modified), and entries of ferry's snapshot and
// staging areas that ferry did not make (foreign).
func (b *Backend) Anomalies(ctx context.Context, ds string) ([]storage.Anomaly, error) {
	const op = "list anomalies"
	if err := storage.CheckDataset(op, ds); err != nil {
		return nil, err
	}
	_, anomalies, err := b.scan(ds)
	if err != nil {
		return nil, storage.Wrap(err, storage.KindTemporary, op, ds, "")
	}
	staging, err := b.stagingAnomalies(ds)
	if err != nil {
		return nil, storage.Wrap(err, storage.KindTemporary, op, ds, "")
	}
	return append(anomalies, staging...), nil
}

// SnapshotsAndAnomalies implements storage.Inventorier: ListSnapshots and
// Anomalies from one scan, which walks each replica once.
func (b *Backend) SnapshotsAndAnomalies(ctx context.Context, ds string) ([]storage.Snapshot, []storage.Anomaly, error) {
	const op = "list snapshots"
	if err := storage.CheckDataset(op, ds); err != nil {
		return nil, nil, err
	}
	metas, anomalies, err := b.scan(ds)
	if err != nil {
		return nil, nil, storage.Wrap(err, storage.KindTemporary, op, ds, "")
	}
	staging, err := b.stagingAnomalies(ds)
	if err != nil {
		return nil, nil, storage.Wrap(err, storage.KindTemporary, op, ds, "")
	}
	snaps := make([]storage.Snapshot, 0, len(metas))
	for _, m := range metas {
		snaps = append(snaps, m.snapshot())
	}
	return snaps, append(anomalies, staging...), nil
}

// modifiedErr is the Conflict of an operation on a modified snapshot.
func (b *Backend) modifiedErr(op, ds, name, what string) error {
	return b.modified(ds, name, what, storage.OriginReceived).Err(op) // only replicas are checked
}

// modified is the anomaly of snapshot name changed after commit, with the
// command that removes all its files: metadata first, as destroy does, so
// that what is left is never mistaken for a snapshot.
func (b *Backend) modified(ds, name, what string, origin storage.Origin) storage.Anomaly {
	tree := b.snapTree(ds, name)
	return storage.Anomaly{Dataset: ds, Kind: storage.Modified, Name: name, ID: b.rel(tree), What: what, Origin: origin,
		Remove: storage.ShellCommand("rm", "-f", b.metaPath(ds, name)) + " && " + storage.ShellCommand("rm", "-rf", tree) + " && " +
			storage.ShellCommand("rm", "-f", b.manifestPath(ds, name), b.inodesPath(ds, name))}
}

// scan sorts the entries of .ferry/snapshots/<ds>: the intact complete
// snapshots (oldest first) and the modified or foreign ones. Only received
// snapshots (replicas) are walked for modifications. Trees and
// manifests of ferry's own unfinished commits and destroys are Partials'.
func (b *Backend) scan(ds string) ([]*meta, []storage.Anomaly, error) {
	return b.scanFresh(ds)
}

// scanFresh is scan, taking the snapshots named in fresh as intact
// unwalked: a receive's new snapshot (its commit recorded its inode list
// from its tree a moment ago) and its base (checked as the receive began).
func (b *Backend) scanFresh(ds string, fresh ...string) ([]*meta, []storage.Anomaly, error) {
	names, err := readDirNames(b.snapDir(ds))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	has := make(map[string]bool, len(names))
	for _, n := range names {
		has[n] = true
	}
	var intact []*meta
	var anomalies []storage.Anomaly
	for _, n := range names {
		if strings.HasPrefix(n, ".") || strings.HasSuffix(n, ".tmp") || strings.HasSuffix(n, ".manifest") {
			continue // ferry's hidden lists, atomic writes in progress, manifests
		}
		if name, ok := strings.CutSuffix(n, ".meta.json"); ok {
			if storage.CheckSnapshotName("", ds, name) != nil {
				anomalies = append(anomalies, storage.Anomaly{Dataset: ds, Kind: storage.Foreign, Name: n, ID: b.rel(filepath.Join(b.snapDir(ds), n)),
					What: "a file named like ferry's metadata, of a snapshot name ferry never uses"})
				continue
			}
			m, ok, err := b.loadMeta(ds, name)
			what, origin := "", storage.Origin("")
			switch {
			case err != nil && has[name]:
				what = "its metadata is unreadable (" + err.Error() + ")"
			case err != nil:
				what = "its tree is gone (removed by hand?)"
			case !ok:
				continue // removed while we looked
			case m.ReceivedGUID != "" && !slices.Contains(fresh, name):
				// Replicas are checked; local snapshots are re-hashed byte
				// by byte whenever they are sent, which refuses a modified one.
				if what, err = b.modification(ds, name, false); err != nil {
					return nil, nil, err
				}
				origin = storage.OriginReceived
			}
			if what != "" {
				anomalies = append(anomalies, b.modified(ds, name, what, origin))
				continue
			}
			intact = append(intact, m)
			continue
		}
		if has[n+".meta.json"] || has[n+".manifest"] {
			continue // a snapshot's tree, or ferry's unfinished commit or destroy
		}
		if a := b.foreignAt(ds, n); a != nil {
			anomalies = append(anomalies, *a)
		}
	}
	slices.SortStableFunc(intact, compareMetas)
	return intact, anomalies, nil
}

// foreignAt returns the foreign item that occupies snapshot name's place in
// staging or among the snapshots (something without metadata or manifest,
// which ferry never leaves there), if any.
func (b *Backend) foreignAt(ds, name string) *storage.Anomaly {
	if p := filepath.Join(b.stagingDir(ds), name); stagingForeign(p) != "" {
		return &storage.Anomaly{Dataset: ds, Kind: storage.Foreign, Name: name, ID: b.rel(p), What: stagingForeign(p)}
	}
	p := b.snapTree(ds, name)
	fi, err := os.Lstat(p)
	if err != nil {
		return nil
	}
	for _, own := range []string{b.metaPath(ds, name), b.manifestPath(ds, name)} {
		if _, err := os.Lstat(own); err == nil {
			return nil
		}
	}
	what := "a directory ferry has no record of (no metadata, no manifest)"
	if !fi.IsDir() {
		what = "a " + typeName(entryType(fi.Mode().Type())) + " ferry has no record of"
	}
	return &storage.Anomaly{Dataset: ds, Kind: storage.Foreign, Name: name, ID: b.rel(p), What: what}
}

// stagingForeign says what a staging entry is when ferry did not make it:
// not a directory, or a directory holding anything but a receive's own
// files. "" for a receive's staging directory (even an empty one: a
// receive creates it before its first file).
func stagingForeign(p string) string {
	fi, err := os.Lstat(p)
	if err != nil {
		return ""
	}
	if !fi.IsDir() {
		return "a " + typeName(entryType(fi.Mode().Type())) + " in the staging area, where ferry keeps only receive directories"
	}
	names, err := readDirNames(p)
	if err != nil {
		return ""
	}
	for _, n := range names {
		switch strings.TrimSuffix(n, ".tmp") {
		case stTree, stTmp, stStream, stCheckpoint, stManifest, stDirModes:
		default:
			return fmt.Sprintf("a directory in the staging area holding %q, which no receive of ferry's writes", n)
		}
	}
	return ""
}

// stagingAnomalies lists the foreign entries of the dataset's staging area.
func (b *Backend) stagingAnomalies(ds string) ([]storage.Anomaly, error) {
	names, err := readDirNames(b.stagingDir(ds))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []storage.Anomaly
	for _, n := range names {
		p := filepath.Join(b.stagingDir(ds), n)
		if what := stagingForeign(p); what != "" {
			out = append(out, storage.Anomaly{Dataset: ds, Kind: storage.Foreign, Name: n, ID: b.rel(p), What: what})
		}
	}
	return out, nil
}
