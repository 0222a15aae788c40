package dir

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"
	"strings"
)

// Entry types in manifests.
const (
	typeDir     = "d"
	typeFile    = "f"
	typeSymlink = "l"
)

const manifestHeader = "ferry-dir-manifest v1"

// Entry is one line of a snapshot manifest.
type Entry struct {
	Path string // slash-separated, relative to the snapshot; "." is its root
	Type string // typeDir, typeFile, typeSymlink
	Mode uint32 // true Unix permission bits with setuid/setgid/sticky
	Size int64  // files only
	// Mtime in ns since the epoch (directories too).
	Mtime  int64
	SHA256 string // hex, files only
	Link   string // symlinks only
	UID    int
	GID    int
	// Dev, Ino and Ctime identify the live file the entry was copied from,
	// for the unchanged-file check of the next snapshot; zero in received
	// snapshots. They are not part of the digest.
	Dev   uint64
	Ino   uint64
	Ctime int64
	// Xattrs is storage.XattrsDigest of the entry's carried extended
	// attributes ("" for none); files of a hard-link group share it.
	Xattrs string
	// HardLink is, for a file whose inode an earlier path of the snapshot
	// has, that first path; the entry repeats the first path's fields.
	HardLink string
	// Sparse: the file has holes; Data are its data segments in order (a
	// property of this copy's filesystem, so not part of the digest).
	Sparse bool
	Data   []span
}

// sameContent reports whether e and o describe the same entry as far as a
// stream is concerned (everything but the live identity).
func (e *Entry) sameContent(o *Entry) bool {
	return e.Path == o.Path && e.Type == o.Type && e.Mode == o.Mode && e.Size == o.Size &&
		e.Mtime == o.Mtime && e.SHA256 == o.SHA256 && e.Link == o.Link && e.UID == o.UID && e.GID == o.GID &&
		e.Xattrs == o.Xattrs && e.HardLink == o.HardLink
}

// digestLine is the part of the entry the manifest digest covers: path,
// type, true mode, size, mtime, content hash, link target and, when there
// are any, the xattrs digest and the hard link's first path (an entry
// without them digests as it did before they were kept). Ownership is not
// covered (an unprivileged receiver cannot reproduce it), nor where holes are.
func (e *Entry) digestLine() string {
	l := e.baseLine()
	return l[:len(l)-1] + e.extras(false) + "\n"
}

// extras are the optional fields, each " key=value": x (xattrs digest), s
// (sparse data segments, only in the manifest file) and h (quoted hard-link
// first path, always last).
func (e *Entry) extras(withSparse bool) string {
	var b strings.Builder
	if e.Xattrs != "" {
		b.WriteString(" x=" + e.Xattrs)
	}
	if withSparse && e.Sparse {
		b.WriteString(" s=" + formatSpans(e.Data))
	}
	if e.HardLink != "" {
		b.WriteString(" h=" + strconv.Quote(e.HardLink))
	}
	return b.String()
}

func (e *Entry) baseLine() string {
	var b strings.Builder
	b.WriteString(strconv.Quote(e.Path))
	b.WriteByte(' ')
	b.WriteString(e.Type)
	fmt.Fprintf(&b, " %o %d %d ", e.Mode, e.Size, e.Mtime)
	if e.SHA256 == "" {
		b.WriteByte('-')
	} else {
		b.WriteString(e.SHA256)
	}
	b.WriteByte(' ')
	b.WriteString(strconv.Quote(e.Link))
	b.WriteByte('\n')
	return b.String()
}

func (e *Entry) line() string {
	l := e.baseLine()
	return fmt.Sprintf("%s %d %d %d %d %d%s\n", l[:len(l)-1], e.UID, e.GID, e.Dev, e.Ino, e.Ctime, e.extras(true))
}

func parseEntry(line string) (Entry, error) {
	var e Entry
	bad := func(why string) (Entry, error) {
		return Entry{}, fmt.Errorf("corrupt manifest line %q: %s", line, why)
	}
	q, err := strconv.QuotedPrefix(line)
	if err != nil {
		return bad("path")
	}
	if e.Path, err = strconv.Unquote(q); err != nil {
		return bad("path")
	}
	rest := line[len(q):]
	// rest: " t mode size mtime sha "link" uid gid dev ino ctime"
	f := strings.SplitN(strings.TrimPrefix(rest, " "), " ", 5)
	if len(f) != 5 {
		return bad("fields")
	}
	e.Type = f[0]
	mode, err1 := strconv.ParseUint(f[1], 8, 32)
	size, err2 := strconv.ParseInt(f[2], 10, 64)
	mtime, err3 := strconv.ParseInt(f[3], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return bad(err.Error())
	}
	e.Mode, e.Size, e.Mtime = uint32(mode), size, mtime
	tail := f[4]
	sp := strings.IndexByte(tail, ' ')
	if sp < 0 {
		return bad("hash")
	}
	if h := tail[:sp]; h != "-" {
		e.SHA256 = h
	}
	tail = tail[sp+1:]
	if q, err = strconv.QuotedPrefix(tail); err != nil {
		return bad("link")
	}
	if e.Link, err = strconv.Unquote(q); err != nil {
		return bad("link")
	}
	ids := strings.SplitN(strings.TrimPrefix(tail[len(q):], " "), " ", 6)
	if len(ids) < 5 {
		return bad("ids")
	}
	if len(ids) == 6 {
		if err := e.parseExtras(" " + ids[5]); err != nil {
			return bad(err.Error())
		}
	}
	uid, err1 := strconv.Atoi(ids[0])
	gid, err2 := strconv.Atoi(ids[1])
	dev, err3 := strconv.ParseUint(ids[2], 10, 64)
	ino, err4 := strconv.ParseUint(ids[3], 10, 64)
	ct, err5 := strconv.ParseInt(ids[4], 10, 64)
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return bad(err.Error())
	}
	e.UID, e.GID, e.Dev, e.Ino, e.Ctime = uid, gid, dev, ino, ct
	switch e.Type {
	case typeDir, typeFile, typeSymlink:
	default:
		return bad("type")
	}
	return e, nil
}

