// Package btrfs is ferry's storage backend for btrfs, driving btrfs-progs:
// datasets are subvolumes under the host's root, snapshots are read-only
// snapshots kept under <root>/.ferry/snapshots, streams are `btrfs send`
// streams, and receives run `btrfs receive` into a private staging area.
//
// A receive is only ever called done after ferry has checked it as a careful
// administrator would (the stream was complete and is the one requested, the
// result is read-only with the expected received_uuid and parent) and has
// moved it into place; anything less is a Partial. In staged mode the stream
// is spooled to disk with checkpoints first, so an interrupted transfer
// resumes by offset instead of starting over.
//
// See docs/storage-btrfs.md for the layout, the modes and the error classes.
package btrfs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/layout"
)

// Kind is this backend's name in configuration and errors.
const Kind = "btrfs"

// MinVersion is the oldest btrfs-progs ferry drives (tested with 6.2).
var MinVersion = [2]int{5, 4}

// DefaultStagedThreshold is the expected stream size from which mode "auto"
// spools the stream before applying it.
const DefaultStagedThreshold = 1 << 30

// Option configures a Backend.
type Option func(*Backend)

// WithLogger sets where the backend logs.
func WithLogger(l *zap.Logger) Option { return func(b *Backend) { b.log = l } }

// WithCheckpointEvery sets how often a staged receive makes its spool
// durable and reports it: at the first command boundary after at least
// bytes of stream or interval of time (defaults 16 MiB and 2 s).
func WithCheckpointEvery(bytes int64, interval time.Duration) Option {
	return func(b *Backend) { b.ckptBytes, b.ckptEvery = bytes, interval }
}

// WithStagedThreshold sets from which ExpectedSize mode "auto" stages the
// stream (default DefaultStagedThreshold); 0 stages every auto receive,
// including those of unknown size.
func WithStagedThreshold(bytes int64) Option { return func(b *Backend) { b.stagedThreshold = bytes } }

// WithCommand sets the btrfs program (default "btrfs" from PATH).
func WithCommand(path string) Option { return func(b *Backend) { b.bin = path } }

// Backend is a btrfs storage backend rooted at one directory of a mounted
// btrfs filesystem.
type Backend struct {
	root            string
	bin             string
	log             *zap.Logger
	ckptBytes       int64
	ckptEvery       time.Duration
	stagedThreshold int64

	lay   layout.Layout
	locks storage.DatasetLocks
}

var _ storage.Backend = (*Backend)(nil)

// New returns the btrfs backend rooted at root. It touches nothing on disk:
// Check verifies the root, the tools and the privileges.
func New(root string, opts ...Option) (*Backend, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, storage.Wrap(err, storage.KindInvalid, "open btrfs backend", "", "")
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	b := &Backend{
		root:            abs,
		lay:             layout.Layout{Root: abs},
		bin:             "btrfs",
		log:             zap.NewNop(),
		ckptBytes:       16 << 20,
		ckptEvery:       2 * time.Second,
		stagedThreshold: DefaultStagedThreshold,
	}
	for _, o := range opts {
		o(b)
	}
	return b, nil
}

// Root is the backend's root directory.
func (b *Backend) Root() string { return b.root }

// Kind implements storage.Backend.
func (b *Backend) Kind() string { return Kind }

