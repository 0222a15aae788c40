package zfs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-nas/ferry/internal/prereq"
	"github.com/ferry-nas/ferry/storage/storagetest"
)

// poolPrefix starts the name of every pool a test makes: ferrytest<pid>x<random>.
const poolPrefix = "ferrytest"

// need skips (or, with FERRY_REQUIRE=zfs, fails) without root, the tools
// or a running ZFS service (zfs-fuse's daemon).
func need(t testing.TB) {
	t.Helper()
	prereq.Need(t, Kind, prereq.All(prereq.Root, prereq.Commands("zfs", "zpool"), func() error {
		if out, err := exec.Command("zpool", "list", "-H").CombinedOutput(); err != nil {
			return fmt.Errorf("zpool list: %v: %s (start zfs-fuse, or load the zfs module)", err, strings.TrimSpace(string(out)))
		}
		return nil
	}))
}

// testPool is a pool on a sparse file, destroyed with its image on cleanup.
type testPool struct {
	name  string
	mount string
}

func newPool(t testing.TB, size int64) testPool {
	t.Helper()
	reapStale(t)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := fmt.Sprintf("%s%dx%s", poolPrefix, os.Getpid(), hex.EncodeToString(rnd[:]))
	dir := t.TempDir()
	img := filepath.Join(os.TempDir(), name+".img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	mount := filepath.Join(dir, "mnt")
	t.Cleanup(func() {
		// zfs-fuse may still hold a just-unmounted dataset for a moment.
		var out []byte
		var err error
		for range 40 {
			if out, err = exec.Command("zpool", "destroy", "-f", name).CombinedOutput(); err == nil {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("zpool destroy %s: %v: %s", name, err, out)
		}
		os.Remove(img)
	})
	if out, err := exec.Command("zpool", "create", "-f", "-m", mount, name, img).CombinedOutput(); err != nil {
		t.Fatalf("zpool create %s: %v: %s", name, err, out)
	}
	return testPool{name: name, mount: mount}
}

// reapStale destroys ferrytest pools whose process is gone (a test killed
// before its cleanup ran) and their images.
func reapStale(t testing.TB) {
	out, err := exec.Command("zpool", "list", "-H", "-o", "name").Output()
	if err != nil {
		return
	}
	for _, name := range strings.Fields(string(out)) {
		rest, ok := strings.CutPrefix(name, poolPrefix)
		if !ok {
			continue
		}
		pid, _, _ := strings.Cut(rest, "x")
		n, err := strconv.Atoi(pid)
		if err != nil || n == os.Getpid() || syscall.Kill(n, 0) == nil {
			continue
		}
		if out, err := exec.Command("zpool", "destroy", "-f", name).CombinedOutput(); err != nil {
			t.Logf("reaping stale pool %s: %v: %s", name, err, out)
			continue
		}
		os.Remove(filepath.Join(os.TempDir(), name+".img"))
		t.Logf("reaped stale test pool %s", name)
	}
}

func zfsRun(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("zfs", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("zfs %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// side is one host: a pool with the root dataset <pool>/ferry.
type side struct {
	pool testPool
	b    *Backend
}

func newSide(t testing.TB, size int64) side {
	p := newPool(t, size)
	zfsRun(t, "create", p.name+"/ferry")
	b, err := New(p.name + "/ferry")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	return side{pool: p, b: b}
}

func (s side) live(dataset string) string { return filepath.Join(s.pool.mount, "ferry", dataset) }

func harness(t *testing.T) storagetest.Harness {
	need(t)
	src, tgt := newSide(t, 256<<20), newSide(t, 256<<20)
	sides := map[storagetest.Side]side{storagetest.Source: src, storagetest.Target: tgt}
	return storagetest.Harness{
		Source: src.b,
		Target: tgt.b,
		CreateDataset: func(t testing.TB, s storagetest.Side, dataset string) {
			zfsRun(t, "create", "-p", sides[s].b.full(dataset))
		},
		LivePath: func(s storagetest.Side, dataset string) string { return sides[s].live(dataset) },
		PrepareTarget: func(t testing.TB, dataset string) {
			if dir := filepath.Dir(dataset); dir != "." {
				zfsRun(t, "create", "-p", tgt.b.full(dir))
			}
		},
		RootDir:            func(s storagetest.Side) string { return sides[s].live("") },
		LinearReceives:     true,
		NoXattrs:           !storagetest.XattrsSupported(src.live("")),
		NoSpaceFileUnknown: true,
		SmallTarget: func(t testing.TB) storagetest.SmallTarget {
			small := newSide(t, 64<<20)
			zfsRun(t, "create", "-p", small.b.full("replicas"))
			avail := strings.TrimSpace(zfsRun(t, "get", "-H", "-p", "-o", "value", "available", small.b.root))
			n, err := strconv.ParseInt(avail, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return storagetest.SmallTarget{Backend: small.b, Root: small.live(""), Capacity: n}
		},
	}
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, harness)
}
