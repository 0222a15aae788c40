package zfs

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ferry-nas/ferry/internal/zfspool"
	"github.com/ferry-nas/ferry/storage/storagetest"
)

func need(t testing.TB) { zfspool.Need(t) }

func zfsRun(t testing.TB, args ...string) string {
	t.Helper()
	return zfspool.Zfs(t, args...)
}

// side is one host: a pool with the root dataset <pool>/ferry.
type side struct {
	pool zfspool.Pool
	b    *Backend
}

func newSide(t testing.TB, size int64) side {
	p := zfspool.New(t, size)
	zfsRun(t, "create", p.Name+"/ferry")
	b, err := New(p.Name + "/ferry")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	return side{pool: p, b: b}
}

func (s side) live(dataset string) string { return filepath.Join(s.pool.Mount, "ferry", dataset) }

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
		HostileStreams:     func(t testing.TB, _ string) []storagetest.HostileStream { return hostileStreams(t, src) },
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