// Check implements storage.Backend: btrfs-progs is installed and new
// enough, the root is a mounted btrfs filesystem or a subvolume on one,
// ferry has the privileges btrfs send/receive need, and it can write its
// bookkeeping under <root>/.ferry.
func (b *Backend) Check(ctx context.Context) error {
	const op = "check btrfs backend"
	if err := b.checkTool(ctx); err != nil {
		return err
	}
	fi, err := os.Stat(b.root)
	if err != nil {
		return storage.Errorf(storage.KindUnsupported, op, "", "", "mount the btrfs filesystem there, or fix the host's root", "root %s: %v", b.root, err)
	}
	if !fi.IsDir() {
		return storage.Errorf(storage.KindUnsupported, op, "", "", "set the host's root to a btrfs mount point or subvolume", "root %s is not a directory", b.root)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(b.root, &sfs); err != nil {
		return storage.Errorf(storage.KindUnsupported, op, "", "", "", "statfs %s: %v", b.root, err)
	}
	if sfs.Type != unix.BTRFS_SUPER_MAGIC {
		return storage.Errorf(storage.KindUnsupported, op, "", "", "mount a btrfs filesystem at the root (or point the host's root at one), or use backend: dir",
			"root %s is not on btrfs but on %s", b.root, fsName(sfs.Type))
	}
	if ok, err := isSubvolume(b.root); err != nil || !ok {
		return storage.Errorf(storage.KindUnsupported, op, "", "", "point the host's root at the filesystem's mount point or at a subvolume (btrfs subvolume create)",
			"root %s is a plain directory on btrfs, not a mounted filesystem or a subvolume", b.root)
	}
	if warning, err := checkPrivileges(); err != nil {
		return storage.Errorf(storage.KindUnsupported, op, "", "", fixPrivileges, "%v", err)
	} else if warning != "" {
		b.log.Warn("btrfs backend: " + warning)
	}
	for _, d := range []string{"snapshots", "staging", "marks"} {
		if err := os.MkdirAll(filepath.Join(b.root, storage.MetaDir, d), 0o700); err != nil {
			return storage.Errorf(storage.KindUnsupported, op, "", "", "make the root writable for the worker", "cannot create %s: %v", filepath.Join(b.root, storage.MetaDir, d), err)
		}
	}
	return nil
}

// fsName names the filesystems a root is most often on by mistake.
func fsName(magic int64) string {
	switch magic {
	case 0xef53:
		return "ext2/3/4"
	case 0x58465342:
		return "xfs"
	case 0x01021994:
		return "tmpfs"
	case 0x2fc12fc1:
		return "zfs"
	case 0x6969:
		return "nfs"
	case 0x794c7630:
		return "overlayfs"
	case 0x65735546:
		return "a FUSE filesystem"
	}
	return fmt.Sprintf("filesystem type %#x", magic)
}

var versionRE = regexp.MustCompile(`v?(\d+)\.(\d+)(?:\.(\d+))?`)

// checkTool finds btrfs and checks its version.
func (b *Backend) checkTool(ctx context.Context) error {
	const op = "check btrfs backend"
	const install = "install btrfs-progs %d.%d or newer (Debian/Ubuntu: apt-get install btrfs-progs; Fedora: dnf install btrfs-progs)"
	fix := fmt.Sprintf(install, MinVersion[0], MinVersion[1])
	bin, err := exec.LookPath(b.bin)
	if err != nil {
		return storage.Errorf(storage.KindUnsupported, op, "", "", fix, "btrfs-progs is not installed: %q not found in PATH", b.bin)
	}
	out, err := b.run(ctx, "--version")
	if err != nil {
		return storage.Errorf(storage.KindUnsupported, op, "", "", fix, "%s --version: %v", bin, err)
	}
	first, _, _ := strings.Cut(out, "\n")
	m := versionRE.FindStringSubmatch(first)
	if m == nil {
		return storage.Errorf(storage.KindUnsupported, op, "", "", fix, "cannot tell the version of %s from %q", bin, strings.TrimSpace(first))
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	if major < MinVersion[0] || (major == MinVersion[0] && minor < MinVersion[1]) {
		return storage.Errorf(storage.KindUnsupported, op, "", "", fix, "%s is btrfs-progs %d.%d, too old", bin, major, minor)
	}
	return nil
}

// Capabilities a worker that is not root needs, with their bits in the
// /proc/<pid>/status masks. Measured with btrfs-progs 6.2 under setpriv:
// btrfs send needs CAP_SYS_ADMIN and CAP_FOWNER (it opens with O_NOATIME);
// btrfs receive --chroot also CAP_SYS_CHROOT, CAP_CHOWN and
// CAP_DAC_OVERRIDE (files of other owners); subvolume delete CAP_SYS_ADMIN.
var requiredCaps = []struct {
	name string
	bit  uint
}{
	{"CAP_SYS_ADMIN", 21}, {"CAP_FOWNER", 3}, {"CAP_SYS_CHROOT", 18}, {"CAP_CHOWN", 0}, {"CAP_DAC_OVERRIDE", 1},
}

// recommendedCaps keep what a snapshot may hold: setgid bits of foreign
// groups (CAP_FSETID), device nodes (CAP_MKNOD), file capabilities
// (CAP_SETFCAP). Without them such receives fail.
var recommendedCaps = []struct {
	name string
	bit  uint
}{
	{"CAP_FSETID", 4}, {"CAP_MKNOD", 27}, {"CAP_SETFCAP", 31},
}

// checkPrivileges: btrfs send, receive and subvolume delete need root, or
// the capabilities above as ambient capabilities (so that the btrfs
// processes ferry starts inherit them). It returns missing recommended
// capabilities as a warning.
func checkPrivileges() (warning string, err error) {
	if os.Geteuid() == 0 {
		return "", nil
	}
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "", fmt.Errorf("not root (euid %d) and cannot read capabilities: %v", os.Geteuid(), err)
	}
	return checkCaps(os.Geteuid(), string(data))
}

func checkCaps(euid int, status string) (warning string, err error) {
	eff, amb := capsFromStatus(status)
	var missing, notAmbient, advised []string
	for _, c := range requiredCaps {
		switch {
		case eff&(1<<c.bit) == 0:
			missing = append(missing, c.name)
		case amb&(1<<c.bit) == 0:
			notAmbient = append(notAmbient, c.name)
		}
	}
	for _, c := range recommendedCaps {
		if eff&(1<<c.bit) == 0 || amb&(1<<c.bit) == 0 {
			advised = append(advised, c.name)
		}
	}
	switch {
	case len(missing) > 0:
		return "", fmt.Errorf("not root (euid %d) and without %s: btrfs send, receive and subvolume delete need them", euid, strings.Join(missing, ", "))
	case len(notAmbient) > 0:
		return "", fmt.Errorf("%s effective but not ambient, so the btrfs programs ferry runs would not get them", strings.Join(notAmbient, ", "))
	case len(advised) > 0:
		return fmt.Sprintf("without %s as ambient capabilities, receiving snapshots with foreign setgid bits, device nodes or file capabilities fails", strings.Join(advised, ", ")), nil
	}
	return "", nil
}

// capsFromStatus reads CapEff and CapAmb from /proc/<pid>/status text.
func capsFromStatus(status string) (eff, amb uint64) {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			continue
		}
		switch k {
		case "CapEff":
			eff = n
		case "CapAmb":
			amb = n
		}
	}
	return eff, amb
}

