package storage

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// ComparePaths orders slash-separated relative paths component by component
// ("." first, then every path in depth-first pre-order with the names of one
// directory in byte order). In this order a directory comes right before its
// whole subtree: "a" < "a/z" < "a b". Backends that keep sorted listings
// (dir's manifests) use it so that listings can be merged in one pass.
func ComparePaths(a, b string) int {
	if a == b {
		return 0
	}
	if a == "." {
		return -1
	}
	if b == "." {
		return 1
	}
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if ca == '/' {
			return -1
		}
		if cb == '/' {
			return 1
		}
		if ca < cb {
			return -1
		}
		return 1
	}
	return len(a) - len(b)
}

// UnixMode converts the permission, setuid, setgid and sticky bits of an
// fs.FileMode to their Unix values (0o7777 at most).
func UnixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= syscall.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		u |= syscall.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		u |= syscall.S_ISVTX
	}
	return u
}

// FileMode converts Unix permission, setuid, setgid and sticky bits to an
// fs.FileMode (without type bits).
func FileMode(u uint32) fs.FileMode {
	m := fs.FileMode(u & 0o777)
	if u&syscall.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if u&syscall.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if u&syscall.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// TreeDigest is a deterministic digest of the file tree at root, comparable
// across hosts and backends. It covers, for every entry in ComparePaths order
// (the root itself as "."): the relative path, the type, the permission bits
// with setuid/setgid/sticky, and for regular files the size, the SHA-256 of
// the content and the mtime in ns, for symlinks the target and the mtime in
// ns; the carried extended attributes (CarriedXattr: user.*, trusted.*,
// security.*, POSIX ACLs; an access ACL without the entries the mode holds)
// of every entry; and hard-link structure: a regular file whose inode an
// earlier path in this order has is "a hard link to that path". It does not
// cover directory mtimes (a receive cannot help touching them), ownership
// or where a sparse file's holes are (only its content). Symlinks are never
// followed. A tree without xattrs or hard links has the digest it had before
// they were covered.
//
// modeOf, when not nil, is called for every entry in that order and returns
// the mode to digest instead of the on-disk one (only its permission and
// special bits are used); dir's read-only snapshots use it to report their
// true modes.
func TreeDigest(root string, modeOf func(rel string, fi fs.FileInfo) fs.FileMode) (string, error) {
	fi, err := os.Lstat(root)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("tree digest: %s is not a directory", root)
	}
	// The walk writes the lines in order; the content sums, most of the
	// work on a large tree, are computed by a few goroutines meanwhile and
	// put in their lines (at most digestAhead lines in flight).
	d := &treeDigester{h: sha256.New(), modeOf: modeOf, links: map[fileID]string{},
		sums: make(chan *digestLine, digestAhead), lines: make(chan *digestLine, digestAhead)}
	io.WriteString(d.h, "ferry-tree-digest-v1\n")
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), 4) {
		wg.Go(d.sumFiles)
	}
	written := make(chan error, 1)
	go func() { written <- d.write() }()
	err = d.entry(root, ".", fi)
	close(d.sums)
	close(d.lines)
	wg.Wait()
	if werr := <-written; werr != nil {
		return "", werr
	}
	if err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(d.h.Sum(nil)), nil
}

// digestAhead is how many lines the walk may be ahead of the digest.
const digestAhead = 256

type treeDigester struct {
	h      hash.Hash
	modeOf func(string, fs.FileInfo) fs.FileMode
	// links maps the inode of every file seen with more than one link to
	// its first path.
	links map[fileID]string
	// sums takes the lines whose file content is to be summed, lines
	// every line in order; failed is set when a sum failed (the walk stops).
	sums, lines chan *digestLine
	failed      atomic.Bool
}

// digestLine is one entry's text: text alone, or, for a regular file's
// content (path), text, the content's SHA-256 once done, then tail.
type digestLine struct {
	text, path, tail string
	sum              string
	err              error
	done             chan struct{}
}

// emit queues a line; a line with a path is summed first.
func (d *treeDigester) emit(l *digestLine) {
	if l.path != "" {
		l.done = make(chan struct{})
		d.sums <- l
	}
	d.lines <- l
}

