package dir

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/metafile"
)

// Files in a receive's staging directory <root>/.ferry/staging/<dataset>/<name>/.
const (
	stTree       = "tree"            // the snapshot being built
	stTmp        = "tmp"             // files being written before their rename into tree
	stStream     = "stream.json"     // the stream's header, written before any entry
	stCheckpoint = "checkpoint.json" // the last durable position
	stManifest   = "manifest"        // written at the end
	// stDirModes lists, when ferry is not root, the true mode of every
	// directory the stream carried ("quoted-path octal-mode" lines in
	// stream order): staged directories keep owner rwx until the end.
	stDirModes = "dirmodes"
)

// streamInfo is the stream's header as stored in the staging directory.
type streamInfo struct {
	Version        string    `json:"version"`
	Dataset        string    `json:"dataset"` // the dataset on the sending host
	Snapshot       string    `json:"snapshot"`
	GUID           string    `json:"guid"`
	ManifestDigest string    `json:"manifest_digest"`
	ParentSnapshot string    `json:"parent_snapshot,omitempty"`
	ParentGUID     string    `json:"parent_guid,omitempty"`
	ParentDigest   string    `json:"parent_digest,omitempty"`
	TargetParent   string    `json:"target_parent,omitempty"` // req.Parent
	StartedAt      time.Time `json:"started_at"`
}

// checkpoint is how far a receive got with everything before it durable.
type checkpoint struct {
	// Position is the stream position right after the last applied entry's
	// content; Pad bytes of tar padding follow it before the next header,
	// which a resumed receive skips.
	Position resume.Position `json:"position"`
	Pad      int64           `json:"pad"`
	// DirModesLen is the length of stDirModes at this checkpoint.
	DirModesLen int64 `json:"dir_modes_len,omitempty"`
	Entries     int64 `json:"entries"`
	// LastPath (strconv-quoted) is the last applied entry, for the order check.
	LastPath string    `json:"last_path"`
	At       time.Time `json:"at"`
}

func loadJSON(p string, v any) (bool, error) {
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("corrupt %s: %w", p, err)
	}
	return true, nil
}

func writeJSON(p string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return metafile.WriteAtomic(p, append(data, '\n'))
}

// Receive implements storage.Backend.
func (b *Backend) Receive(ctx context.Context, req storage.ReceiveRequest, s resume.Stream) (storage.Snapshot, error) {
	const op = "receive"
	ds, name := req.Dataset, req.Name
	unlock, err := b.locks.LockSnapshot(op, ds, name, req.Parent)
	if err != nil {
		return storage.Snapshot{}, err
	}
	defer unlock()

	if _, ok, err := b.loadMeta(ds, name); err != nil {
		return storage.Snapshot{}, storage.Wrap(err, storage.KindConflict, op, ds, name)
	} else if ok {
		return storage.Snapshot{}, storage.Errorf(storage.KindConflict, op, ds, name,
			"the target already holds a complete snapshot of that name; destroy it first if it is not the one being sent",
			"snapshot %q already exists on the target", name)
	}
	var parent *meta
	if req.Parent != "" {
		if parent, err = b.mustMeta(op, ds, req.Parent); err != nil {
			var se *storage.Error
			if errors.As(err, &se) && se.Kind == storage.KindNotFound {
				se.Err = fmt.Errorf("incremental base %q is not on the target: %w", req.Parent, se.Err)
				se.Fix = "send a full stream, or restore the base snapshot on the target"
			}
			return storage.Snapshot{}, err
		}
	}

	rx := &receiver{
		b: b, ctx: ctx, req: req, s: s, parent: parent,
		dir: filepath.Join(b.stagingDir(ds), name),
		buf: make([]byte, 1<<20), h: sha256.New(),
	}
	rx.tree = filepath.Join(rx.dir, stTree)
	rx.tmp = filepath.Join(rx.dir, stTmp)

	if req.Resume {
		var info streamInfo
		var ck checkpoint
		okInfo, err1 := loadJSON(filepath.Join(rx.dir, stStream), &info)
		okCk, err2 := loadJSON(filepath.Join(rx.dir, stCheckpoint), &ck)
		if err := errors.Join(err1, err2); err != nil {
			b.discardStaging(ds, name)
			return storage.Snapshot{}, storage.Wrap(err, storage.KindInvalid, op, ds, name)
		}
		switch pos := s.Position(); {
		case okInfo && okCk:
			if pos.Offset != ck.Position.Offset || !bytes.Equal(pos.HashState, ck.Position.HashState) {
				return storage.Snapshot{}, storage.Errorf(storage.KindInvalid, op, ds, name,
					"resume from the partial's position, or receive without resume",
					"stream starts at offset %d but the partial receive is durable up to offset %d", pos.Offset, ck.Position.Offset)
			}
			if info.TargetParent != req.Parent {
				return storage.Snapshot{}, storage.Errorf(storage.KindInvalid, op, ds, name, "receive without resume",
					"the partial receive was based on %q, not %q", info.TargetParent, req.Parent)
			}
			rx.info, rx.ck = &info, &ck
		case pos.Offset == 0:
			// Nothing durable to resume: start over.
			if err := b.discardStaging(ds, name); err != nil {
				return storage.Snapshot{}, storage.Wrap(err, storage.KindTemporary, op, ds, name)
			}
		default:
			return storage.Snapshot{}, storage.Errorf(storage.KindInvalid, op, ds, name, "receive from offset 0 without resume",
				"stream starts at offset %d but there is no resumable partial receive", pos.Offset)
		}
	} else if err := b.discardStaging(ds, name); err != nil {
		return storage.Snapshot{}, storage.Wrap(err, storage.KindTemporary, op, ds, name)
	}

	snap, err := rx.run()
	if err != nil {
		err = storage.Wrap(err, storage.KindTemporary, op, ds, name)
		switch storage.KindOf(err) {
		case storage.KindTemporary, storage.KindNoSpace:
			// Kept as a partial: resumable or discarded by the workflow.
		default:
			// Refused: retrying the same stream fails again.
			b.discardStaging(ds, name)
		}
		if rx.treeFd > 0 {
			unix.Close(rx.treeFd)
		}
		if rx.tmpFd > 0 {
			unix.Close(rx.tmpFd)
		}
		return storage.Snapshot{}, err
	}
	return snap, nil
}

