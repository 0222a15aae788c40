package dir

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ferry-nas/ferry/storage"
)

// Stream format constants: PAX records in ferry's own vendor namespace.
const (
	// streamVersion 2 added hard links, xattrs and sparse files; version 1
	// streams (which have none) are still received.
	streamVersion = "2"

	paxVersion        = "FERRY.version"
	paxDataset        = "FERRY.dataset"
	paxSnapshot       = "FERRY.snapshot"
	paxGUID           = "FERRY.guid"
	paxParentGUID     = "FERRY.parent_guid"
	paxParentSnapshot = "FERRY.parent_snapshot"
	paxParentDigest   = "FERRY.parent_digest"
	paxManifestDigest = "FERRY.manifest_digest"
	paxEnd            = "FERRY.end"
	paxWhiteout       = "FERRY.whiteout"
	paxSHA256         = "FERRY.sha256"
	// paxSparse lists a sparse file's data segments ("off+len,..."; the
	// body holds only their bytes), paxSize its full size.
	paxSparse = "FERRY.sparse"
	paxSize   = "FERRY.size"
	// paxXattr prefixes an extended attribute's name (the usual convention).
	paxXattr = "SCHILY.xattr."
)

// change is one step of the difference between two manifests.
type change struct {
	e        *Entry // the entry to write; for a whiteout only Path is set
	whiteout bool
}

// diff merges two manifests (old may be empty) and calls fn for every entry
// of the new one that differs from the old, and for every old path that is
// gone (a whiteout; nothing below a removed or replaced directory).
func diff(old, cur *manifestReader, fn func(change) error) error {
	var gone string // a removed directory: skip its old subtree
	inGone := func(p string) bool {
		return gone != "" && (gone == "." || strings.HasPrefix(p, gone+"/"))
	}
	for {
		o, n := old.peek(), cur.peek()
		if o != nil && inGone(o.Path) {
			old.take()
			continue
		}
		if o == nil && n == nil {
			break
		}
		c := 1
		switch {
		case o == nil:
			c = 1
		case n == nil:
			c = -1
		default:
			c = storage.ComparePaths(o.Path, n.Path)
		}
		switch {
		case c < 0: // only in old: deleted
			old.take()
			if o.Type == typeDir {
				gone = o.Path
			}
			if err := fn(change{e: &Entry{Path: o.Path}, whiteout: true}); err != nil {
				return err
			}
		case c > 0: // only in new
			cur.take()
			if err := fn(change{e: n}); err != nil {
				return err
			}
		default:
			old.take()
			cur.take()
			if o.Type == typeDir && n.Type != typeDir {
				gone = o.Path // the new entry replaces the whole old subtree
			}
			if !o.sameContent(n) {
				if err := fn(change{e: n}); err != nil {
					return err
				}
			}
		}
	}
	return errors.Join(old.err, cur.err)
}

type sendPlan struct {
	to, from *meta
	toMan    string
	fromMan  string
}

func (b *Backend) planSend(op string, req storage.SendRequest) (*sendPlan, error) {
	if err := storage.CheckDataset(op, req.Dataset); err != nil {
		return nil, err
	}
	if err := storage.CheckSnapshotName(op, req.Dataset, req.To); err != nil {
		return nil, err
	}
	p := &sendPlan{}
	var err error
	if p.to, err = b.mustMeta(op, req.Dataset, req.To); err != nil {
		return nil, err
	}
	p.toMan = b.manifestPath(req.Dataset, req.To)
	if req.From != "" {
		if err := storage.CheckSnapshotName(op, req.Dataset, req.From); err != nil {
			return nil, err
		}
		if p.from, err = b.mustMeta(op, req.Dataset, req.From); err != nil {
			return nil, err
		}
		p.fromMan = b.manifestPath(req.Dataset, req.From)
	}
	return p, nil
}

