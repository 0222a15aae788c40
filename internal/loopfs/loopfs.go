// Package loopfs makes throw-away btrfs (or ext4) filesystems on loop
// devices for ferry's tests and benchmarks and for `ferry demo --backend
// btrfs`: a sparse image file in a private temporary directory, mkfs, a
// loop device (losetup --find --show) and a mount on a mountpoint beside
// the image. Close undoes all of
// it: unmount (lazily when the filesystem stays busy), detach the loop
// device, remove the directory.
//
// Everything loopfs makes lives in a directory named Prefix+"*"; ReapStale
// only ever touches such directories whose creating process is gone, so a
// crashed earlier run cannot exhaust the machine's loop devices.
//
// It needs root (mount, losetup) and btrfs-progs (mkfs.btrfs) or e2fsprogs
// (mkfs.ext4).
package loopfs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Prefix starts the name of every directory loopfs creates.
const Prefix = "ferry-loopfs-"

// ownerFile records "pid starttime" of the process that made the directory.
const ownerFile = "owner"

// FS is one mounted loop filesystem.
type FS struct {
	// Dir is the private directory holding the image and the mountpoint.
	Dir string
	// Image is the sparse image file.
	Image string
	// Device is the loop device (/dev/loopN).
	Device string
	// Mountpoint is where the filesystem is mounted.
	Mountpoint string

	closed bool
}

// Filesystems loopfs makes, with the mkfs arguments before the image.
var mkfs = map[string][]string{
	"btrfs": {"mkfs.btrfs", "-q", "-f", "-L", "ferry-loopfs"},
	// An inode per 4 KiB: trees of many small files run out of inodes
	// before blocks at the default ratio.
	"ext4": {"mkfs.ext4", "-q", "-F", "-i", "4096", "-L", "ferry-loopfs"},
}

// Create makes a size-byte sparse btrfs image in a new directory under dir
// (os.TempDir() when empty), attaches it to a free loop device and mounts it.
// On failure nothing is left behind.
func Create(dir string, size int64) (f *FS, err error) {
	return CreateFS(dir, size, "btrfs")
}

// CreateFS is Create with the filesystem type: "btrfs" or "ext4".
func CreateFS(dir string, size int64, fstype string) (f *FS, err error) {
	if dir == "" {
		dir = os.TempDir()
	}
	mk, ok := mkfs[fstype]
	if !ok {
		return nil, fmt.Errorf("loopfs: filesystem %q is not one loopfs makes (btrfs or ext4)", fstype)
	}
	if size < 128<<20 {
		return nil, fmt.Errorf("loopfs: %d bytes is too small for %s (at least 128 MiB)", size, fstype)
	}
	for _, tool := range []string{mk[0], "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("loopfs: %s not found (install btrfs-progs or e2fsprogs, and util-linux)", tool)
		}
	}
	d, err := os.MkdirTemp(dir, Prefix+"*")
	if err != nil {
		return nil, fmt.Errorf("loopfs: %w", err)
	}
	f = &FS{Dir: d, Image: filepath.Join(d, "image"), Mountpoint: filepath.Join(d, "mnt")}
	defer func() {
		if err != nil {
			if cerr := f.Close(); cerr != nil {
				err = fmt.Errorf("%w (and cleaning up: %v)", err, cerr)
			}
		}
	}()
	if err := os.WriteFile(filepath.Join(d, ownerFile), []byte(selfOwner()+"\n"), 0o644); err != nil {
		return f, fmt.Errorf("loopfs: %w", err)
	}
	img, err := os.OpenFile(f.Image, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return f, fmt.Errorf("loopfs: %w", err)
	}
	err = img.Truncate(size)
	if cerr := img.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return f, fmt.Errorf("loopfs: sparse image: %w", err)
	}
	if _, err := run(mk[0], append(mk[1:], f.Image)...); err != nil {
		return f, err
	}
	out, err := run("losetup", "--find", "--show", f.Image)
	if err != nil {
		return f, fmt.Errorf("%w (all loop devices busy? see losetup -a)", err)
	}
	f.Device = strings.TrimSpace(out)
	if !strings.HasPrefix(f.Device, "/dev/loop") {
		return f, fmt.Errorf("loopfs: losetup printed %q, not a loop device", f.Device)
	}
	if err := os.Mkdir(f.Mountpoint, 0o755); err != nil {
		return f, fmt.Errorf("loopfs: %w", err)
	}
	if err := unix.Mount(f.Device, f.Mountpoint, fstype, 0, ""); err != nil {
		return f, fmt.Errorf("loopfs: mount %s on %s: %w", f.Device, f.Mountpoint, err)
	}
	return f, nil
}

// Close unmounts the filesystem (lazily if it stays busy), detaches the loop
// device and removes the directory. Calling it again does nothing.
func (f *FS) Close() error {
	if f == nil || f.closed {
		return nil
	}
	var errs []error
	if err := unmount(f.Mountpoint); err != nil {
		errs = append(errs, err)
	}
	if f.Device != "" {
		if err := detach(f.Device, f.Image); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := os.RemoveAll(f.Dir); err != nil {
			errs = append(errs, fmt.Errorf("loopfs: %w", err))
		}
		f.closed = true
	}
	return errors.Join(errs...)
}

