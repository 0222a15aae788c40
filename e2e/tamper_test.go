package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/starter"
	"github.com/ferry-nas/ferry/storage"
)

// TestBtrfsModifiedReplicaIsAConflict is issue 7's tampering, end to end:
// after a good run the newest received snapshot is made writable with the
// BTRFS_IOC_SUBVOL_SETFLAGS ioctl (which keeps received_uuid), a file is
// added and it is made read-only again; the share changes and the job runs.
// The run fails as Conflict naming the snapshot, what changed and the fix,
// `ferry run --wait` exits non-zero saying so, nothing is sent, and the
// target is exactly as it was: same subvolumes, same tree, same content.
func TestBtrfsModifiedReplicaIsAConflict(t *testing.T) {
	e := newBtrfsEnv(t, envOptions{ShareSize: 16 << 20, Images: map[string]int64{source: 512 << 20, target: 512 << 20}})
	e.apply()
	first := e.mustSucceed(e.start())
	e.requireSameContent(first.Snapshot)

	sub := filepath.Join(e.roots[target], ".ferry", "snapshots", storage.EscapeDataset(tgtDataset), first.Snapshot, first.Snapshot)
	received := subvolume(t, sub)
	setSubvolReadOnly(t, sub, false)
	require.NoError(t, os.WriteFile(filepath.Join(sub, "injected.txt"), []byte("not from the source\n"), 0o644))
	setSubvolReadOnly(t, sub, true)
	tampered := subvolume(t, sub)
	require.True(t, tampered.readOnly, "the tampered snapshot is not read-only again")
	require.Equal(t, received.receivedUUID, tampered.receivedUUID, "the ioctl dropped received_uuid")
	t.Logf("tampered with %s: %s", sub, tampered)

	uuidsBefore := subvolumeUUIDs(t, e.roots[target])
	treeBefore := treeListing(t, e.roots[target])
	digestBefore, err := storage.TreeDigest(sub, nil)
	require.NoError(t, err)

	changeShare(t, e.share, "after-tampering")
	out, st := e.runCLI()
	require.NotEqual(t, 0, out.Code, "ferry run --wait succeeded on top of a modified replica")
	_, err = e.result(st)
	var ae *temporal.ApplicationError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, activities.ErrConflict, ae.Type(), "run failed with %v", err)
	e.recordHistory(st, "modified-replica-conflict-v4.json")
	for _, want := range []string{
		tgtDataset + "@" + first.Snapshot,
		"its content changed after ferry committed it (ctransid",
		"nothing was sent",
		") is modified: its content changed",
		"To fix: remove it, then run the job again",
		"btrfs subvolume delete " + sub,
		first.Snapshot + " is a replica (received from the source): removing it deletes only this modified copy",
	} {
		require.Contains(t, err.Error(), want, "the Conflict does not say it")
		require.Contains(t, out.Out, want, "ferry run --wait does not say it")
	}
	for _, a := range []string{"OpenSend", starter.ReceiveActivity, "DestroySnapshot", "Mark"} {
		require.Empty(t, e.activities(st, a), "the run went on to %s", a)
	}
	require.NotEmpty(t, e.workerLogs(target, "found a modified item"), "the target did not report the modified snapshot")
	require.Empty(t, e.workerLogs(target, "discarded partial receive"), "something was discarded as a partial")

	// The target is as it was: nothing received, removed or changed.
	require.ElementsMatch(t, uuidsBefore, subvolumeUUIDs(t, e.roots[target]), "the target's subvolumes changed")
	require.Empty(t, listingDiff(treeBefore, treeListing(t, e.roots[target])), "the target's tree changed")
	digestAfter, err := storage.TreeDigest(sub, nil)
	require.NoError(t, err)
	require.Equal(t, digestBefore, digestAfter, "the modified snapshot's content changed")
	snaps, err := e.backend(target).ListSnapshots(e.ctx, tgtDataset)
	require.NoError(t, err)
	require.Empty(t, snaps, "the modified replica is listed as a snapshot")
	as, err := e.backend(target).Anomalies(e.ctx, tgtDataset)
	require.NoError(t, err)
	require.Len(t, as, 1)
	require.Equal(t, storage.Modified, as[0].Kind)
	require.Equal(t, first.Snapshot, as[0].Name)

	// Doing what the fix says lets the next run through, without the
	// injected file: it replicates again from scratch.
	rm, err := exec.Command("sh", "-c", as[0].Remove).CombinedOutput()
	require.NoError(t, err, "%s: %s", as[0].Remove, rm)
	again := e.mustSucceed(e.start())
	e.requireSameContent(again.Snapshot)
	as, err = e.backend(target).Anomalies(e.ctx, tgtDataset)
	require.NoError(t, err)
	require.Empty(t, as, "the fix left something behind")
}

// setSubvolReadOnly sets or clears BTRFS_SUBVOL_RDONLY with the raw
// ioctls, as `btrfs property set` of older btrfs-progs did: received_uuid
// stays.
func setSubvolReadOnly(t testing.TB, p string, ro bool) {
	t.Helper()
	const (
		getFlags = 2<<30 | 8<<16 | 0x94<<8 | 25 // _IOR(0x94, 25, __u64)
		setFlags = 1<<30 | 8<<16 | 0x94<<8 | 26 // _IOW(0x94, 26, __u64)
		rdonly   = 1 << 1
	)
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	var flags uint64
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), getFlags, uintptr(unsafe.Pointer(&flags))); e != 0 {
		t.Fatalf("BTRFS_IOC_SUBVOL_GETFLAGS %s: %v", p, e)
	}
	if ro {
		flags |= rdonly
	} else {
		flags &^= rdonly
	}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), setFlags, uintptr(unsafe.Pointer(&flags))); e != 0 {
		t.Fatalf("BTRFS_IOC_SUBVOL_SETFLAGS %s: %v", p, e)
	}
}
