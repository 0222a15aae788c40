package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/internal/zfspool"
	"github.com/ferry-nas/ferry/starter"
)

// TestZFSCatchUpChain: on zfs, a full run, then two runs that each made
// their snapshot while the target worker was down (terminated in the greet
// step), the share changed after each: the next run brings the target up
// to date in one run of three incremental steps, in order. The target then
// holds all four snapshots in the source's order (createtxg), each with the
// source's content digest, and nothing half-received.
func TestZFSCatchUpChain(t *testing.T) {
	e := newZFSEnv(t, envOptions{ShareSize: 16 << 20, Images: map[string]int64{source: 256 << 20, target: 256 << 20}})
	e.apply()
	full := e.mustSucceed(e.start())
	require.Len(t, full.Plan.Steps, 1)
	require.Empty(t, full.Plan.Steps[0].From, "the first run is a full send")

	// The target is down while two runs snapshot the share.
	e.kill(target)
	var missed []string
	for i := range 2 {
		changeShare(t, e.share, fmt.Sprintf("missed-%d", i))
		missed = append(missed, e.snapshotWithTargetDown())
	}
	changeShare(t, e.share, "caught-up")
	e.restart(target)
	out, st := e.runCLI()
	require.Equal(t, 0, out.Code, "ferry run --wait failed")
	res := e.mustSucceed(st)

	want := append([]string{full.Snapshot}, append(missed, res.Snapshot)...)
	steps := res.Plan.Steps
	require.Len(t, steps, 3, "the catch-up run is not a chain of the missed snapshots: %+v", steps)
	require.Equal(t, full.Snapshot, res.Plan.Base)
	for i, s := range steps {
		require.Equal(t, want[i], s.From, "step %d's base", i)
		require.Equal(t, want[i+1], s.To, "step %d's snapshot", i)
	}
	require.Contains(t, out.Out, "snapshot "+res.Snapshot)
	require.Contains(t, out.Out, "3 step(s)")

	// Every snapshot on the target, in the source's order, same content.
	replica := e.cfg.Hosts[target].Root + "/" + tgtDataset
	listed := zfspool.Zfs(t, "list", "-H", "-t", "snapshot", "-s", "createtxg", "-o", "name", "-r", replica)
	var got []string
	for _, l := range strings.Fields(listed) {
		_, name, _ := strings.Cut(l, "@")
		got = append(got, name)
	}
	require.Equal(t, want, got, "the target's snapshots (by createtxg)")
	for _, name := range want {
		e.requireSameContent(name)
	}
	e.requireNoPartials()
	e.requireNoZFSLeftovers()
	e.requireZFSReplicaPlace(out.Out, want)
}

// requireZFSReplicaPlace checks what `ferry run --wait` printed about where
// the replica is: the target dataset, and commands that, run on the target,
// show where it is mounted (the share's content is there) and list the
// snapshots (the names in want, oldest first).
func (e *env) requireZFSReplicaPlace(out string, want []string) {
	e.t.Helper()
	ds := e.cfg.Hosts[target].Root + "/" + tgtDataset
	m := regexp.MustCompile(`(?m)^replica: ` + target + `: zfs dataset (\S+) \(read-only, at its mountpoint: (zfs get mountpoint \S+)\); snapshots: (zfs list .*)$`).FindStringSubmatch(out)
	require.NotNil(e.t, m, "ferry run --wait does not say where the replica is:\n%s", out)
	require.Equal(e.t, ds, m[1])
	mount := zfspool.Zfs(e.t, withFlags(m[2], "-H", "-o", "value")...)
	mp := strings.TrimSpace(mount)
	require.DirExists(e.t, filepath.Join(mp, "documents"), "the replica's content is not at its mountpoint")
	// Read-only as printed. zfs-fuse reports readonly as "off (temporary)"
	// for its FUSE mount even when the property is on, so try a write.
	err := os.WriteFile(filepath.Join(mp, "written-by-hand"), []byte("x"), 0o644)
	require.ErrorIs(e.t, err, syscall.EROFS, "the replica at %s is writable", mp)
	listed := zfspool.Zfs(e.t, withFlags(m[3], "-H")...)
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(listed), "\n") {
		_, name, _ := strings.Cut(strings.Fields(l)[0], "@")
		got = append(got, name)
	}
	require.Equal(e.t, want, got, "the printed zfs list command")
}

// withFlags turns a printed "zfs <sub> ..." command into zfs's arguments
// with flags added after the subcommand (script-friendly output).
func withFlags(cmd string, flags ...string) []string {
	f := strings.Fields(cmd)[1:]
	return append(append([]string{f[0]}, flags...), f[1:]...)
}

// requireNoZFSLeftovers checks the target's pool for what a failed or
// interrupted receive could leave: a %recv clone, a digest clone or a
// ferry:recv record on the root.
func (e *env) requireNoZFSLeftovers() {
	e.t.Helper()
	root := e.cfg.Hosts[target].Root
	all := zfspool.Zfs(e.t, "list", "-H", "-r", "-t", "all", "-o", "name", root)
	require.NotContains(e.t, all, "%recv", "a %%recv clone is left on the target")
	require.NotContains(e.t, all, ".ferry-digest-", "a digest clone is left on the target")
	props := zfspool.Zfs(e.t, "get", "-H", "-s", "local", "-o", "property,value", "all", root)
	require.NotContains(e.t, props, "ferry:recv:", "a receive record is left on the target's root")
}

