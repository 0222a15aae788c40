package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/layout"
	"github.com/ferry-nas/ferry/storage/replicaview"
)

// writeDocs fills a share with a few small files under docs/.
func writeDocs(dir string, _ int64) error {
	if err := os.MkdirAll(filepath.Join(dir, "docs"), 0o755); err != nil {
		return err
	}
	for _, n := range []string{"f1", "f2", "f3"} {
		if err := os.WriteFile(filepath.Join(dir, "docs", n), []byte("the content of "+n+", as the source has it\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// damageKeepingStat changes a replica file's content without changing its
// size or mtime (the quick checks' blind spot): its bytes are reversed.
func damageKeepingStat(t testing.TB, p string) {
	t.Helper()
	fi, err := os.Stat(p)
	require.NoError(t, err)
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	for i, j := 0, len(data)-1; i < j; i, j = i+1, j-1 {
		data[i], data[j] = data[j], data[i]
	}
	require.NoError(t, os.Chmod(p, 0o644))
	require.NoError(t, os.WriteFile(p, data, 0o644))
	require.NoError(t, os.Chmod(p, fi.Mode().Perm()))
	require.NoError(t, os.Chtimes(p, fi.ModTime(), fi.ModTime()))
	after, err := os.Stat(p)
	require.NoError(t, err)
	require.Equal(t, fi.Size(), after.Size())
	require.Equal(t, fi.ModTime(), after.ModTime())
}

// targetState is what a failed run must leave as it was on the target.
type targetState struct {
	snapshots []storage.Snapshot
	latest    string // where the replica view's latest points
}

func (e *env) targetNow() targetState {
	e.t.Helper()
	snaps, err := e.backend(target).ListSnapshots(e.ctx, tgtDataset)
	require.NoError(e.t, err)
	latest, err := os.Readlink(e.latestLink())
	require.NoError(e.t, err)
	return targetState{snapshots: snaps, latest: latest}
}

func (e *env) latestLink() string {
	return filepath.Join(e.roots[target], filepath.FromSlash(tgtDataset), replicaview.Latest)
}

// requireTargetAsBefore: the same snapshots, no partial receive left,
// latest where it was.
func (e *env) requireTargetAsBefore(before targetState) {
	e.t.Helper()
	after, err := e.backend(target).ListSnapshots(e.ctx, tgtDataset)
	require.NoError(e.t, err)
	require.Equal(e.t, before.snapshots, after, "the failed run changed the target's snapshots")
	ps, err := e.backend(target).Partials(e.ctx, tgtDataset)
	require.NoError(e.t, err)
	require.Empty(e.t, ps, "the failed run left a partial receive")
	latest, err := os.Readlink(e.latestLink())
	require.NoError(e.t, err)
	require.Equal(e.t, before.latest, latest, "latest is not at the last verified snapshot")
}

// TestModifiedReplicaFileSameSizeAndMtime is the administrator's report:
// a replica file that both replica snapshots hold (one inode, hard-linked
// by the incremental receive) is changed without changing its size or
// mtime, and the job runs again. The receive reads the base's changed
// files before linking them and refuses it: the run fails as Conflict
// before anything is committed (the target as before: same snapshots, no
// partial, latest at the last verified one), the error names both
// damaged snapshots and one command removing them, and doing what it says
// lets the next run through with a replica equal to the source.
func TestModifiedReplicaFileSameSizeAndMtime(t *testing.T) {
	e := newEnv(t, envOptions{WriteShare: writeDocs})
	e.apply()
	first := e.mustSucceed(e.start())
	require.NoError(t, os.WriteFile(filepath.Join(e.share, "docs", "f4"), []byte("new\n"), 0o644))
	second := e.mustSucceed(e.start())
	e.requireReplicaView(first.Snapshot, second.Snapshot)

	snaps := layout.Layout{Root: e.roots[target]}.SnapshotsDir(tgtDataset)
	f2 := filepath.Join(snaps, second.Snapshot, "docs", "f2")
	var a, b unix.Stat_t
	require.NoError(t, unix.Stat(f2, &a))
	require.NoError(t, unix.Stat(filepath.Join(snaps, first.Snapshot, "docs", "f2"), &b))
	require.Equal(t, a.Ino, b.Ino, "the incremental did not hard-link docs/f2 to its base's: the case proves nothing")
	damageKeepingStat(t, f2)
	require.NoError(t, os.WriteFile(filepath.Join(e.share, "docs", "f5"), []byte("newer\n"), 0o644))

	before := e.targetNow()

	out, st := e.runCLI()
	require.NotEqual(t, 0, out.Code, "the run succeeded on top of a damaged replica")
	_, err := e.result(st)
	var ae *temporal.ApplicationError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, activities.ErrConflict, ae.Type(), "run failed with %v", err)
	for _, want := range []string{
		`the content of "docs/f2" changed after commit`,
		second.Snapshot, first.Snapshot,
		`"docs/f2" is one file (hard-linked) with "docs/f2" of ` + first.Snapshot + ", damaged the same way",
		"remove all 2 of them, then run the job again",
	} {
		require.Contains(t, err.Error(), want, "the Conflict does not say it")
		require.Contains(t, out.Out, want, "ferry run --wait does not say it")
	}
	for _, a := range []string{"Verify", "DestroySnapshot", "Mark"} {
		require.Empty(t, e.activities(st, a), "the run went on to %s", a)
	}

	e.requireTargetAsBefore(before)

	// Doing what the error says (one command for both) lets the next run
	// through: nothing intact is left, so it sends in full.
	m := regexp.MustCompile(`as root: (.*?) — every one of these files`).FindStringSubmatch(err.Error())
	require.NotNil(t, m, "the error gives no command")
	rm, err := exec.Command("sh", "-c", m[1]).CombinedOutput()
	require.NoError(t, err, "%s: %s", m[1], rm)
	left, err := e.backend(target).ListSnapshots(e.ctx, tgtDataset)
	require.NoError(t, err)
	require.Empty(t, left, "the command left a damaged snapshot")
	again := e.mustSucceed(e.start())
	require.Len(t, again.Plan.Steps, 1)
	require.Empty(t, again.Plan.Steps[0].From, "the run after the fix is not a full send")
	e.requireSameContent(again.Snapshot)
	as, err := e.backend(target).Anomalies(e.ctx, tgtDataset)
	require.NoError(t, err)
	require.Empty(t, as, "the fix left something behind")
}

// TestVerifyFailingEveryTimeLeavesTheTargetAsBefore: with verify: deep, a
// post_snapshot hook on nas-a sets back the mtime of the file new in the run's
// source snapshot (while a flag file exists), after ferry recorded it: the
// stream carries what ferry recorded, the source's content digest what is
// on disk, so every attempt's deep verify fails. The run fails as
// VerifyFailed after 3 attempts and the target is as before it: each
// attempt's snapshot destroyed, the last one too, latest at the last
// verified snapshot, no partial. With the flag gone and that source
// snapshot removed, the next run replicates.
func TestVerifyFailingEveryTimeLeavesTheTargetAsBefore(t *testing.T) {
	hookDir := t.TempDir()
	flag := filepath.Join(hookDir, "falsify")
	hook := filepath.Join(hookDir, "post.sh")
	require.NoError(t, os.WriteFile(hook, []byte(fmt.Sprintf(`#!/bin/sh
[ -e %q ] || exit 0
touch -h -d @86400 "$1/$FERRY_SNAPSHOT/docs/f4"
`, flag)), 0o755))
	snapLink := filepath.Join(hookDir, "snapshots")
	e := newEnv(t, envOptions{WriteShare: writeDocs, Verify: "deep",
		SourceHooks: fmt.Sprintf("{falsify: {command: [%q, %q]}}", hook, snapLink),
		JobExtra:    "    hooks: {post_snapshot: falsify}"})
	require.NoError(t, os.Symlink(layout.Layout{Root: e.roots[source]}.SnapshotsDir(srcDataset), snapLink))
	e.apply()
	first := e.mustSucceed(e.start())
	require.NoError(t, os.WriteFile(filepath.Join(e.share, "docs", "f4"), []byte("new\n"), 0o644))
	before := e.targetNow()

	require.NoError(t, os.WriteFile(flag, nil, 0o644))
	st := e.start()
	_, err := e.result(st)
	var ae *temporal.ApplicationError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, activities.ErrVerifyFailed, ae.Type(), "run failed with %v", err)
	t.Logf("the run failed as expected: %v", err)
	e.recordHistory(st, "verify-failed-destroys-last-v7.json")
	require.Len(t, e.activities(st, "Verify"), 3, "the step was not attempted 3 times")
	require.Len(t, e.activities(st, "DestroySnapshot"), 3, "not every unverified snapshot was destroyed")

	e.requireTargetAsBefore(before)
	as, err := e.backend(target).Anomalies(e.ctx, tgtDataset)
	require.NoError(t, err)
	require.Empty(t, as, "the failed run left something on the target")
	des, err := os.ReadDir(filepath.Dir(e.latestLink()))
	require.NoError(t, err)
	var view []string
	for _, d := range des {
		if d.Name() != replicaview.Marker {
			view = append(view, d.Name())
		}
	}
	require.ElementsMatch(t, []string{replicaview.Latest, first.Snapshot}, view, "the replica's view")

	require.NoError(t, os.Remove(flag))
	srcSnaps, err := e.backend(source).ListSnapshots(e.ctx, srcDataset)
	require.NoError(t, err)
	require.Len(t, srcSnaps, 2)
	require.NoError(t, e.backend(source).DestroySnapshot(e.ctx, srcDataset, srcSnaps[1].Name), "remove the falsified snapshot")
	again := e.mustSucceed(e.start())
	e.requireSameContent(again.Snapshot)
	e.requireReplicaView(first.Snapshot, again.Snapshot)
}