// ---- names and paths (the shared .ferry layout, storage/layout) ----

func (b *Backend) live(ds string) string    { return filepath.Join(b.root, filepath.FromSlash(ds)) }
func (b *Backend) snapDir(ds string) string { return b.lay.SnapshotsDir(ds) }

// container is a snapshot's directory: it holds the read-only subvolume
// (named like the snapshot) and ferry's metadata.
func (b *Backend) container(ds, name string) string { return filepath.Join(b.snapDir(ds), name) }
func (b *Backend) subvolPath(ds, name string) string {
	return filepath.Join(b.container(ds, name), name)
}
func (b *Backend) metaPath(ds, name string) string {
	return filepath.Join(b.container(ds, name), metaFile)
}
func (b *Backend) stagingDir(ds string) string { return b.lay.StagingDir(ds) }

// stage is a receive's staging directory; btrfs receive (chrooted there)
// creates the subvolume in it.
func (b *Backend) stage(ds, name string) string { return filepath.Join(b.stagingDir(ds), name) }
func (b *Backend) spoolPath(ds, name string) string {
	return filepath.Join(b.stagingDir(ds), name+".spool")
}
func (b *Backend) spoolStatePath(ds, name string) string {
	return filepath.Join(b.stagingDir(ds), name+".spool.json")
}

// rel is p relative to the root, for Partial IDs and messages.
func (b *Backend) rel(p string) string { return b.lay.Rel(p) }

// ---- small file helpers ----

// syncFS commits the filesystem holding p (syncfs).
func syncFS(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// removeIfEmpty removes directory p when it is empty.
func removeIfEmpty(p string) {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return
	}
}

func zapArgs(args []string) zap.Field { return zap.Strings("args", args) }