// TestZFSTargetFull: the target's pool holds someone else's data (a
// dataset beside ferry's root) and has less room than the share: the
// run fails as NoSpace, `ferry run --wait` exits non-zero naming the host,
// the dataset, the pool dataset to free space on and how much, and the
// target is left with no replica dataset, no partial, no %recv clone and no
// receive record. Once that dataset is destroyed the next run succeeds.
func TestZFSTargetFull(t *testing.T) {
	e := newZFSEnv(t, envOptions{ShareSize: 32 << 20, Images: map[string]int64{source: 256 << 20, target: 128 << 20}})
	root := e.cfg.Hosts[target].Root
	pool, _, _ := strings.Cut(root, "/")
	filler := pool + "/other-data"
	zfspool.Zfs(t, "create", filler)
	// Leave about half the share free.
	avail := zfsAvailable(t, root)
	fill := avail - e.shareSize/2
	require.Positive(t, fill, "the target pool is smaller than half the share")
	mp := strings.TrimSpace(zfspool.Zfs(t, "get", "-H", "-o", "value", "mountpoint", filler))
	writeRandomFile(t, filepath.Join(mp, "big.bin"), fill)
	e.waitFor(30*time.Second, "the filler to be accounted", func() (bool, error) {
		return zfsAvailable(t, root) < e.shareSize, nil
	})
	t.Logf("%s: %d bytes available for a %d-byte share", root, zfsAvailable(t, root), e.shareSize)

	e.apply()
	began := time.Now()
	out, st := e.runCLI()
	require.NotEqual(t, 0, out.Code, "ferry run --wait succeeded with a full target")
	t.Logf("the failing run took %v", time.Since(began).Round(time.Millisecond))
	_, err := e.result(st)
	var ae *temporal.ApplicationError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, activities.ErrNoSpace, ae.Type(), "run failed with %v", err)
	msg := ae.Error()
	for _, want := range []string{
		tgtDataset + "@",
		" on " + target + ": ",
		"pool dataset " + root + " (" + target + ")",
		"nothing of this receive was kept",
	} {
		require.Contains(t, msg, want, "the NoSpace error does not say it")
		require.Contains(t, out.Out, want, "ferry run --wait does not say it")
	}
	m := regexp.MustCompile(`free at least [0-9.]+ [KMG]iB \((\d+) bytes\) there`).FindStringSubmatch(msg)
	require.NotNil(t, m, "the error does not say how much to free: %s", msg)
	short, _ := strconv.ParseInt(m[1], 10, 64)
	require.Positive(t, short)
	t.Logf("NoSpace: %s", msg)
	d, err := tc.DescribeWorkflowExecution(e.ctx, st.WorkflowID, st.RunID)
	require.NoError(t, err)
	require.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_FAILED, d.GetWorkflowExecutionInfo().GetStatus())
	rcv := e.activities(st, starter.ReceiveActivity)
	require.Len(t, rcv, 1, "NoSpace was retried")
	require.NotNil(t, rcv[0].Failed)

	// Nothing of the receive is left on the target.
	datasets := zfspool.Zfs(t, "list", "-H", "-r", "-t", "all", "-o", "name", root)
	require.NotContains(t, datasets, root+"/"+tgtDataset, "a half-received replica dataset is left: %s", datasets)
	e.requireNoPartials()
	e.requireNoZFSLeftovers()

	// The admin frees the space (destroying the other dataset frees it in
	// the same transaction group; a removed file's blocks only come back
	// once zfs-fuse syncs, up to half a minute later): the next run
	// succeeds.
	e.waitFor(30*time.Second, "the other dataset to be destroyed", func() (bool, error) {
		// zfs-fuse may still hold a file of it open for a moment: busy.
		err := exec.Command("zfs", "destroy", "-f", filler).Run()
		return err == nil, nil
	})
	e.waitFor(30*time.Second, "the freed space to be available", func() (bool, error) {
		return zfsAvailable(t, root) > 2*e.shareSize, nil
	})
	t.Logf("destroyed %s: %d bytes available", filler, zfsAvailable(t, root))
	out, st = e.runCLI()
	require.Equal(t, 0, out.Code, "ferry run --wait failed after space was freed")
	res := e.mustSucceed(st)
	require.Len(t, res.Plan.Steps, 1)
	require.Empty(t, res.Plan.Steps[0].From, "the run after the failed one is a full send")
	e.requireSameContent(res.Snapshot)
	e.requireNoPartials()
	e.requireNoZFSLeftovers()
}

// zfsAvailable is the dataset's available bytes.
func zfsAvailable(t testing.TB, dataset string) int64 {
	t.Helper()
	v := strings.TrimSpace(zfspool.Zfs(t, "get", "-H", "-p", "-o", "value", "available", dataset))
	n, err := strconv.ParseInt(v, 10, 64)
	require.NoError(t, err, "available of %s: %q", dataset, v)
	return n
}