// TB is the part of testing.TB that New uses. It is declared here, not
// imported, so that the ferry binary (ferry demo uses Create) does not link
// package testing; every *testing.T and *testing.B satisfies it.
type TB interface {
	Helper()
	Fatal(args ...any)
	Errorf(format string, args ...any)
	Cleanup(func())
}

// New makes a loop btrfs filesystem of size bytes for a test and returns its
// mountpoint; it is torn down by t.Cleanup, also when the test fails.
func New(t TB, size int64) string {
	t.Helper()
	return NewFS(t, size, "btrfs")
}

// NewFS is New with the filesystem type: "btrfs" or "ext4".
func NewFS(t TB, size int64, fstype string) string {
	t.Helper()
	f, err := CreateFS("", size, fstype)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("loopfs cleanup: %v", err)
		}
	})
	return f.Mountpoint
}

// unmount unmounts p if it is a mount point: a few tries while busy, then
// a lazy (MNT_DETACH) unmount.
func unmount(p string) error {
	if !mounted(p) {
		return nil
	}
	var err error
	for i := 0; i < 40; i++ {
		if err = unix.Unmount(p, 0); err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if lerr := unix.Unmount(p, unix.MNT_DETACH); lerr != nil && !errors.Is(lerr, unix.EINVAL) {
		return fmt.Errorf("loopfs: unmount %s: %v; lazy unmount: %w", p, err, lerr)
	}
	return nil
}

// detach detaches dev if it is still backed by image.
func detach(dev, image string) error {
	if b := backingFile(dev); b == "" || (image != "" && b != image) {
		return nil
	}
	var err error
	for i := 0; i < 20; i++ {
		if _, err = run("losetup", "--detach", dev); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}

// backingFile is the image behind /dev/loopN ("" when detached).
func backingFile(dev string) string {
	data, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file"))
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(strings.TrimSpace(string(data)), " (deleted)")
}

// mounted reports whether p is a mount point in this mount namespace.
func mounted(p string) bool {
	for _, m := range mounts() {
		if m.point == p {
			return true
		}
	}
	return false
}

type mount struct{ source, point string }

// mounts parses /proc/self/mountinfo (octal escapes in paths decoded).
func mounts() []mount {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []mount
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+2 >= len(fields) {
			continue
		}
		out = append(out, mount{source: unescape(fields[sep+2]), point: unescape(fields[4])})
	}
	return out
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ReapStale cleans up after earlier runs that crashed: for every directory
// Prefix+"*" in dir (os.TempDir() when empty) whose creating process is
// gone, it unmounts its mountpoint, detaches the loop devices backed by its
// image and removes it. Directories of live processes (other test binaries
// running now) are left alone. It returns what it cleaned.
func ReapStale(dir string) ([]string, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var reaped []string
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), Prefix) {
			continue
		}
		d := filepath.Join(dir, e.Name())
		owner, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err == nil && alive(strings.TrimSpace(string(owner))) {
			continue
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			// No owner file yet: a Create in progress, or one that died
			// before writing it. Leave young ones alone.
			if fi, serr := os.Stat(d); serr != nil || time.Since(fi.ModTime()) < time.Minute {
				continue
			}
		}
		f := &FS{Dir: d, Image: filepath.Join(d, "image"), Mountpoint: filepath.Join(d, "mnt")}
		var ferrs []error
		if err := unmount(f.Mountpoint); err != nil {
			ferrs = append(ferrs, err)
		}
		for _, dev := range loopDevicesFor(f.Image) {
			for _, m := range mounts() {
				if m.source == dev {
					if err := unmount(m.point); err != nil {
						ferrs = append(ferrs, err)
					}
				}
			}
			if err := detach(dev, f.Image); err != nil {
				ferrs = append(ferrs, err)
			}
		}
		if len(ferrs) == 0 {
			if err := os.RemoveAll(d); err != nil {
				ferrs = append(ferrs, err)
			}
		}
		if len(ferrs) > 0 {
			errs = append(errs, ferrs...)
			continue
		}
		reaped = append(reaped, d)
	}
	return reaped, errors.Join(errs...)
}

// loopDevicesFor lists the loop devices backed by image.
func loopDevicesFor(image string) []string {
	matches, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, m := range matches {
		dev := "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(m)))
		if backingFile(dev) == image {
			out = append(out, dev)
		}
	}
	return out
}

// selfOwner is "pid starttime" of this process.
func selfOwner() string {
	pid := os.Getpid()
	return fmt.Sprintf("%d %s", pid, startTime(pid))
}

// alive reports whether the process recorded as "pid starttime" still runs.
func alive(owner string) bool {
	fields := strings.Fields(owner)
	if len(fields) != 2 {
		return false
	}
	pid, err := strconv.Atoi(fields[0])
	if err != nil || pid <= 0 {
		return false
	}
	st := startTime(pid)
	return st != "" && st == fields[1]
}

// startTime is field 22 of /proc/<pid>/stat (start time in clock ticks since
// boot), which tells a live process from a recycled pid.
func startTime(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return ""
	}
	fields := strings.Fields(string(data[i+1:]))
	// fields[0] is field 3 (state); field 22 is fields[19].
	if len(fields) < 20 {
		return ""
	}
	return fields[19]
}

func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		return stdout.String(), fmt.Errorf("loopfs: %s %s: %v: %s", name, strings.Join(args, " "), err, msg)
	}
	return stdout.String(), nil
}