func (p *sendPlan) open() (old, cur *manifestReader, err error) {
	if old, err = openManifest(p.fromMan); err != nil {
		return nil, nil, err
	}
	if cur, err = openManifest(p.toMan); err != nil {
		old.close()
		return nil, nil, err
	}
	return old, cur, nil
}

// EstimateSendSize implements storage.Backend: the sizes of the files the
// stream carries, rounded to tar blocks, plus about 1.5 KiB of headers per
// entry.
func (b *Backend) EstimateSendSize(ctx context.Context, req storage.SendRequest) (int64, error) {
	const op = "estimate send size"
	p, err := b.planSend(op, req)
	if err != nil {
		return 0, err
	}
	old, cur, err := p.open()
	if err != nil {
		return 0, storage.Wrap(err, storage.KindTemporary, op, req.Dataset, req.To)
	}
	defer old.close()
	defer cur.close()
	total := int64(3 * 1024) // stream header, end record, end of archive
	err = diff(old, cur, func(c change) error {
		total += 1536
		if !c.whiteout && c.e.Type == typeFile {
			total += (c.e.bodySize() + 511) &^ 511
		}
		return nil
	})
	return total, storage.Wrap(err, storage.KindTemporary, op, req.Dataset, req.To)
}

// Send implements storage.Backend. The stream is a PAX tar archive:
//
//   - a global header with FERRY.version, FERRY.dataset, FERRY.snapshot,
//     FERRY.guid, FERRY.manifest_digest and for an incremental
//     FERRY.parent_snapshot, FERRY.parent_guid and FERRY.parent_digest;
//   - one entry per changed path in storage.ComparePaths order (a directory,
//     a regular file with a FERRY.sha256 record, a symlink, or a whiteout: a
//     zero-length regular-file header carrying FERRY.whiteout=1), with the
//     true mode, ns mtime and uid/gid;
//   - a global header with FERRY.end set to the number of entries;
//   - the tar end-of-archive blocks.
//
// File content is read from the snapshot, never the live tree. The same
// request gives the same bytes every time.
func (b *Backend) Send(ctx context.Context, req storage.SendRequest, w io.Writer) error {
	const op = "send"
	p, err := b.planSend(op, req)
	if err != nil {
		return err
	}
	old, cur, err := p.open()
	if err != nil {
		return storage.Wrap(err, storage.KindTemporary, op, req.Dataset, req.To)
	}
	defer old.close()
	defer cur.close()

	tw := tar.NewWriter(w)
	hdr := map[string]string{
		paxVersion:        streamVersion,
		paxDataset:        req.Dataset,
		paxSnapshot:       req.To,
		paxGUID:           p.to.GUID,
		paxManifestDigest: p.to.Digest,
	}
	if p.from != nil {
		hdr[paxParentSnapshot] = req.From
		hdr[paxParentGUID] = p.from.GUID
		hdr[paxParentDigest] = p.from.Digest
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "ferry-stream", PAXRecords: hdr, Format: tar.FormatPAX}); err != nil {
		return storage.Wrap(err, storage.KindTemporary, op, req.Dataset, req.To)
	}
	tree := b.snapTree(req.Dataset, req.To)
	buf := make([]byte, 1<<20)
	h := sha256.New()
	var n int64
	err = diff(old, cur, func(c change) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		n++
		th := &tar.Header{Name: c.e.Path, Format: tar.FormatPAX}
		if c.whiteout {
			th.Typeflag = tar.TypeReg
			th.ModTime = time.Unix(0, 0)
			th.PAXRecords = map[string]string{paxWhiteout: "1"}
			return tw.WriteHeader(th)
		}
		th.Mode = int64(c.e.Mode)
		th.Uid, th.Gid = c.e.UID, c.e.GID
		th.ModTime = time.Unix(0, c.e.Mtime)
		abs := filepath.Join(tree, filepath.FromSlash(c.e.Path))
		if c.e.HardLink != "" {
			// The first path carried the inode's content and xattrs.
			th.Typeflag = tar.TypeLink
			th.Linkname = c.e.HardLink
			return tw.WriteHeader(th)
		}
		th.PAXRecords = map[string]string{}
		if err := addXattrs(th.PAXRecords, abs, c.e); err != nil {
			return err
		}
		switch c.e.Type {
		case typeDir:
			th.Typeflag = tar.TypeDir
			return tw.WriteHeader(th)
		case typeSymlink:
			th.Typeflag = tar.TypeSymlink
			th.Linkname = c.e.Link
			return tw.WriteHeader(th)
		}
		th.Typeflag = tar.TypeReg
		th.Size = c.e.bodySize()
		th.PAXRecords[paxSHA256] = c.e.SHA256
		if c.e.Sparse {
			th.PAXRecords[paxSparse] = formatSpans(c.e.Data)
			th.PAXRecords[paxSize] = strconv.FormatInt(c.e.Size, 10)
		}
		if err := tw.WriteHeader(th); err != nil {
			return err
		}
		return sendFile(tw, abs, c.e, h, buf)
	})
	if err == nil {
		err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "ferry-end", PAXRecords: map[string]string{paxEnd: strconv.FormatInt(n, 10)}, Format: tar.FormatPAX})
	}
	if err == nil {
		err = tw.Close()
	}
	var se *storage.Error
	if errors.As(err, &se) {
		return err
	}
	return storage.Wrap(err, storage.KindTemporary, op, req.Dataset, req.To)
}

