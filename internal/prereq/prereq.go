// Package prereq decides what a test does when the real storage it needs
// (root, a tool, a kernel filesystem) is not there: it skips with the reason,
// unless FERRY_REQUIRE names the backend, in which case it fails. CI sets
// FERRY_REQUIRE for every backend it installs, so a missing prerequisite
// there is a failure, never a silent skip.
package prereq

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// Env is the variable listing the required backends, comma-separated
// (e.g. "btrfs,zfs").
const Env = "FERRY_REQUIRE"

// Required reports whether FERRY_REQUIRE names backend.
func Required(backend string) bool {
	for _, b := range strings.Split(os.Getenv(Env), ",") {
		if strings.EqualFold(strings.TrimSpace(b), backend) {
			return true
		}
	}
	return false
}

// Need runs check; when it fails the test is skipped with the reason, or
// fails with it when FERRY_REQUIRE names backend.
func Need(t testing.TB, backend string, check func() error) {
	t.Helper()
	err := check()
	if err == nil {
		return
	}
	if Required(backend) {
		t.Fatalf("%s tests are required (%s=%s) but cannot run: %v", backend, Env, os.Getenv(Env), err)
		return
	}
	t.Skipf("%s tests skipped: %v (set %s=%s to make this a failure)", backend, err, Env, backend)
}

// All combines checks: the first failure is the reason.
func All(checks ...func() error) func() error {
	return func() error {
		for _, c := range checks {
			if err := c(); err != nil {
				return err
			}
		}
		return nil
	}
}

// Root checks that the process runs as root.
func Root() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("not running as root (euid %d)", os.Geteuid())
	}
	return nil
}

// Commands checks that every named program is on PATH.
func Commands(names ...string) func() error {
	return func() error {
		var missing []string
		for _, n := range names {
			if _, err := exec.LookPath(n); err != nil {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%s not found in PATH", strings.Join(missing, ", "))
		}
		return nil
	}
}

// Filesystem checks that the kernel supports the filesystem fs (it is listed
// in /proc/filesystems, after trying `modprobe fs` when it is not).
func Filesystem(fs string) func() error {
	return func() error {
		ok, err := listed(fs)
		if err != nil {
			return err
		}
		if !ok {
			// The module may just not be loaded yet; a mount would load it.
			if p, err := exec.LookPath("modprobe"); err == nil {
				_ = exec.Command(p, "-q", fs).Run()
			}
			if ok, err = listed(fs); err != nil {
				return err
			}
		}
		if !ok {
			return fmt.Errorf("the kernel does not support %s (not in /proc/filesystems, modprobe %s did not help)", fs, fs)
		}
		return nil
	}
}

func listed(fs string) (bool, error) {
	f, err := os.Open("/proc/filesystems")
	if err != nil {
		return false, fmt.Errorf("cannot read /proc/filesystems: %w", err)
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 {
			names = append(names, fields[len(fields)-1])
		}
	}
	return slices.Contains(names, fs), sc.Err()
}

// LoopDevices checks that loop devices can be set up (/dev/loop-control).
func LoopDevices() error {
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errors.New("no loop device support (/dev/loop-control is missing)")
		}
		return fmt.Errorf("loop devices: %w", err)
	}
	return nil
}
