package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ferry-nas/ferry/internal/zfsimage"
)

// The zfs demo gives each host its own pool on a sparse file in the demo
// directory, named ferrydemo-<pid>-<host>, mounted at <dir>/<host>; the
// host's root dataset is <pool>/ferry. The pools are destroyed when the
// demo ends, unless --keep (then the demo prints the commands that remove
// them).

// CheckZFS says what the zfs demo lacks on this machine: root, the zfs and
// zpool commands, or a ZFS service that answers (zfs-fuse's daemon or the
// kernel module); nil when nothing is missing.
func CheckZFS() error {
	if os.Geteuid() != 0 {
		return errors.New("the zfs demo needs root: it makes, mounts and destroys two ZFS pools on sparse files (run it with sudo, or without --backend for the dir backend)")
	}
	var missing []string
	for _, c := range []string{"zfs", "zpool"} {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the zfs demo needs the %s command(s), not found on PATH: install OpenZFS (zfsutils-linux) or zfs-fuse", strings.Join(missing, " and "))
	}
	if out, err := exec.Command("zpool", "list", "-H").CombinedOutput(); err != nil {
		return fmt.Errorf("the zfs demo needs a running ZFS service, and `zpool list` fails (%v: %s): start the zfs-fuse daemon (zfs-fuse) or load the zfs kernel module (modprobe zfs)", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// zfsPool is one demo pool.
type zfsPool struct {
	Name, Image, Mount string
}

// Root is the host's root dataset.
func (p zfsPool) Root() string { return p.Name + "/ferry" }

// makeZFSPool makes host's pool of size bytes on a sparse file in dir, with
// the root dataset, mounted at <dir>/<host>.
func makeZFSPool(ctx context.Context, dir, host string, size int64) (zfsPool, error) {
	p := zfsPool{
		Name:  fmt.Sprintf("ferrydemo-%d-%s", os.Getpid(), host),
		Image: filepath.Join(dir, host+".zfs.img"),
		Mount: filepath.Join(dir, host),
	}
	if err := zfsimage.Create(ctx, p.Name, p.Image, p.Mount, size); err != nil {
		return p, err
	}
	if out, err := exec.CommandContext(ctx, "zfs", "create", p.Root()).CombinedOutput(); err != nil {
		return p, errors.Join(fmt.Errorf("zfs create %s: %v: %s", p.Root(), err, strings.TrimSpace(string(out))), p.destroy())
	}
	return p, nil
}

// destroy destroys the pool (zfsimage.Destroy) and removes its image.
func (p zfsPool) destroy() error {
	if err := zfsimage.Destroy(p.Name); err != nil {
		return fmt.Errorf("%w (destroy it by hand, then remove %s)", err, p.Image)
	}
	if err := os.Remove(p.Image); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	_ = os.Remove(p.Mount) // the empty mountpoint directory
	return nil
}

// zfsDataset creates a dataset (and its parents).
func zfsDataset(ctx context.Context, name string) error {
	if out, err := exec.CommandContext(ctx, "zfs", "create", "-p", name).CombinedOutput(); err != nil {
		return fmt.Errorf("zfs create %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