// errTampered marks a snapshot whose content no longer matches its manifest.
var errTampered = errors.New("snapshot content no longer matches its manifest")

// addXattrs adds the entry's xattrs, read from the snapshot, as PAX records
// (the tar writer orders records by key, so the stream stays deterministic).
func addXattrs(rec map[string]string, p string, e *Entry) error {
	xs, err := storage.ReadXattrs(p)
	if err != nil {
		return err
	}
	if storage.XattrsDigest(xs) != e.Xattrs {
		return &storage.Error{Kind: storage.KindConflict, Op: "send", Err: fmt.Errorf("%s: extended attributes changed: %w", e.Path, errTampered),
			Fix: "the snapshot was modified on disk; destroy it and take a new one"}
	}
	for _, x := range xs {
		if strings.ContainsRune(x.Name, '=') {
			return &storage.Error{Kind: storage.KindUnsupported, Op: "send", Err: fmt.Errorf("%s: the extended attribute name %q contains '=', which a tar stream cannot carry", e.Path, x.Name),
				Fix: "rename or remove the attribute on the source"}
		}
		rec[paxXattr+x.Name] = string(x.Value)
	}
	return nil
}

// bodySize is how many bytes of the file the stream carries: all of them,
// or a sparse file's data segments.
func (e *Entry) bodySize() int64 {
	if e.Sparse {
		return spansLen(e.Data)
	}
	return e.Size
}

func sendFile(w io.Writer, p string, e *Entry, h hash.Hash, buf []byte) error {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	h.Reset()
	var n int64
	if e.Sparse {
		// The segments recorded in the manifest, holes hashed as zeros:
		// the same bytes however the filesystem lays the file out now.
		var pos int64
		for _, s := range e.Data {
			zeros(h, s.Off-pos, buf)
			k, err := io.CopyBuffer(io.MultiWriter(w, h), io.NewSectionReader(f, s.Off, s.Len), buf)
			if err != nil {
				return err
			}
			n, pos = n+k, s.Off+k
		}
		zeros(h, e.Size-pos, buf)
		n += e.Size - spansLen(e.Data)
	} else if n, err = io.CopyBuffer(io.MultiWriter(w, h), io.LimitReader(f, e.Size), buf); err != nil {
		return err
	}
	if n != e.Size || hex.EncodeToString(h.Sum(nil)) != e.SHA256 {
		return &storage.Error{Kind: storage.KindConflict, Op: "send", Err: fmt.Errorf("%s: %w", e.Path, errTampered),
			Fix: "the snapshot was modified on disk; destroy it and take a new one"}
	}
	return nil
}
