package btrfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"
)

// firstFreeObjectID is the inode number of every subvolume's root directory.
const firstFreeObjectID = 256

// subvol is what ferry knows about one subvolume.
type subvol struct {
	// What `btrfs subvolume show` prints.
	Name         string
	ID           uint64
	UUID         string
	ParentUUID   string // btrfs's parent_uuid: the subvolume this one is a snapshot of
	ReceivedUUID string
	Generation   uint64
	ReadOnly     bool
	Stransid     uint64 // send transid stored by receive (the source's ctransid)

	// Not printed by btrfs-progs.
	// Ctransid is the transaction of the last change to the subvolume's
	// content (not bumped by balance or by snapshotting it, unlike
	// Generation); Created is the creation time in ns. Otransid is the
	// transaction that created the subvolume and Rtransid the one in which
	// btrfs receive finished it (0 for one not received): both only grow
	// on a filesystem, whatever the clock does.
	Ctransid uint64
	Otransid uint64
	Rtransid uint64
	Created  time.Time
}

// isSubvolume reports whether p is the root directory of a btrfs subvolume
// (a directory with inode 256 on btrfs). A missing p is an error.
func isSubvolume(p string) (bool, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return false, &fs.PathError{Op: "lstat", Path: p, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Ino != firstFreeObjectID {
		return false, nil
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(p, &sfs); err != nil {
		return false, &fs.PathError{Op: "statfs", Path: p, Err: err}
	}
	return sfs.Type == unix.BTRFS_SUPER_MAGIC, nil
}

// show describes the subvolume at p with the GET_SUBVOL_INFO ioctl; a p
// that is not a subvolume is an error. It reports what `btrfs subvolume
// show` prints (TestShowMatchesBtrfsProgs) without starting a process per
// subvolume: every listing inspects each snapshot, and the fork and exec of
// btrfs-progs (plus its search of the root tree for the snapshot list,
// which ferry does not use) cost 5-10 ms a call on a loaded host.
func (b *Backend) show(ctx context.Context, p string) (*subvol, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return subvolInfo(p)
}

// ---- BTRFS_IOC_GET_SUBVOL_INFO ----

type ioctlTimespec struct {
	Sec  uint64
	Nsec uint32
	_    uint32
}

// getSubvolInfoArgs is struct btrfs_ioctl_get_subvol_info_args (504 bytes).
type getSubvolInfoArgs struct {
	TreeID       uint64
	Name         [256]byte
	ParentID     uint64
	DirID        uint64
	Generation   uint64
	Flags        uint64
	UUID         [16]byte
	ParentUUID   [16]byte
	ReceivedUUID [16]byte
	Ctransid     uint64
	Otransid     uint64
	Stransid     uint64
	Rtransid     uint64
	Ctime        ioctlTimespec
	Otime        ioctlTimespec
	Stime        ioctlTimespec
	Rtime        ioctlTimespec
	Reserved     [8]uint64
}

// iocGetSubvolInfo is _IOR(BTRFS_IOCTL_MAGIC, 60, struct btrfs_ioctl_get_subvol_info_args).
const iocGetSubvolInfo = 2<<30 | uintptr(unsafe.Sizeof(getSubvolInfoArgs{}))<<16 | 0x94<<8 | 60

// subvolInfo asks the kernel (Linux 4.18+, no privileges needed) about
// the subvolume whose root directory is p: a directory that is not one is
// an error (the ioctl alone would describe the subvolume holding it).
func subvolInfo(p string) (*subvol, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &fs.PathError{Op: "fstat", Path: p, Err: err}
	}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return nil, &fs.PathError{Op: "fstatfs", Path: p, Err: err}
	}
	if st.Ino != firstFreeObjectID || sfs.Type != unix.BTRFS_SUPER_MAGIC {
		return nil, fmt.Errorf("%s: not a btrfs subvolume", p)
	}
	var a getSubvolInfoArgs
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), iocGetSubvolInfo, uintptr(unsafe.Pointer(&a))); e != 0 {
		return nil, fmt.Errorf("BTRFS_IOC_GET_SUBVOL_INFO on %s (needs Linux 4.18 or newer): %w", p, e)
	}
	name := a.Name[:]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	sv := subvol{
		Name:         string(name),
		ID:           a.TreeID,
		UUID:         uuidString(a.UUID),
		ParentUUID:   uuidString(a.ParentUUID),
		ReceivedUUID: uuidString(a.ReceivedUUID),
		Generation:   a.Generation,
		ReadOnly:     a.Flags&rootSubvolRdonly != 0,
		Stransid:     a.Stransid,
		Ctransid:     a.Ctransid,
		Otransid:     a.Otransid,
		Rtransid:     a.Rtransid,
		Created:      time.Unix(int64(a.Otime.Sec), int64(a.Otime.Nsec)).UTC(),
	}
	if sv.UUID == "" {
		return nil, fmt.Errorf("%s: the subvolume has no uuid", p)
	}
	return &sv, nil
}

// rootSubvolRdonly is BTRFS_ROOT_SUBVOL_RDONLY, the read-only bit of a
// root item's flags (what `btrfs property get ro` and show's "Flags:
// readonly" read).
const rootSubvolRdonly = 1 << 0

// uuidString is u as btrfs-progs prints it; the all-zero uuid (btrfs's
// "none", shown as "-") is empty.
func uuidString(u [16]byte) string {
	if u == ([16]byte{}) {
		return ""
	}
	return uuid.UUID(u).String()
}

// ---- removal ----

// deleteSubvol deletes the subvolume at p with `btrfs subvolume delete`;
// subvolumes nested inside it (which btrfs refuses to delete through) are
// deleted first.
func (b *Backend) deleteSubvol(ctx context.Context, p string) error {
	_, err := b.run(ctx, "subvolume", "delete", p)
	if err == nil {
		return nil
	}
	var ce *cmdError
	if !errors.As(err, &ce) || !containsAny(ce.stderr, "Directory not empty", "not empty") {
		return err
	}
	nested, werr := nestedSubvolumes(p)
	if werr != nil || len(nested) == 0 {
		return err
	}
	for _, n := range nested {
		if err := b.deleteSubvol(ctx, n); err != nil {
			return err
		}
	}
	_, err = b.run(ctx, "subvolume", "delete", p)
	return err
}

// nestedSubvolumes lists the subvolumes directly inside the subvolume at p.
func nestedSubvolumes(p string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if q == p || !d.IsDir() {
			return nil
		}
		if ok, _ := isSubvolume(q); ok {
			out = append(out, q)
			return filepath.SkipDir
		}
		return nil
	})
	return out, err
}

// removeTree removes p, whatever it is: a subvolume is deleted with btrfs
// (never walked), a directory is emptied (subvolumes inside it deleted with
// btrfs) and removed. A missing p is not an error.
func (b *Backend) removeTree(ctx context.Context, p string) error {
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
	if ok, _ := isSubvolume(p); ok {
		return b.deleteSubvol(ctx, p)
	}
	os.Chmod(p, 0o700) // a read-only directory cannot be emptied
	entries, err := os.ReadDir(p)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if err := b.removeTree(ctx, filepath.Join(p, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