func (e *Entry) parseExtras(rest string) error {
	for rest != "" {
		if !strings.HasPrefix(rest, " ") || len(rest) < 3 || rest[2] != '=' {
			return errors.New("extra fields")
		}
		key, val := rest[1], rest[3:]
		if key == 'h' {
			q, err := strconv.QuotedPrefix(val)
			if err != nil {
				return errors.New("hard link")
			}
			if e.HardLink, err = strconv.Unquote(q); err != nil || e.HardLink == "" {
				return errors.New("hard link")
			}
			rest = val[len(q):]
			continue
		}
		v, _, _ := strings.Cut(val, " ")
		rest = val[len(v):]
		switch key {
		case 'x':
			if v == "" {
				return errors.New("xattrs")
			}
			e.Xattrs = v
		case 's':
			d, err := parseSpans(v)
			if err != nil {
				return err
			}
			e.Sparse, e.Data = true, d
		default:
			return fmt.Errorf("unknown field %q", key)
		}
	}
	return nil
}

// digester computes a manifest digest from entries in order.
type digester struct{ h hash.Hash }

func newDigester() *digester {
	d := &digester{h: sha256.New()}
	io.WriteString(d.h, manifestHeader+"\n")
	return d
}

func (d *digester) add(e *Entry) { io.WriteString(d.h, e.digestLine()) }
func (d *digester) sum() string  { return "sha256:" + hex.EncodeToString(d.h.Sum(nil)) }

// manifestWriter writes a manifest file and its digest as entries come.
type manifestWriter struct {
	f *os.File
	w *bufio.Writer
	d *digester
	n int64
}

func createManifest(p string) (*manifestWriter, error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	m := &manifestWriter{f: f, w: bufio.NewWriterSize(f, 256<<10), d: newDigester()}
	m.w.WriteString(manifestHeader + "\n")
	return m, nil
}

func (m *manifestWriter) add(e *Entry) error {
	m.d.add(e)
	m.n++
	_, err := m.w.WriteString(e.line())
	return err
}

// close flushes and syncs the file and returns the digest.
func (m *manifestWriter) close() (string, error) {
	err := m.w.Flush()
	if err == nil {
		err = m.f.Sync()
	}
	if cerr := m.f.Close(); err == nil {
		err = cerr
	}
	return m.d.sum(), err
}

func (m *manifestWriter) abort() { m.f.Close(); os.Remove(m.f.Name()) }

// manifestReader reads a manifest file entry by entry, with one entry of
// look-ahead for merging.
type manifestReader struct {
	f    *os.File
	r    *bufio.Reader
	next *Entry
	err  error
}

// openManifest opens p; an empty p gives an empty manifest.
func openManifest(p string) (*manifestReader, error) {
	m := &manifestReader{}
	if p == "" {
		return m, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	m.f, m.r = f, bufio.NewReaderSize(f, 256<<10)
	hdr, err := m.r.ReadString('\n')
	if err != nil || strings.TrimSuffix(hdr, "\n") != manifestHeader {
		f.Close()
		return nil, fmt.Errorf("%s is not a ferry dir manifest", p)
	}
	m.advance()
	return m, nil
}

func (m *manifestReader) advance() {
	m.next = nil
	if m.r == nil || m.err != nil {
		return
	}
	line, err := m.r.ReadString('\n')
	if err == io.EOF && line == "" {
		return
	}
	if err != nil {
		m.err = err
		return
	}
	e, err := parseEntry(strings.TrimSuffix(line, "\n"))
	if err != nil {
		m.err = err
		return
	}
	m.next = &e
}

// peek returns the next entry without consuming it, nil at the end.
func (m *manifestReader) peek() *Entry { return m.next }

// take consumes and returns the next entry.
func (m *manifestReader) take() *Entry {
	e := m.next
	m.advance()
	return e
}

func (m *manifestReader) close() {
	if m.f != nil {
		m.f.Close()
	}
}
