package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-nas/ferry/config"
)

// TestCursorDeletedOnSource (item 8b): after two runs the administrator
// deletes the newest replicated snapshot (the cursor) on the source. The
// next run succeeds from the older snapshot both sides still hold, keeps the
// target's newer replica unchanged and says what happened. Then every
// snapshot the target holds is deleted on the source: the run after sends
// the new snapshot in full and keeps all replicas.
func TestCursorDeletedOnSource(t *testing.T) {
	cursorDeletedOnSource(t, newEnv(t, envOptions{ShareSize: 8 << 20}))
}

// TestBtrfsCursorDeletedOnSource: the same on btrfs, whose received
// subvolumes are as independent of each other as dir's snapshots.
func TestBtrfsCursorDeletedOnSource(t *testing.T) {
	cursorDeletedOnSource(t, newBtrfsEnv(t, envOptions{ShareSize: 8 << 20, Images: map[string]int64{source: 256 << 20, target: 256 << 20}}))
}

func cursorDeletedOnSource(t *testing.T, e *env) {
	e.apply()
	changes := 0
	change := func() {
		changes++
		data := make([]byte, 1<<20)
		_, _ = rand.NewChaCha8([32]byte{byte(changes), byte(time.Now().UnixNano())}).Read(data)
		require.NoError(t, os.WriteFile(filepath.Join(e.share, fmt.Sprintf("new-%d.bin", changes)), data, 0o644))
	}
	targetDigest := func(name string) string {
		d, err := e.backend(target).ContentDigest(e.ctx, tgtDataset, name)
		require.NoError(t, err, "target content digest of %s", name)
		return d
	}
	targetNames := func() []string {
		list, err := e.backend(target).ListSnapshots(e.ctx, tgtDataset)
		require.NoError(t, err)
		var out []string
		for _, s := range list {
			out = append(out, s.Name)
		}
		return out
	}

	first := e.mustSucceed(e.start())
	change()
	second := e.mustSucceed(e.start())
	require.Equal(t, first.Snapshot, second.Plan.Steps[0].From)
	cursorDigest := targetDigest(second.Snapshot)

	require.NoError(t, e.backend(source).DestroySnapshot(e.ctx, srcDataset, second.Snapshot), "delete the cursor on the source")
	change()
	out, st := e.runCLI()
	require.Equal(t, 0, out.Code, "the run after the cursor was deleted on the source failed")
	third := e.mustSucceed(st)
	if e.kind == config.BackendDir {
		e.recordHistory(st, "cursor-deleted-keeps-history-v3.json")
	}
	require.Equal(t, first.Snapshot, third.Plan.Base, "the plan continues from the older common snapshot")
	require.Len(t, third.Plan.Steps, 1)
	require.Equal(t, first.Snapshot, third.Plan.Steps[0].From)
	require.Equal(t, []string{second.Snapshot}, third.Plan.Kept)
	note := second.Snapshot + ", the cursor, was deleted on " + source + "; continuing from " + first.Snapshot
	require.Contains(t, third.Note, note)
	require.Contains(t, out.Out, note, "ferry run --wait says what happened")
	require.Equal(t, []string{first.Snapshot, second.Snapshot, third.Snapshot}, targetNames(), "the target keeps the deleted cursor's replica")
	require.Equal(t, cursorDigest, targetDigest(second.Snapshot), "the kept replica is unchanged")
	e.requireSameContent(third.Snapshot)
	e.requireSameContent(first.Snapshot)

	// Nothing in common left: the target's snapshots are all gone from the source.
	for _, name := range []string{first.Snapshot, third.Snapshot} {
		require.NoError(t, e.backend(source).DestroySnapshot(e.ctx, srcDataset, name))
	}
	change()
	fourth := e.mustSucceed(e.start())
	require.Empty(t, fourth.Plan.Base)
	require.Len(t, fourth.Plan.Steps, 1)
	require.Empty(t, fourth.Plan.Steps[0].From, "with nothing in common the new snapshot is sent in full")
	require.Equal(t, []string{first.Snapshot, second.Snapshot, third.Snapshot}, fourth.Plan.Kept)
	require.Contains(t, fourth.Note, "no snapshot both sides hold is left")
	require.Equal(t, []string{first.Snapshot, second.Snapshot, third.Snapshot, fourth.Snapshot}, targetNames())
	require.Equal(t, cursorDigest, targetDigest(second.Snapshot))
	e.requireSameContent(fourth.Snapshot)
	e.requireNoPartials()
}
