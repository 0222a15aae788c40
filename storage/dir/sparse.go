// Sparse files: finding a file's data segments, copying and writing only
// them so that holes stay holes.

package dir

import (
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// span is one data segment of a file: Len bytes at Off.
type span struct{ Off, Len int64 }

// dataSpans returns f's data segments by SEEK_DATA/SEEK_HOLE, and whether
// the file has holes at all (a filesystem that cannot tell has none). The
// file offset is back where it was when it returns.
func dataSpans(f *os.File, size int64) (_ []span, _ bool, err error) {
	if size == 0 {
		return nil, false, nil
	}
	fd := int(f.Fd())
	was, err := unix.Seek(fd, 0, io.SeekCurrent)
	if err != nil {
		return nil, false, err
	}
	defer func() {
		if _, serr := unix.Seek(fd, was, io.SeekStart); err == nil {
			err = serr
		}
	}()
	var out []span
	var total int64
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole after off
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		if data >= size {
			break
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, false, err
		}
		hole = min(hole, size)
		out = append(out, span{data, hole - data})
		total += hole - data
		off = hole
	}
	if total == size {
		return nil, false, nil
	}
	return out, true, nil
}

func spansLen(d []span) int64 {
	var n int64
	for _, s := range d {
		n += s.Len
	}
	return n
}

// formatSpans is "off+len,off+len" (empty for a file with no data).
func formatSpans(d []span) string {
	var b strings.Builder
	for i, s := range d {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(s.Off, 10))
		b.WriteByte('+')
		b.WriteString(strconv.FormatInt(s.Len, 10))
	}
	return b.String()
}

// parseSpans reads formatSpans' form; segments must be in order, not
// overlap and not be empty.
func parseSpans(v string) ([]span, error) {
	if v == "" {
		return nil, nil
	}
	var out []span
	end := int64(0)
	for _, f := range strings.Split(v, ",") {
		o, l, ok := strings.Cut(f, "+")
		off, err1 := strconv.ParseInt(o, 10, 64)
		n, err2 := strconv.ParseInt(l, 10, 64)
		if !ok || err1 != nil || err2 != nil || off < end || n <= 0 || off > 1<<62 || n > 1<<62 {
			return nil, fmt.Errorf("bad sparse segment list %q", v)
		}
		out = append(out, span{off, n})
		end = off + n
	}
	return out, nil
}

// zeros feeds n zero bytes to h (a hole's share of a content hash).
func zeros(h hash.Hash, n int64, buf []byte) {
	clear(buf)
	for n > 0 {
		k := min(n, int64(len(buf)))
		h.Write(buf[:k])
		n -= k
	}
}

// writeSpans fills out, an empty file, from r: the data of each segment in
// turn, written at its offset, then the size set, so that the rest stays
// holes. h gets the whole content, holes as zeros. It returns the number
// of bytes read from r.
func writeSpans(out *os.File, r io.Reader, d []span, size int64, h hash.Hash, buf []byte) (int64, error) {
	var read, pos int64
	for _, s := range d {
		if s.Off+s.Len > size {
			return read, fmt.Errorf("sparse segment %d+%d beyond the size %d", s.Off, s.Len, size)
		}
		zeros(h, s.Off-pos, buf)
		n, err := io.CopyBuffer(io.MultiWriter(io.NewOffsetWriter(out, s.Off), h), io.LimitReader(r, s.Len), buf)
		read += n
		if err != nil {
			return read, err
		}
		if n != s.Len {
			return read, io.ErrUnexpectedEOF
		}
		pos = s.Off + s.Len
	}
	zeros(h, size-pos, buf)
	return read, out.Truncate(size)
}
