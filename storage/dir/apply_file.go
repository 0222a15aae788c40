// Writing a received regular file: its content (or a sparse file's data
// segments), ownership, extended attributes and mode.

package dir

import (
	"archive/tar"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/storage"
)

func (rx *receiver) writeFile(tmp string, hdr *tar.Header, mode uint32, xs []storage.Xattr, r io.Reader) error {
	var spans []span
	size, sparse := hdr.Size, false
	if v, ok := hdr.PAXRecords[paxSparse]; ok {
		var err error
		if spans, err = parseSpans(v); err != nil {
			return invalid("file %q: %v", hdr.Name, err)
		}
		size, err = strconv.ParseInt(hdr.PAXRecords[paxSize], 10, 64)
		if err != nil || size < 0 || spansLen(spans) != hdr.Size || (len(spans) > 0 && spans[len(spans)-1].Off+spans[len(spans)-1].Len > size) {
			return invalid("file %q: its sparse segments %q do not fit its size %q and body of %d bytes", hdr.Name, v, hdr.PAXRecords[paxSize], hdr.Size)
		}
		sparse = true
	}
	fd, err := unix.Openat(rx.tmpFd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), tmp)
	defer f.Close()
	rx.h.Reset()
	var n int64
	if sparse {
		// Only the data is written; the holes stay holes.
		n, err = writeSpans(f, r, spans, size, rx.h, rx.buf)
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = streamErr(err)
		}
	} else {
		n, err = io.CopyBuffer(io.MultiWriter(f, rx.h), r, rx.buf)
	}
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
	// The checkpoint's fsync then finds it written.
	startWriteback(fd)
	if !sparse {
		// A file sent sparse is read again at the commit (rare; its
		// segments are what the filesystem made of them).
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		data, holes, err := dataSpans(f, n)
		if err != nil {
			return err
		}
		rx.wrote = &writtenFile{path: hdr.Name, dev: uint64(st.Dev), ino: st.Ino, size: n, sha256: hex.EncodeToString(rx.h.Sum(nil)), data: data, sparse: holes}
	}
	if rx.b.isRoot {
		if err := f.Chown(hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	// After the chown (which clears security.capability), before the chmod
	// (which gives an ACL its true mask).
	// Even with none: tmp/ may pass on a default ACL from above .ferry.
	if err := rx.setXattrs(hdr.Name, filepath.Join(rx.tmp, tmp), xs); err != nil {
		return err
	}
	if err := f.Chmod(storage.FileMode(mode)); err != nil {
		return err
	}
	return f.Close()
}

// xattrsOf returns the extended attributes an entry carries, by name.
func xattrsOf(hdr *tar.Header) ([]storage.Xattr, error) {
	var xs []storage.Xattr
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattr)
		if !ok {
			continue
		}
		if !storage.CarriedXattr(name) {
			return nil, invalid("entry %q carries the extended attribute %q, which ferry never sends", hdr.Name, name)
		}
		if hdr.Typeflag == tar.TypeLink || hdr.PAXRecords[paxWhiteout] == "1" {
			return nil, invalid("entry %q: a hard link or whiteout carries no extended attributes", hdr.Name)
		}
		xs = append(xs, storage.Xattr{Name: name, Value: []byte(v)})
	}
	slices.SortFunc(xs, func(a, b storage.Xattr) int { return strings.Compare(a.Name, b.Name) })
	return xs, nil
}

func (rx *receiver) setXattrs(rel, p string, xs []storage.Xattr) error {
	return rx.b.setXattrs("receive", rx.req.Dataset, rx.req.Name, rel, p, xs)
}

// writtenFile is a regular file a receive wrote, by inode, with the hash
// of what was written.
type writtenFile struct {
	path     string
	dev, ino uint64
	size     int64
	sha256   string
	data     []span // its data segments, as the commit would find them
	sparse   bool
}

// writtenList yields a receive's written files in stream (manifest) order.
type writtenList struct {
	files []writtenFile
	i     int
}

// seek returns the written file rel, if this receive wrote it.
func (l *writtenList) seek(rel string) *writtenFile {
	if l == nil {
		return nil
	}
	for l.i < len(l.files) && storage.ComparePaths(l.files[l.i].path, rel) < 0 {
		l.i++
	}
	if l.i < len(l.files) && l.files[l.i].path == rel {
		return &l.files[l.i]
	}
	return nil
}