// sumFiles computes the content sums of the lines on d.sums.
func (d *treeDigester) sumFiles() {
	h, buf := sha256.New(), make([]byte, 256<<10)
	for l := range d.sums {
		l.sum, l.err = fileSum(h, buf, l.path)
		close(l.done)
	}
}

// write hashes the lines in order, each once its sum is done; after the
// first failed sum it only drains them.
func (d *treeDigester) write() error {
	var first error
	for l := range d.lines {
		if l.done != nil {
			<-l.done
			if l.err != nil && first == nil {
				first = l.err
				d.failed.Store(true)
			}
		}
		if first == nil {
			io.WriteString(d.h, l.text)
			io.WriteString(d.h, l.sum)
			io.WriteString(d.h, l.tail)
		}
	}
	return first
}

// PlainReader passes on only its Reader's Read. Given to io.CopyBuffer, it
// keeps an *os.File's WriteTo out of the copy: that tries sendfile and
// splice first and then copies through a new 32 KiB buffer of its own
// instead of the caller's.
type PlainReader struct{ io.Reader }

type fileID struct{ dev, ino uint64 }

// firstLink returns the first path seen with fi's inode, remembering rel as
// that path when it is the first; "" when rel is the first (or the only).
func firstLink(links map[fileID]string, rel string, fi fs.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Nlink < 2 {
		return ""
	}
	id := fileID{uint64(st.Dev), st.Ino}
	if first, ok := links[id]; ok {
		return first
	}
	links[id] = rel
	return ""
}

func (d *treeDigester) entry(abs, rel string, fi fs.FileInfo) error {
	mode := fi.Mode()
	if d.modeOf != nil {
		mode = d.modeOf(rel, fi)
	}
	perm := strconv.FormatUint(uint64(UnixMode(mode)), 8)
	var line strings.Builder
	var file *digestLine // a regular file, whose content is summed
	line.WriteString(strconv.Quote(rel))
	first := ""
	if fi.Mode().IsRegular() {
		first = firstLink(d.links, rel, fi)
	}
	switch t := fi.Mode().Type(); {
	case first != "":
		// The inode's content, mode and xattrs are covered at its first path.
		fmt.Fprintf(&line, " h %s\n", strconv.Quote(first))
		d.emit(&digestLine{text: line.String()})
		return nil
	case t == 0:
		// The content's sum goes between text and tail.
		fmt.Fprintf(&line, " f %s %d ", perm, fi.Size())
		file = &digestLine{text: line.String(), path: abs}
		line.Reset()
		fmt.Fprintf(&line, " %d\n", fi.ModTime().UnixNano())
	case t == fs.ModeSymlink:
		target, err := os.Readlink(abs)
		if err != nil {
			return err
		}
		fmt.Fprintf(&line, " l %s %d\n", strconv.Quote(target), fi.ModTime().UnixNano())
	case t == fs.ModeDir:
		fmt.Fprintf(&line, " d %s\n", perm)
	default:
		fmt.Fprintf(&line, " o %s %s\n", t.String(), perm)
	}
	xs, err := ReadXattrs(abs)
	if err != nil {
		return err
	}
	if x := XattrsDigest(xs); x != "" {
		fmt.Fprintf(&line, "  x %s\n", x)
	}
	if file != nil {
		file.tail = line.String()
		d.emit(file)
	} else {
		d.emit(&digestLine{text: line.String()})
	}
	if !fi.IsDir() {
		return nil
	}
	f, err := os.Open(abs)
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	slices.Sort(names)
	for _, name := range names {
		if d.failed.Load() {
			return nil // write reports the failed sum
		}
		cabs := filepath.Join(abs, name)
		cfi, err := os.Lstat(cabs)
		if err != nil {
			return err
		}
		crel := name
		if rel != "." {
			crel = path.Join(rel, name)
		}
		if err := d.entry(cabs, crel, cfi); err != nil {
			return err
		}
	}
	return nil
}

// fileSum is the hex SHA-256 of the content of the file at abs, read with
// buf into h.
func fileSum(h hash.Hash, buf []byte, abs string) (string, error) {
	f, err := os.OpenFile(abs, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h.Reset()
	if _, err := io.CopyBuffer(h, PlainReader{Reader: f}, buf); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
