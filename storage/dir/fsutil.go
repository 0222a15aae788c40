package dir

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/storage"
)

func ficlone(dst, src *os.File) error {
	return unix.IoctlFileClone(int(dst.Fd()), int(src.Fd()))
}

// reflinkUnsupported: the filesystem cannot clone at all (stop trying);
// reflinkFallback: this one file cannot be cloned (copy it instead).
func reflinkUnsupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.ENOSYS)
}

func reflinkFallback(err error) bool {
	return reflinkUnsupported(err) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EPERM)
}

// statOf is the part of a stat result ferry records.
type statOf struct {
	dev, ino uint64
	uid, gid int
	mtime    int64
	atime    int64
	ctime    int64
	mode     uint32 // permission and special bits, Unix values
	size     int64
	fileType fs.FileMode
	nlink    uint64
}

// devIno identifies an inode, for finding hard links.
type devIno struct{ dev, ino uint64 }

func statInfo(fi fs.FileInfo) statOf {
	st := statOf{mode: storage.UnixMode(fi.Mode()), size: fi.Size(), fileType: fi.Mode().Type(), mtime: fi.ModTime().UnixNano()}
	switch s := fi.Sys().(type) {
	case *syscall.Stat_t:
		st.dev, st.ino = uint64(s.Dev), s.Ino
		st.uid, st.gid = int(s.Uid), int(s.Gid)
		st.ctime = s.Ctim.Nano()
		st.atime = s.Atim.Nano()
		st.nlink = uint64(s.Nlink)
	case *unix.Stat_t: // statFI: the walks' fstatat
		st.dev, st.ino = uint64(s.Dev), s.Ino
		st.uid, st.gid = int(s.Uid), int(s.Gid)
		st.ctime = s.Ctim.Nano()
		st.atime = s.Atim.Nano()
		st.nlink = uint64(s.Nlink)
	}
	return st
}

// sameInode reports whether two stats are of the same inode.
func sameInode(a, b statOf) bool { return a.dev == b.dev && a.ino == b.ino }

// setTimes sets atime and mtime of p without following a final symlink.
func setTimes(p string, atime, mtime int64) error {
	ts := []unix.Timespec{unix.NsecToTimespec(atime), unix.NsecToTimespec(mtime)}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}

func setTimesAt(dirfd int, name string, atime, mtime int64) error {
	ts := []unix.Timespec{unix.NsecToTimespec(atime), unix.NsecToTimespec(mtime)}
	return unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// readDirNames returns the names in dir, sorted bytewise.
func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

func join(rel, name string) string {
	if rel == "." {
		return name
	}
	return rel + "/" + name
}

// removeTree removes p and everything below it, giving directories back
// their owner's write and search bits first (snapshots are read-only). It
// never changes the mode of a file: files may be hard links shared with
// other snapshots. A missing p is not an error.
func removeTree(p string) error {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return os.Remove(p)
	}
	if fi.Mode().Perm()&0o700 != 0o700 {
		if err := os.Chmod(p, fi.Mode().Perm()|0o700); err != nil {
			return err
		}
	}
	names, err := readDirNames(p)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := removeTree(filepath.Join(p, n)); err != nil {
			return err
		}
	}
	return os.Remove(p)
}

// syncPath fsyncs a file or directory by path; vanished entries and
// symlinks (covered by their directory) are skipped.
func syncPath(p string) error {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ELOOP) {
			return nil
		}
		return err
	}
	defer f.Close()
	return f.Sync()
}

// syncPaths fsyncs the paths (as syncPath), up to syncParallel at once:
// the filesystem's journal then commits the concurrent fsyncs together
// (one after another, ext4 commits its journal once per file).
func syncPaths(ps []string) error {
	if len(ps) <= 1 {
		for _, p := range ps {
			if err := syncPath(p); err != nil {
				return err
			}
		}
		return nil
	}
	next := make(chan string)
	errs := make(chan error, syncParallel)
	n := min(syncParallel, len(ps))
	for range n {
		go func() {
			var first error
			for p := range next {
				if err := syncPath(p); err != nil && first == nil {
					first = err
				}
			}
			errs <- first
		}()
	}
	for _, p := range ps {
		next <- p
	}
	close(next)
	var err error
	for range n {
		err = errors.Join(err, <-errs)
	}
	return err
}

// syncParallel is how many fsyncs syncPaths runs at once.
const syncParallel = 32

// syncFS flushes the whole filesystem holding p (syncfs(2)).
func syncFS(p string) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
}

// ---- fd-relative walking inside a staging tree ----

// errUnsafePath marks a path whose parent component is a symlink or not a
// directory: following it could leave the tree.
var errUnsafePath = errors.New("a parent component is a symlink or not a directory")

// openParent opens, component by component and never following a symlink,
// the directory that holds rel inside the tree open as rootfd. It returns
// the parent's fd (which the caller closes) and rel's last component.
func openParent(rootfd int, rel string) (int, string, error) {
	comps := strings.Split(rel, "/")
	fd, err := unix.Dup(rootfd)
	if err != nil {
		return -1, "", err
	}
	for _, c := range comps[:len(comps)-1] {
		nfd, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				return -1, "", errUnsafePath
			}
			return -1, "", err
		}
		fd = nfd
	}
	return fd, comps[len(comps)-1], nil
}

// lstatAt stats name in dirfd without following it; ok is false when it
// does not exist.
func lstatAt(dirfd int, name string) (unix.Stat_t, bool, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return st, false, nil
	}
	return st, err == nil, err
}

// removeAt removes name (a whole tree if it is a directory) from dirfd,
// never following symlinks.
func removeAt(dirfd int, name string) error {
	st, ok, err := lstatAt(dirfd, name)
	if err != nil || !ok {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unix.Unlinkat(dirfd, name, 0)
	}
	if st.Mode&0o700 != 0o700 {
		if err := unix.Fchmodat(dirfd, name, (st.Mode&0o7777)|0o700, 0); err != nil {
			return err
		}
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	names, err := f.Readdirnames(-1)
	if err == nil {
		for _, n := range names {
			if err = removeAt(fd, n); err != nil {
				break
			}
		}
	}
	f.Close()
	if err != nil {
		return err
	}
	return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}

func isDirMode(m uint32) bool { return m&unix.S_IFMT == unix.S_IFDIR }

// RemoveAll removes p and everything below it, including read-only dir
// snapshots, which os.RemoveAll cannot remove when not running as root.
// Use it to delete a whole root (the demo does); a missing p is not an error.
func RemoveAll(p string) error { return removeTree(p) }

// startWriteback asks the kernel to start writing the file's dirty pages
// to disk now, without waiting (sync_file_range(2) with
// SYNC_FILE_RANGE_WRITE). It is only a hint that lets the disk work while
// the next files are copied: it makes nothing durable (the fsync or syncfs
// before a checkpoint or commit does), and an error is ignored (a
// filesystem without it simply writes back later). Without it the first
// fsync or syncfs would find every page still dirty and, on ext4, each
// file's fsync would commit the journal on its own.
func startWriteback(fd int) {
	unix.SyncFileRange(fd, 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}
