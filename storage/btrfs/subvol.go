package btrfs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"
)

// firstFreeObjectID is the inode number of every subvolume's root directory.
const firstFreeObjectID = 256

// subvol is what ferry knows about one subvolume.
type subvol struct {
	// From `btrfs subvolume show`.
	Name         string
	ID           uint64
	UUID         string
	ParentUUID   string // btrfs's parent_uuid: the subvolume this one is a snapshot of
	ReceivedUUID string
	Generation   uint64
	ReadOnly     bool
	Stransid     uint64 // send transid stored by receive (the source's ctransid)

	// From BTRFS_IOC_GET_SUBVOL_INFO: btrfs-progs does not print these.
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

// show describes the subvolume at p with `btrfs subvolume show` and the
// GET_SUBVOL_INFO ioctl; a p that is not a subvolume is an error.
func (b *Backend) show(ctx context.Context, p string) (*subvol, error) {
	out, err := b.run(ctx, "subvolume", "show", p)
	if err != nil {
		return nil, err
	}
	sv, err := parseShow(out)
	if err != nil {
		return nil, fmt.Errorf("btrfs subvolume show %s: %w", p, err)
	}
	info, err := subvolInfo(p)
	if err != nil {
		return nil, err
	}
	if info.uuid != sv.UUID {
		return nil, fmt.Errorf("btrfs subvolume show %s says uuid %s, the kernel %s (changed while looking?)", p, sv.UUID, info.uuid)
	}
	sv.Ctransid, sv.Otransid, sv.Rtransid, sv.Created = info.ctransid, info.otransid, info.rtransid, info.otime
	return sv, nil
}

// parseShow parses `btrfs subvolume show` output: a path line, then
// "\tKey:\tvalue" lines up to the "Snapshot(s):" list (and quota lines,
// which are ignored). UUIDs shown as "-" are empty.
func parseShow(out string) (*subvol, error) {
	sv := &subvol{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			first = false
			continue // the path
		}
		if !strings.HasPrefix(line, "\t") {
			continue
		}
		key, val, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if key == "Snapshot(s)" {
			break
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		var err error
		switch key {
		case "Name":
			sv.Name = val
		case "UUID":
			sv.UUID, err = parseUUID(val)
		case "Parent UUID":
			sv.ParentUUID, err = parseUUID(val)
		case "Received UUID":
			sv.ReceivedUUID, err = parseUUID(val)
		case "Subvolume ID":
			sv.ID, err = strconv.ParseUint(val, 10, 64)
		case "Generation":
			sv.Generation, err = strconv.ParseUint(val, 10, 64)
		case "Send transid":
			sv.Stransid, err = strconv.ParseUint(val, 10, 64)
		case "Flags":
			for _, f := range strings.FieldsFunc(val, func(r rune) bool { return r == ',' || r == ' ' }) {
				if f == "readonly" {
					sv.ReadOnly = true
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, k := range []string{"UUID", "Subvolume ID", "Flags", "Received UUID", "Parent UUID"} {
		if !seen[k] {
			return nil, fmt.Errorf("no %q in the output", k)
		}
	}
	if sv.UUID == "" {
		return nil, errors.New("the subvolume has no uuid")
	}
	return sv, nil
}

func parseUUID(s string) (string, error) {
	if s == "-" || s == "" {
		return "", nil
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return "", err
	}
	if u == uuid.Nil {
		return "", nil
	}
	return u.String(), nil
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

type kernelInfo struct {
	uuid                         string
	ctransid, otransid, rtransid uint64
	otime                        time.Time
}

// subvolInfo asks the kernel (Linux 4.18+, no privileges needed) for the
// subvolume's transaction ids and creation time.
func subvolInfo(p string) (kernelInfo, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return kernelInfo{}, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	var a getSubvolInfoArgs
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), iocGetSubvolInfo, uintptr(unsafe.Pointer(&a))); e != 0 {
		return kernelInfo{}, fmt.Errorf("BTRFS_IOC_GET_SUBVOL_INFO on %s (needs Linux 4.18 or newer): %w", p, e)
	}
	u, _ := uuid.FromBytes(a.UUID[:])
	return kernelInfo{
		uuid:     u.String(),
		ctransid: a.Ctransid,
		otransid: a.Otransid,
		rtransid: a.Rtransid,
		otime:    time.Unix(int64(a.Otime.Sec), int64(a.Otime.Nsec)).UTC(),
	}, nil
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
