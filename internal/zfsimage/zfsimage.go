// Package zfsimage makes and destroys ZFS pools on sparse files: the test
// pools of internal/zfspool and the zfs demo's pools. It does not import
// testing, so the ferry binary may link it.
package zfsimage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Create makes the pool name on a sparse file image of size bytes, its top
// dataset mounted at mount. On failure the image is removed again.
func Create(ctx context.Context, name, image, mount string, size int64) error {
	f, err := os.Create(image)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	f.Close()
	if err == nil {
		var out []byte
		if out, err = exec.CommandContext(ctx, "zpool", "create", "-f", "-m", mount, name, image).CombinedOutput(); err != nil {
			err = fmt.Errorf("zpool create %s: %v: %s", name, err, strings.TrimSpace(string(out)))
		}
	}
	if err != nil {
		return errors.Join(err, removeImage(image))
	}
	return nil
}

// Destroy destroys the pool name, retrying while zfs-fuse still holds a
// just-unmounted dataset busy. A pool that is not there is fine.
func Destroy(name string) error {
	var out []byte
	var err error
	for range 40 {
		if out, err = exec.Command("zpool", "destroy", "-f", name).CombinedOutput(); err == nil || strings.Contains(string(out), "no such pool") {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("zpool destroy %s: %v: %s", name, err, strings.TrimSpace(string(out)))
}

func removeImage(image string) error {
	if err := os.Remove(image); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
