// Listing a directory for the tree walks: every entry is stat'ed and opened
// relative to the open directory, so the kernel resolves one name per entry
// instead of the whole path from / (measured on 100,000 entries nine levels
// deep: 1.6x faster for lstat, 2x for open).

package dir

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// openDir is a directory being walked.
type openDir struct {
	f    *os.File
	fd   int
	path string
}

// openDirAt opens the directory p for a walk.
func openDirAt(p string) (*openDir, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return &openDir{f: os.NewFile(uintptr(fd), p), fd: fd, path: p}, nil
}

func (d *openDir) close() { d.f.Close() }

// names returns the directory's entries, sorted bytewise.
func (d *openDir) names() ([]string, error) {
	names, err := d.f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// lstat stats the entry name without following it; a missing entry is
// fs.ErrNotExist.
func (d *openDir) lstat(name string) (fs.FileInfo, error) {
	fi := &statFI{name: name}
	if err := unix.Fstatat(d.fd, name, &fi.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: d.path + "/" + name, Err: err}
	}
	return fi, nil
}

// openFile opens the regular file name for reading, never following a
// symlink.
func (d *openDir) openFile(name string) (*os.File, error) {
	fd, err := unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: d.path + "/" + name, Err: err}
	}
	return os.NewFile(uintptr(fd), d.path+"/"+name), nil
}

// walkDir calls fn for every entry of the directory p in byte order with
// its lstat; an entry that vanished before its lstat is skipped when
// skipGone, else an error. With ahead, a second goroutine stats the
// directory's entries ahead of fn (in chunks of statChunk), so that a walk
// uses two cores: only for a walk whose fn changes no entry of the
// directory after the one it is given (an lstat may be taken before fn
// has run for the entries before it).
func walkDir(p string, skipGone, ahead bool, fn func(d *openDir, name string, fi fs.FileInfo) error) error {
	d, err := openDirAt(p)
	if err != nil {
		return err
	}
	defer d.close()
	names, err := d.names()
	if err != nil {
		return err
	}
	if ahead && len(names) >= 2*statChunk {
		return walkAhead(d, names, skipGone, fn)
	}
	for _, n := range names {
		fi, err := d.lstat(n)
		if skipGone && errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := fn(d, n, fi); err != nil {
			return err
		}
	}
	return nil
}

// statChunk is how many entries walkAhead's second goroutine stats before
// handing them over.
const statChunk = 64

// walkAhead is walkDir's loop with the lstats taken on a second goroutine.
func walkAhead(d *openDir, names []string, skipGone bool, fn func(d *openDir, name string, fi fs.FileInfo) error) error {
	fis := make([]statFI, len(names))
	errs := make([]error, len(names))
	ready := make(chan int, len(names)/statChunk+1)
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < len(names) && !stop.Load(); i += statChunk {
			end := min(i+statChunk, len(names))
			for j := i; j < end; j++ {
				fis[j].name = names[j]
				if err := unix.Fstatat(d.fd, names[j], &fis[j].st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					errs[j] = &fs.PathError{Op: "lstat", Path: d.path + "/" + names[j], Err: err}
				}
			}
			ready <- end
		}
	}()
	// The directory stays open until the goroutine is done with it.
	defer func() { stop.Store(true); <-done }()
	have := 0
	for i, n := range names {
		for have <= i {
			have = <-ready
		}
		if skipGone && errors.Is(errs[i], fs.ErrNotExist) {
			continue
		}
		if errs[i] != nil {
			return errs[i]
		}
		if err := fn(d, n, &fis[i]); err != nil {
			return err
		}
	}
	return nil
}

// statFI is an fs.FileInfo of an fstatat result, with the same modes as
// os.Lstat's.
type statFI struct {
	name string
	st   unix.Stat_t
}

func (f *statFI) Name() string       { return f.name }
func (f *statFI) Size() int64        { return f.st.Size }
func (f *statFI) ModTime() time.Time { return time.Unix(f.st.Mtim.Unix()) }
func (f *statFI) IsDir() bool        { return f.Mode().IsDir() }
func (f *statFI) Sys() any           { return &f.st }

func (f *statFI) Mode() fs.FileMode {
	m := fs.FileMode(f.st.Mode & 0o777)
	switch f.st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		m |= fs.ModeDevice
	case unix.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFDIR:
		m |= fs.ModeDir
	case unix.S_IFIFO:
		m |= fs.ModeNamedPipe
	case unix.S_IFLNK:
		m |= fs.ModeSymlink
	case unix.S_IFSOCK:
		m |= fs.ModeSocket
	}
	if f.st.Mode&unix.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if f.st.Mode&unix.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if f.st.Mode&unix.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// dirCache holds the directory of the last entry looked up under a tree
// open, so that a run of entries in one directory (manifest order keeps
// them together) is linked or stat'ed relative to it.
type dirCache struct {
	root string
	rel  string // the open directory, relative to root; "" when none
	fd   int
}

// at returns the open directory holding rel (a path relative to the root)
// and rel's last component.
func (c *dirCache) at(rel string) (int, string, error) {
	dir, base := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	if c.rel != dir || c.rel == "" {
		c.close()
		// O_PATH: linking and stat'ing in it need only search permission,
		// as a path would (a snapshot directory may be unreadable).
		fd, err := unix.Open(filepath.Join(c.root, filepath.FromSlash(dir)), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, "", &fs.PathError{Op: "open", Path: filepath.Join(c.root, filepath.FromSlash(dir)), Err: err}
		}
		c.rel, c.fd = dir, fd
	}
	return c.fd, base, nil
}

func (c *dirCache) close() {
	if c.rel != "" {
		unix.Close(c.fd)
		c.rel = ""
	}
}

// linkAt hard-links rel of the tree src to rel of the tree dst.
func linkAt(src, dst *dirCache, rel string) error {
	sfd, base, err := src.at(rel)
	if err != nil {
		return err
	}
	dfd, _, err := dst.at(rel)
	if err != nil {
		return err
	}
	if err := unix.Linkat(sfd, base, dfd, base, 0); err != nil {
		return &os.LinkError{Op: "link", Old: filepath.Join(src.root, filepath.FromSlash(rel)), New: filepath.Join(dst.root, filepath.FromSlash(rel)), Err: err}
	}
	return nil
}
