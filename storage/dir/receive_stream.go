// Reading a dir stream: its header, its entries in order, its end record.

package dir

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/metafile"
)

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
	// read counts what the tar reader took from s; readBase + read.n is
	// the stream offset. The entry loop's checkpoint test needs only that:
	// s.Position() waits for the stream's hasher and marshals its state.
	read     *countedReader
	readBase int64

	dirModes *os.File // stDirModes, when not root

	// writing says what the receive is writing, for a NoSpace error: an
	// entry's path in the snapshot, never a staging file's name.
	writing string

	// written lists the regular files this receive wrote, in stream
	// order, with the content hash checked as they were written: the
	// commit's manifest takes them from here instead of reading the files
	// again.
	written []writtenFile
	wrote   *writtenFile // set by writeFile

	buf []byte
	h   hash.Hash
}

// countedReader counts the bytes read through it.
type countedReader struct {
	r io.Reader
	n int64
}

func (c *countedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
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
	rx.read = &countedReader{r: rx.s}
	if rx.ck == nil {
		if err := rx.b.lay.MkdirAll(rx.tmp); err != nil {
			return storage.Snapshot{}, err
		}
		tr = tar.NewReader(rx.read)
		if err := rx.readHeader(tr); err != nil {
			return storage.Snapshot{}, err
		}
		rx.writing = fmt.Sprintf("the links to the incremental base %q", rx.req.Parent)
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
		tr = tar.NewReader(rx.read)
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
	rx.readBase = rx.ckOffset - rx.read.n
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
		rx.writing = strconv.Quote(hdr.Name)
		if err := rx.apply(hdr, tr); err != nil {
			return storage.Snapshot{}, err
		}
		rx.entries++
		rx.last = hdr.Name
		if rx.readBase+rx.read.n-rx.ckOffset >= rx.b.ckptBytes || time.Since(rx.ckTime) >= rx.b.ckptEvery {
			pos := rx.s.Position()
			var pad int64
			if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
				pad = -hdr.Size & 511
			}
			rx.writing = "the receive's checkpoint after " + strconv.Quote(hdr.Name)
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
	rx.writing = "the received snapshot's manifest"
	return rx.finish()
}

// noSpace turns a receive that ran out of space into the shared NoSpace
// error: what was being written, the snapshot's expected size, the space
// free now that the partial is discarded. The cause is the bare errno, as
// the path in it is a staging file's.
func (rx *receiver) noSpace(err error) error {
	cause := err
	for _, errno := range []unix.Errno{unix.ENOSPC, unix.EDQUOT} {
		if errors.Is(err, errno) {
			cause = errno
		}
	}
	what := rx.writing
	if what == "" {
		what = "the receive's staging area"
	}
	return storage.NoSpace("receive", rx.req.Dataset, rx.req.Name, what, rx.req.ExpectedSize, rx.s.Position().Offset, rx.b.root, cause)
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
	if rec[paxVersion] != streamVersion && rec[paxVersion] != "1" {
		return &storage.Error{Kind: storage.KindUnsupported, Op: "receive", Err: fmt.Errorf("stream version %q, this ferry reads versions 1 and %s", rec[paxVersion], streamVersion),
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
	if rx.parent != nil {
		info.TargetParentGUID = rx.parent.GUID
	}
	rx.info = info
	return metafile.WriteJSON(filepath.Join(rx.dir, stStream), info)
}
