package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ferry-nas/ferry/internal/zfspool"
)

// heldSnapshots lists the snapshots of the ZFS dataset fds that carry user
// holds, as "name=userrefs".
func heldSnapshots(t *testing.T, fds string) []string {
	t.Helper()
	var held []string
	out := zfspool.Zfs(t, "get", "-H", "-p", "-d", "1", "-o", "name,value", "userrefs", fds)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) == 2 && strings.Contains(f[0], "@") && f[1] != "0" {
			held = append(held, strings.TrimPrefix(f[0], fds)+"="+f[1])
		}
	}
	return held
}

// TestZFSHoldsFollowTheCursor: through `ferry run --wait` with real worker
// processes on zfs-fuse pools: after each run exactly the marked snapshot
// is held on each side (the cursor on the source, the received mark on the
// target; the step holds of the send are gone), a user's `zfs destroy` of
// the source's cursor fails, and the second run moves both holds to its
// snapshot.
func TestZFSHoldsFollowTheCursor(t *testing.T) {
	e := newZFSEnv(t, envOptions{ShareSize: 8 << 20, Images: map[string]int64{source: 256 << 20, target: 256 << 20}})
	require.Equal(t, 0, e.ferry("apply").Code, "ferry apply failed")
	src := e.cfg.Hosts[source].Root + "/" + srcDataset
	tgt := e.cfg.Hosts[target].Root + "/" + tgtDataset

	out, st := e.runCLI()
	require.Equal(t, 0, out.Code, "ferry run --wait failed")
	first := e.mustSucceed(st).Snapshot
	require.Equal(t, []string{"@" + first + "=1"}, heldSnapshots(t, src), "source holds after the first run")
	require.Equal(t, []string{"@" + first + "=1"}, heldSnapshots(t, tgt), "target holds after the first run")
	msg, err := exec.Command("zfs", "destroy", src+"@"+first).CombinedOutput()
	require.Error(t, err, "a user's zfs destroy of the cursor succeeded: %s", msg)
	t.Logf("zfs destroy of the cursor: %s", strings.TrimSpace(string(msg)))

	changeShare(t, e.share, "second-run")
	out, st = e.runCLI()
	require.Equal(t, 0, out.Code, "ferry run --wait failed")
	second := e.mustSucceed(st).Snapshot
	require.NotEqual(t, first, second)
	require.Equal(t, []string{"@" + second + "=1"}, heldSnapshots(t, src), "source holds after the second run")
	require.Equal(t, []string{"@" + second + "=1"}, heldSnapshots(t, tgt), "target holds after the second run")
	e.requireSameContent(second)
}

// TestZFSSenderKilledStepHoldReleased: the sending worker killed with
// SIGKILL mid-stream leaves its step hold (ferry_step_<job>) on the
// snapshot it was sending; started again, the retried step releases that
// leftover, and when the run is done the snapshot carries the cursor's hold
// alone.
func TestZFSSenderKilledStepHoldReleased(t *testing.T) {
	e := newZFSEnv(t, envOptions{ShareSize: 96 << 20, BWLimit: "16MiB", Images: map[string]int64{source: 512 << 20, target: 512 << 20}})
	e.apply()
	src := e.cfg.Hosts[source].Root + "/" + srcDataset
	st := e.start()
	p := e.waitStreaming(st, 0.25)
	require.NotEmpty(t, p.Snapshot)
	snap := src + "@" + p.Snapshot
	step := "ferry_step_" + e.job

	e.kill(source)
	// zfs hold of a tag already there fails: the killed worker's step hold is left.
	msg, err := exec.Command("zfs", "hold", step, snap).CombinedOutput()
	require.Error(t, err, "no step hold %s on %s after the sender was killed", step, snap)
	require.Contains(t, string(msg), "tag already exists")
	require.Equal(t, []string{"@" + p.Snapshot + "=1"}, heldSnapshots(t, src), "holds after the kill")

	e.restart(source)
	res := e.mustSucceed(st)
	require.Equal(t, p.Snapshot, res.Snapshot)
	require.Equal(t, []string{"@" + p.Snapshot + "=1"}, heldSnapshots(t, src), "holds after the run")
	// The one hold left is the cursor's, not the step's: holding the step tag now succeeds.
	zfspool.Zfs(t, "hold", step, snap)
	zfspool.Zfs(t, "release", step, snap)
	zfspool.Zfs(t, "release", "ferry_cursor_"+e.job, snap)
	require.Empty(t, heldSnapshots(t, src), "another hold than the cursor's was left")
	e.requireSameContent(res.Snapshot)
	e.requireNoPartials()
}
