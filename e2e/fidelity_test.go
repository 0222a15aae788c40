package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/internal/sampleshare"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/layout"
	"github.com/ferry-nas/ferry/storage/storagetest"
)

// fidelitySparse is the sparse file's size: far more than the share, with
// 1 MiB of data in it.
const fidelitySparse = 256 << 20

// writeFidelity adds what a NAS share carries beyond file bytes: a hard
// link group, user xattrs (Samba's DOS attributes), a POSIX ACL, and a
// sparse file.
func writeFidelity(t testing.TB, dir string) {
	p := func(rel string) string { return filepath.Join(dir, filepath.FromSlash(rel)) }
	require.NoError(t, os.MkdirAll(p("fidelity/sub"), 0o755))
	require.NoError(t, os.WriteFile(p("fidelity/linked"), []byte("one inode, two names\n"), 0o644))
	require.NoError(t, os.Link(p("fidelity/linked"), p("fidelity/sub/linked-too")))
	storagetest.SetXattr(t, p("fidelity/linked"), "user.DOSATTRIB", []byte("0x21\x00"))
	storagetest.SetXattr(t, p("fidelity/sub"), "user.comment", []byte("a directory's xattr"))
	require.NoError(t, os.WriteFile(p("fidelity/acl"), []byte("with an ACL\n"), 0o640))
	storagetest.SetXattr(t, p("fidelity/acl"), storage.ACLAccess, storagetest.ACL(6, 1234, 6, 6))
	f, err := os.Create(p("fidelity/sparse.img"))
	require.NoError(t, err)
	_, err = f.WriteAt(storagetest.Random(7, 1<<20), 100<<20)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(fidelitySparse))
	require.NoError(t, f.Close())
}

// TestDirKeepsLinksXattrsACLsAndHoles: through real workers and `verify:
// deep`, a share with a hard link group, xattrs, a POSIX ACL and a 256 MiB
// sparse file holding 1 MiB of data replicates in full and then
// incrementally (a new link, a changed xattr): equal content digests, one
// inode per link group on the replica, the xattrs and the ACL in place, the
// sparse file's holes neither sent nor filled.
func TestDirKeepsLinksXattrsACLsAndHoles(t *testing.T) {
	e := newEnv(t, envOptions{ShareSize: 8 << 20, Verify: "deep", WriteShare: func(dir string, size int64) error {
		if err := sampleshare.Write(dir, size, uint64(time.Now().UnixNano())); err != nil {
			return err
		}
		writeFidelity(t, dir)
		return nil
	}})
	require.Equal(t, 0, e.ferry("apply").Code, "ferry apply failed")

	out, st := e.runCLI()
	require.Equal(t, 0, out.Code, "ferry run --wait failed")
	full := e.mustSucceed(st)
	e.requireSameContent(full.Snapshot)
	wire := e.relay.Upstream.Load()
	require.Less(t, wire, int64(fidelitySparse/4), "the sparse file's holes went over the wire")
	t.Logf("full run: %d bytes on the wire for an 8 MiB share and a %d MiB sparse file with 1 MiB of data", wire, fidelitySparse>>20)
	replica := func(snap, rel string) string {
		return filepath.Join(layout.Layout{Root: e.roots[target]}.SnapshotsDir(tgtDataset), snap, filepath.FromSlash(rel))
	}
	requireFidelity := func(snap string) {
		t.Helper()
		a, b := statOf(t, replica(snap, "fidelity/linked")), statOf(t, replica(snap, "fidelity/sub/linked-too"))
		require.Equal(t, a.Ino, b.Ino, "the hard link group is two inodes on the replica")
		s := statOf(t, replica(snap, "fidelity/sparse.img"))
		t.Logf("%s: the replica's sparse file takes %d bytes on disk for a size of %d", snap, s.Blocks*512, s.Size)
		require.Less(t, s.Blocks*512, int64(16<<20), "the sparse file's holes were filled on the replica (%d bytes allocated)", s.Blocks*512)
		buf := make([]byte, 64)
		n, err := unix.Lgetxattr(replica(snap, "fidelity/sub"), "user.comment", buf)
		require.NoError(t, err)
		require.Equal(t, "a directory's xattr", string(buf[:n]))
		n, err = unix.Lgetxattr(replica(snap, "fidelity/acl"), storage.ACLAccess, make([]byte, 256))
		require.NoError(t, err, "the ACL is missing on the replica")
		require.Greater(t, n, 0)
	}
	requireFidelity(full.Snapshot)

	require.NoError(t, os.Link(filepath.Join(e.share, "fidelity/linked"), filepath.Join(e.share, "fidelity/third-name")))
	storagetest.SetXattr(t, filepath.Join(e.share, "fidelity/linked"), "user.DOSATTRIB", []byte("0x20\x00"))
	out, st = e.runCLI()
	require.Equal(t, 0, out.Code, "ferry run --wait failed")
	incr := e.mustSucceed(st)
	require.Equal(t, full.Snapshot, incr.Plan.Steps[0].From, "the second run is an incremental")
	e.requireSameContent(incr.Snapshot)
	requireFidelity(incr.Snapshot)
	require.Equal(t, statOf(t, replica(incr.Snapshot, "fidelity/linked")).Ino, statOf(t, replica(incr.Snapshot, "fidelity/third-name")).Ino,
		"the new name of the inode is a copy on the replica")
	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(replica(incr.Snapshot, "fidelity/sub/linked-too"), "user.DOSATTRIB", buf)
	require.NoError(t, err)
	require.True(t, bytes.Equal(buf[:n], []byte("0x20\x00")), "xattr %q", buf[:n])
}

func statOf(t testing.TB, p string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(p)
	require.NoError(t, err)
	return fi.Sys().(*syscall.Stat_t)
}