// discardStaging removes a receive's staging directory and any tree or
// manifest of that name left in place without metadata.
func (b *Backend) discardStaging(ds, name string) error {
	err := removeTree(filepath.Join(b.stagingDir(ds), name))
	os.Remove(b.stagingDir(ds))
	if _, ok, _ := b.loadMeta(ds, name); !ok {
		err = errors.Join(err, removeTree(b.snapTree(ds, name)))
		if rerr := os.Remove(b.manifestPath(ds, name)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		os.Remove(b.snapDir(ds))
	}
	return err
}

type receiver struct {
	b      *Backend
	ctx    context.Context
	req    storage.ReceiveRequest
	s      resume.Stream
	parent *meta

	dir, tree, tmp string
	treeFd, tmpFd  int
	info           *streamInfo
	ck             *checkpoint // where a resumed receive starts; then the last one written

	entries  int64
	last     string // last applied path
	sawEnd   bool
	tmpSeq   int64
	dirty    []string
	ckOffset int64
	ckTime   time.Time

	dirModes *os.File // stDirModes, when not root

	buf []byte
	h   hash.Hash
}

func invalid(format string, args ...any) error {
	return &storage.Error{Kind: storage.KindInvalid, Op: "receive", Err: fmt.Errorf(format, args...)}
}

// streamErr classifies an error reading the stream: a corrupt archive is
// invalid, anything else (a dropped link, a trailer check) temporary.
func streamErr(err error) error {
	if errors.Is(err, tar.ErrHeader) || errors.Is(err, tar.ErrFieldTooLong) || errors.Is(err, tar.ErrInsecurePath) {
		return invalid("corrupt stream: %w", err)
	}
	return fmt.Errorf("reading the stream: %w", err)
}

func (rx *receiver) run() (storage.Snapshot, error) {
	var tr *tar.Reader
	if rx.ck == nil {
		if err := os.MkdirAll(rx.tmp, 0o700); err != nil {
			return storage.Snapshot{}, err
		}
		tr = tar.NewReader(rx.s)
		if err := rx.readHeader(tr); err != nil {
			return storage.Snapshot{}, err
		}
		if err := rx.populate(); err != nil {
			return storage.Snapshot{}, err
		}
		if err := syncFS(rx.dir); err != nil {
			return storage.Snapshot{}, err
		}
	} else {
		// Continue after the checkpoint: skip the padding of the last
		// applied file, then read headers as usual.
		if rx.ck.Pad > 0 {
			if _, err := io.CopyN(io.Discard, rx.s, rx.ck.Pad); err != nil {
				return storage.Snapshot{}, streamErr(err)
			}
		}
		tr = tar.NewReader(rx.s)
		last, err := strconv.Unquote(rx.ck.LastPath)
		if err != nil {
			return storage.Snapshot{}, invalid("corrupt checkpoint: %v", err)
		}
		rx.entries, rx.last = rx.ck.Entries, last
		// Whatever the interrupted attempt had in tmp is garbage.
		if err := removeTree(rx.tmp); err != nil {
			return storage.Snapshot{}, err
		}
		if err := os.Mkdir(rx.tmp, 0o700); err != nil {
			return storage.Snapshot{}, err
		}
	}
	var err error
	if rx.treeFd, err = unix.Open(rx.tree, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err != nil {
		return storage.Snapshot{}, err
	}
	defer func() { unix.Close(rx.treeFd); rx.treeFd = 0 }()
	if rx.tmpFd, err = unix.Open(rx.tmp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err != nil {
		return storage.Snapshot{}, err
	}
	defer func() { unix.Close(rx.tmpFd); rx.tmpFd = 0 }()
	if !rx.b.isRoot {
		// Entries after the checkpoint are applied again: drop their lines.
		var keep int64
		if rx.ck != nil {
			keep = rx.ck.DirModesLen
		}
		if rx.dirModes, err = os.OpenFile(filepath.Join(rx.dir, stDirModes), os.O_WRONLY|os.O_CREATE, 0o600); err != nil {
			return storage.Snapshot{}, err
		}
		defer rx.dirModes.Close()
		if err := rx.dirModes.Truncate(keep); err != nil {
			return storage.Snapshot{}, err
		}
		if _, err := rx.dirModes.Seek(keep, io.SeekStart); err != nil {
			return storage.Snapshot{}, err
		}
	}
	rx.ckOffset, rx.ckTime = rx.s.Position().Offset, time.Now()
	var endAt int64

	for {
		if err := rx.ctx.Err(); err != nil {
			return storage.Snapshot{}, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			if !rx.sawEnd {
				return storage.Snapshot{}, fmt.Errorf("the stream ended before its end record (after %d entries)", rx.entries)
			}
			// archive/tar also reports a clean EOF after zero or one of the
			// two end-of-archive blocks; the end record's padding is under
			// one block, so both blocks were read iff 1024 bytes went by.
			if rx.s.Position().Offset-endAt < 1024 {
				return storage.Snapshot{}, fmt.Errorf("the stream ended inside its end-of-archive blocks")
			}
			break
		}
		if err != nil {
			return storage.Snapshot{}, streamErr(err)
		}
		if rx.sawEnd {
			return storage.Snapshot{}, invalid("entry %q after the stream's end record", hdr.Name)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			end, ok := hdr.PAXRecords[paxEnd]
			if !ok {
				return storage.Snapshot{}, invalid("unexpected global header in the stream")
			}
			if end != strconv.FormatInt(rx.entries, 10) {
				return storage.Snapshot{}, invalid("the stream's end record counts %s entries, %d were received", end, rx.entries)
			}
			rx.sawEnd = true
			endAt = rx.s.Position().Offset
			continue
		}
		if err := rx.apply(hdr, tr); err != nil {
			return storage.Snapshot{}, err
		}
		rx.entries++
		rx.last = hdr.Name
		pos := rx.s.Position()
		if pos.Offset-rx.ckOffset >= rx.b.ckptBytes || time.Since(rx.ckTime) >= rx.b.ckptEvery {
			var pad int64
			if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
				pad = -hdr.Size & 511
			}
			if err := rx.checkpoint(pos, pad); err != nil {
				return storage.Snapshot{}, err
			}
		}
	}
	// The archive is complete; the stream must now end cleanly (the data
	// plane checks its trailer when it reaches io.EOF).
	for {
		n, err := rx.s.Read(rx.buf)
		for _, c := range rx.buf[:n] {
			if c != 0 {
				return storage.Snapshot{}, invalid("data after the end of the archive")
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return storage.Snapshot{}, streamErr(err)
		}
	}
	return rx.finish()
}

func (rx *receiver) readHeader(tr *tar.Reader) error {
	hdr, err := tr.Next()
	if err != nil {
		if err == io.EOF {
			return fmt.Errorf("empty stream")
		}
		return streamErr(err)
	}
	rec := hdr.PAXRecords
	if hdr.Typeflag != tar.TypeXGlobalHeader || rec[paxVersion] == "" {
		return invalid("not a ferry dir stream (no stream header)")
	}
	if rec[paxVersion] != streamVersion {
		return &storage.Error{Kind: storage.KindUnsupported, Op: "receive", Err: fmt.Errorf("stream version %q, this ferry reads version %s", rec[paxVersion], streamVersion),
			Fix: "run the same ferry version on both hosts"}
	}
	info := &streamInfo{
		Version: rec[paxVersion], Dataset: rec[paxDataset], Snapshot: rec[paxSnapshot], GUID: rec[paxGUID],
		ManifestDigest: rec[paxManifestDigest], ParentSnapshot: rec[paxParentSnapshot], ParentGUID: rec[paxParentGUID],
		ParentDigest: rec[paxParentDigest], TargetParent: rx.req.Parent, StartedAt: time.Now().UTC(),
	}
	switch {
	case info.GUID == "" || info.ManifestDigest == "":
		return invalid("stream header lacks the snapshot's identity")
	case info.Snapshot != rx.req.Name:
		return invalid("the stream carries snapshot %q, not %q", info.Snapshot, rx.req.Name)
	case rx.req.SourceGUID != "" && info.GUID != rx.req.SourceGUID:
		return invalid("the stream carries snapshot guid %s, not %s", info.GUID, rx.req.SourceGUID)
	case rx.parent == nil && info.ParentGUID != "":
		return invalid("an incremental stream (from %q) cannot be received as a full one", info.ParentSnapshot)
	case rx.parent != nil && info.ParentGUID == "":
		return invalid("a full stream cannot be received as an incremental on %q", rx.req.Parent)
	case rx.parent != nil && info.ParentGUID != rx.parent.ReceivedGUID && info.ParentGUID != rx.parent.GUID:
		return &storage.Error{Kind: storage.KindConflict, Op: "receive", Err: fmt.Errorf("the stream is based on snapshot guid %s but the target's %q is %s (received from %s)",
			info.ParentGUID, rx.req.Parent, rx.parent.GUID, rx.parent.ReceivedGUID)}
	case rx.parent != nil && info.ParentDigest != rx.parent.Digest:
		return &storage.Error{Kind: storage.KindConflict, Op: "receive", Err: fmt.Errorf("the target's base %q has manifest digest %s, the source's %s",
			rx.req.Parent, rx.parent.Digest, info.ParentDigest)}
	}
	rx.info = info
	return writeJSON(filepath.Join(rx.dir, stStream), info)
}

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
			if err := os.Link(filepath.Join(ptree, filepath.FromSlash(e.Path)), dst); err != nil {
				return err
			}
		case typeSymlink:
			if err := os.Symlink(e.Link, dst); err != nil {
				return err
			}
			if err := rx.b.own(dst, e.UID, e.GID); err != nil {
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
		if err := os.Chmod(dst, storage.FileMode(rx.b.stagingDirMode(e.Mode))); err != nil {
			return err
		}
		if err := setTimes(dst, e.Mtime, e.Mtime); err != nil {
			return err
		}
	}
	return man2.err
}

// stagingDirMode is the mode a directory has while staged: its true mode
// as root (permissions do not stop root), with owner rwx added otherwise so
// that ferry can fill it. The true modes are then kept in stDirModes.
func (b *Backend) stagingDirMode(mode uint32) uint32 {
	if b.isRoot {
		return mode
	}
	return mode | 0o700
}

// recordDirMode appends a directory's true mode to stDirModes (not root).
func (rx *receiver) recordDirMode(name string, mode uint32) error {
	if rx.b.isRoot {
		return nil
	}
	if _, err := fmt.Fprintf(rx.dirModes, "%s %o\n", strconv.Quote(name), mode); err != nil {
		return err
	}
	rx.markDirty(rx.dirModes.Name())
	return nil
}

// checkEntryName accepts clean relative paths only ("." is the root).
func checkEntryName(name string) error {
	if name == "." {
		return nil
	}
	switch {
	case name == "":
		return invalid("entry with an empty name")
	case strings.ContainsRune(name, 0):
		return invalid("entry name %q contains NUL", name)
	case strings.HasPrefix(name, "/"):
		return invalid("entry %q has an absolute path", name)
	case path.Clean(name) != name:
		return invalid("entry name %q is not a clean relative path", name)
	case len(name) > 4096:
		return invalid("entry name too long")
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." || c == "." || c == "" {
			return invalid("entry %q escapes or is not clean", name)
		}
		if len(c) > 255 {
			return invalid("entry %q has a component longer than 255 bytes", name)
		}
	}
	return nil
}

func (rx *receiver) markDirty(p string) {
	if n := len(rx.dirty); n > 0 && rx.dirty[n-1] == p {
		return
	}
	rx.dirty = append(rx.dirty, p)
}

// apply applies one entry to the staging tree. Applying an entry again
// (after a resume) gives the same result.
func (rx *receiver) apply(hdr *tar.Header, r io.Reader) error {
	name := hdr.Name
	if err := checkEntryName(name); err != nil {
		return err
	}
	if rx.last != "" && storage.ComparePaths(rx.last, name) >= 0 {
		return invalid("entry %q out of order after %q", name, rx.last)
	}
	whiteout := hdr.PAXRecords[paxWhiteout] == "1"
	mode := uint32(hdr.Mode) & 0o7777
	mtime := hdr.ModTime.UnixNano()
	switch {
	case whiteout:
		if hdr.Typeflag != tar.TypeReg || hdr.Size != 0 || name == "." {
			return invalid("malformed whiteout %q", name)
		}
	case hdr.Typeflag == tar.TypeDir:
	case name == ".":
		return invalid("the root entry must be a directory")
	case hdr.Typeflag == tar.TypeReg, hdr.Typeflag == tar.TypeSymlink:
	case hdr.Typeflag == tar.TypeLink:
		return invalid("entry %q is a hard link, which dir streams never carry", name)
	default:
		return invalid("entry %q has type %q (devices, fifos and the like are not part of a dir stream)", name, string(hdr.Typeflag))
	}
	if name == "." {
		if err := rx.b.own(rx.tree, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
		if err := os.Chmod(rx.tree, storage.FileMode(rx.b.stagingDirMode(mode))); err != nil {
			return err
		}
		if err := rx.recordDirMode(name, mode); err != nil {
			return err
		}
		rx.markDirty(rx.tree)
		return setTimes(rx.tree, mtime, mtime)
	}

	pfd, base, err := openParent(rx.treeFd, name)
	if err != nil {
		switch {
		case errors.Is(err, errUnsafePath):
			return invalid("entry %q: %v", name, err)
		case errors.Is(err, unix.ENOENT) && whiteout:
			return nil
		case errors.Is(err, unix.ENOENT):
			return invalid("entry %q: its parent directory is not in the stream", name)
		}
		return err
	}
	defer unix.Close(pfd)
	parentAbs := filepath.Join(rx.tree, filepath.FromSlash(path.Dir(name)))
	var pst unix.Stat_t
	if err := unix.Fstat(pfd, &pst); err != nil {
		return err
	}
	child := filepath.Join(rx.tree, filepath.FromSlash(name))
	cur, exists, err := lstatAt(pfd, base)
	if err != nil {
		return err
	}
	changed := false
	replace := func() error {
		if exists {
			changed = true
			return removeAt(pfd, base)
		}
		return nil
	}

	switch {
	case whiteout:
		if err := replace(); err != nil {
			return err
		}
	case hdr.Typeflag == tar.TypeDir:
		if !exists || !isDirMode(cur.Mode) {
			if err := replace(); err != nil {
				return err
			}
			if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
				return err
			}
			changed = true
		}
		if rx.b.isRoot {
			if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
		}
		if err := unix.Fchmodat(pfd, base, rx.b.stagingDirMode(mode), 0); err != nil {
			return err
		}
		if err := rx.recordDirMode(name, mode); err != nil {
			return err
		}
		if err := setTimesAt(pfd, base, mtime, mtime); err != nil {
			return err
		}
		rx.markDirty(child)
	case hdr.Typeflag == tar.TypeSymlink:
		if hdr.Linkname == "" || strings.ContainsRune(hdr.Linkname, 0) {
			return invalid("symlink %q has an empty or NUL target", name)
		}
		tmp := rx.tmpName()
		if err := unix.Symlinkat(hdr.Linkname, rx.tmpFd, tmp); err != nil {
			return err
		}
		if err := rx.finishTmp(tmp, hdr, mtime, pfd, base); err != nil {
			return err
		}
		changed = true
	default: // regular file
		tmp := rx.tmpName()
		if err := rx.writeFile(tmp, hdr, mode, r); err != nil {
			unix.Unlinkat(rx.tmpFd, tmp, 0)
			return err
		}
		if err := rx.finishTmp(tmp, hdr, mtime, pfd, base); err != nil {
			return err
		}
		rx.markDirty(child)
		changed = true
	}
	if changed {
		// Restore the parent's mtime (already final) after touching its entries.
		if err := setTimes(parentAbs, pst.Atim.Nano(), pst.Mtim.Nano()); err != nil {
			return err
		}
		rx.markDirty(parentAbs)
	}
	return nil
}

func (rx *receiver) tmpName() string {
	rx.tmpSeq++
	return "t" + strconv.FormatInt(rx.tmpSeq, 10)
}

// finishTmp sets ownership and times on a prepared entry in tmp and renames
// it over whatever is at the target.
func (rx *receiver) finishTmp(tmp string, hdr *tar.Header, mtime int64, pfd int, base string) error {
	if hdr.Typeflag == tar.TypeSymlink && rx.b.isRoot {
		if err := unix.Fchownat(rx.tmpFd, tmp, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	if err := setTimesAt(rx.tmpFd, tmp, mtime, mtime); err != nil {
		return err
	}
	// A directory in the way goes first; a file or symlink is replaced by
	// the rename itself.
	if cur, ok, err := lstatAt(pfd, base); err != nil {
		return err
	} else if ok && isDirMode(cur.Mode) {
		if err := removeAt(pfd, base); err != nil {
			return err
		}
	}
	return unix.Renameat(rx.tmpFd, tmp, pfd, base)
}

func (rx *receiver) writeFile(tmp string, hdr *tar.Header, mode uint32, r io.Reader) error {
	fd, err := unix.Openat(rx.tmpFd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), tmp)
	defer f.Close()
	rx.h.Reset()
	n, err := io.CopyBuffer(io.MultiWriter(f, rx.h), r, rx.buf)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return err // writing failed (ENOSPC and the like)
		}
		return streamErr(err)
	}
	if n != hdr.Size {
		return streamErr(io.ErrUnexpectedEOF)
	}
	if want := hdr.PAXRecords[paxSHA256]; want != "" && want != hex.EncodeToString(rx.h.Sum(nil)) {
		return invalid("content of %q does not match its hash", hdr.Name)
	}
	if rx.b.isRoot {
		if err := f.Chown(hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	if err := f.Chmod(storage.FileMode(mode)); err != nil {
		return err
	}
	return f.Close()
}

// checkpoint makes everything applied so far durable, records pos, and
// tells the caller.
func (rx *receiver) checkpoint(pos resume.Position, pad int64) error {
	if len(rx.dirty) > 4096 {
		if err := syncFS(rx.dir); err != nil {
			return err
		}
	} else {
		for _, p := range rx.dirty {
			if err := syncPath(p); err != nil {
				return err
			}
		}
	}
	rx.dirty = rx.dirty[:0]
	ck := &checkpoint{Position: pos, Pad: pad, Entries: rx.entries, LastPath: strconv.Quote(rx.last), At: time.Now().UTC()}
	if rx.dirModes != nil {
		off, err := rx.dirModes.Seek(0, io.SeekCurrent)
		if err != nil {
			return err
		}
		ck.DirModesLen = off
	}
	if err := writeJSON(filepath.Join(rx.dir, stCheckpoint), ck); err != nil {
		return err
	}
	rx.ck, rx.ckOffset, rx.ckTime = ck, pos.Offset, time.Now()
	if rx.req.Durable != nil {
		rx.req.Durable(pos)
	}
	return nil
}

// finish checks the staged tree against the stream's manifest digest, makes
// it read-only and moves it into place as a complete snapshot.
func (rx *receiver) finish() (storage.Snapshot, error) {
	b, ds, name := rx.b, rx.req.Dataset, rx.req.Name
	if err := syncFS(rx.dir); err != nil {
		return storage.Snapshot{}, err
	}
	mw, err := createManifest(filepath.Join(rx.dir, stManifest))
	if err != nil {
		return storage.Snapshot{}, err
	}
	w := &treeWalker{root: rx.tree, out: mw, buf: rx.buf, h: rx.h, strip: true, trueDirModes: !b.isRoot}
	if !b.isRoot {
		if w.dirModes, err = openDirModes(filepath.Join(rx.dir, stDirModes)); err != nil {
			mw.abort()
			return storage.Snapshot{}, err
		}
		defer w.dirModes.close()
	}
	if rx.parent != nil {
		if w.parent, err = openManifest(b.manifestPath(ds, rx.req.Parent)); err != nil {
			mw.abort()
			return storage.Snapshot{}, err
		}
		defer w.parent.close()
		w.parentTree = b.snapTree(ds, rx.req.Parent)
	}
	if err := w.walk(); err != nil {
		mw.abort()
		return storage.Snapshot{}, err
	}
	digest, err := mw.close()
	if err != nil {
		return storage.Snapshot{}, err
	}
	if digest != rx.info.ManifestDigest {
		return storage.Snapshot{}, invalid("the received tree's manifest digest %s differs from the stream's %s", digest, rx.info.ManifestDigest)
	}
	if err := syncFS(rx.dir); err != nil {
		return storage.Snapshot{}, err
	}
	if err := removeTree(b.snapTree(ds, name)); err != nil {
		return storage.Snapshot{}, err
	}
	if err := os.MkdirAll(b.snapDir(ds), 0o700); err != nil {
		return storage.Snapshot{}, err
	}
	if err := os.Rename(filepath.Join(rx.dir, stManifest), b.manifestPath(ds, name)); err != nil {
		return storage.Snapshot{}, err
	}
	if err := os.Rename(rx.tree, b.snapTree(ds, name)); err != nil {
		return storage.Snapshot{}, err
	}
	if err := os.Chmod(b.snapTree(ds, name), storage.FileMode(w.rootMode&^0o222)); err != nil {
		return storage.Snapshot{}, err
	}
	m := &meta{
		Version: 1, Dataset: ds, Name: name, GUID: uuid.NewString(), ReceivedGUID: rx.info.GUID,
		ParentGUID: rx.info.ParentGUID, CreatedAt: time.Now().UTC(), Digest: digest, Entries: mw.n,
	}
	if err := b.commitMeta(m); err != nil {
		return storage.Snapshot{}, err
	}
	removeTree(rx.dir)
	os.Remove(b.stagingDir(ds))
	return m.snapshot(), nil
}

// dirModesReader reads stDirModes in order.
type dirModesReader struct {
	f    *os.File
	r    *bufio.Reader
	next *Entry
	err  error
}

func openDirModes(p string) (*dirModesReader, error) {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return &dirModesReader{}, nil
	}
	if err != nil {
		return nil, err
	}
	d := &dirModesReader{f: f, r: bufio.NewReader(f)}
	d.advance()
	return d, nil
}

func (d *dirModesReader) advance() {
	d.next = nil
	if d.r == nil || d.err != nil {
		return
	}
	line, err := d.r.ReadString('\n')
	if err == io.EOF && line == "" {
		return
	}
	if err != nil {
		d.err = err
		return
	}
	q, err := strconv.QuotedPrefix(line)
	var p string
	var mode uint64
	if err == nil {
		p, err = strconv.Unquote(q)
	}
	if err == nil {
		mode, err = strconv.ParseUint(strings.TrimSpace(line[len(q):]), 8, 32)
	}
	if err != nil {
		d.err = fmt.Errorf("corrupt %s line %q", stDirModes, line)
		return
	}
	d.next = &Entry{Path: p, Type: typeDir, Mode: uint32(mode)}
}

// seek returns the recorded mode of rel, if any.
func (d *dirModesReader) seek(rel string) (*Entry, error) {
	for d.next != nil && storage.ComparePaths(d.next.Path, rel) < 0 {
		d.advance()
	}
	if d.next != nil && d.next.Path == rel {
		e := d.next
		d.advance()
		return e, nil
	}
	return nil, d.err
}

func (d *dirModesReader) close() {
	if d.f != nil {
		d.f.Close()
	}
}
