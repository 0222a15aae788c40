// Applying stream entries to the staging tree: the filesystem operations
// of a receive.

package dir

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/storage"
)

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
	xs, err := xattrsOf(hdr)
	if err != nil {
		return err
	}
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
		if err := checkEntryName(hdr.Linkname); err != nil || hdr.Linkname == "." || storage.ComparePaths(hdr.Linkname, name) >= 0 {
			return invalid("hard link %q to %q: the target must be an earlier path of the stream", name, hdr.Linkname)
		}
	default:
		return invalid("entry %q has type %q (devices, fifos and the like are not part of a dir stream)", name, string(hdr.Typeflag))
	}
	if name == "." {
		if err := rx.b.own(rx.tree, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
		if err := rx.setXattrs(name, rx.tree, xs); err != nil {
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
		// Always set: a new directory inherits its parent's default ACL.
		if err := rx.setXattrs(name, child, xs); err != nil {
			return err
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
		if len(xs) > 0 {
			if err := rx.setXattrs(name, filepath.Join(rx.tmp, tmp), xs); err != nil {
				return err
			}
		}
		if err := rx.finishTmp(tmp, hdr, mtime, pfd, base); err != nil {
			return err
		}
		changed = true
	case hdr.Typeflag == tar.TypeLink:
		tfd, tbase, err := openParent(rx.treeFd, hdr.Linkname)
		if err != nil {
			return invalid("hard link %q to %q: %v", name, hdr.Linkname, err)
		}
		defer unix.Close(tfd)
		if tst, ok, err := lstatAt(tfd, tbase); err != nil {
			return err
		} else if !ok || tst.Mode&unix.S_IFMT != unix.S_IFREG {
			return invalid("hard link %q to %q: the target is not a regular file in the snapshot", name, hdr.Linkname)
		}
		tmp := rx.tmpName()
		if err := unix.Linkat(tfd, tbase, rx.tmpFd, tmp, 0); err != nil {
			return err
		}
		if err := rx.replaceWith(tmp, pfd, base); err != nil {
			return err
		}
		rx.markDirty(child)
		changed = true
	default: // regular file
		tmp := rx.tmpName()
		rx.wrote = nil
		if err := rx.writeFile(tmp, hdr, mode, xs, r); err != nil {
			unix.Unlinkat(rx.tmpFd, tmp, 0)
			return err
		}
		if err := rx.finishTmp(tmp, hdr, mtime, pfd, base); err != nil {
			return err
		}
		if rx.wrote != nil {
			rx.written = append(rx.written, *rx.wrote)
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
	return rx.replaceWith(tmp, pfd, base)
}

// replaceWith renames tmp over whatever is at base: a directory in the way
// goes first; a file or symlink is replaced by the rename itself.
func (rx *receiver) replaceWith(tmp string, pfd int, base string) error {
	if cur, ok, err := lstatAt(pfd, base); err != nil {
		return err
	} else if ok && isDirMode(cur.Mode) {
		if err := removeAt(pfd, base); err != nil {
			return err
		}
	}
	return unix.Renameat(rx.tmpFd, tmp, pfd, base)
}
