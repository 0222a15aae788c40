package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/storage/layout"
)

// TestHooksAroundTheSnapshot (issue 10): real scripts as nas-a's hooks. A
// pre_snapshot hook that fails stops the run before the snapshot, with its
// output in the error, and the post_snapshot hook still runs; when the pre
// hook succeeds, the post hook finds the run's snapshot made.
func TestHooksAroundTheSnapshot(t *testing.T) {
	hookDir := t.TempDir()
	refuse := filepath.Join(hookDir, "refuse")
	trace := filepath.Join(hookDir, "trace")
	require.NoError(t, os.WriteFile(refuse, nil, 0o644))
	// Each hook appends its phase, the snapshot and whether the snapshot
	// exists on nas-a ($1 is the dataset's snapshot directory).
	record := fmt.Sprintf(`if [ -d "$1/$FERRY_SNAPSHOT" ]; then made=made; else made=absent; fi
echo "$FERRY_HOOK $FERRY_JOB $FERRY_DATASET $FERRY_SNAPSHOT $made" >> %q
`, trace)
	pre := filepath.Join(hookDir, "pre.sh")
	require.NoError(t, os.WriteFile(pre, []byte("#!/bin/sh\n"+record+fmt.Sprintf(`if [ -e %q ]; then echo "cannot flush: queue busy"; exit 4; fi
`, refuse)), 0o755))
	post := filepath.Join(hookDir, "post.sh")
	require.NoError(t, os.WriteFile(post, []byte("#!/bin/sh\n"+record), 0o755))

	// The hooks get nas-a's snapshot directory as their argument: a link,
	// pointed there once newEnv has made the root.
	snapLink := filepath.Join(hookDir, "snapshots")
	e := newEnv(t, envOptions{ShareSize: 1 << 20,
		SourceHooks: fmt.Sprintf("{flush: {command: [%q, %q]}, done: {command: [%q, %q]}}", pre, snapLink, post, snapLink),
		JobExtra:    "    hooks: {pre_snapshot: flush, post_snapshot: done}"})
	require.NoError(t, os.Symlink(layout.Layout{Root: e.roots[source]}.SnapshotsDir(srcDataset), snapLink))
	e.apply()

	first := e.start()
	_, err := e.result(first)
	var ae *temporal.ApplicationError
	require.ErrorAs(t, err, &ae, "the run whose pre hook failed did not fail")
	require.Equal(t, activities.ErrHookFailed, ae.Type())
	require.Contains(t, ae.Message(), "job "+e.job+": ")
	require.Contains(t, ae.Message(), `pre_snapshot hook "flush" (`+pre+") on "+source+" failed: exit status 4; its last output:\ncannot flush: queue busy")
	snaps, err := e.backend(source).ListSnapshots(e.ctx, srcDataset)
	require.NoError(t, err)
	require.Empty(t, snaps, "a snapshot was taken although the pre hook failed")
	e.recordHistory(first, "hooks-pre-failed-v6.json")

	require.NoError(t, os.Remove(refuse))
	second := e.start()
	res := e.mustSucceed(second)

	data, err := os.ReadFile(trace)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	firstSnap := strings.Fields(lines[0])[3]
	require.Equal(t, []string{
		"pre_snapshot " + e.job + " " + srcDataset + " " + firstSnap + " absent",
		"post_snapshot " + e.job + " " + srcDataset + " " + firstSnap + " absent",
		"pre_snapshot " + e.job + " " + srcDataset + " " + res.Snapshot + " absent",
		"post_snapshot " + e.job + " " + srcDataset + " " + res.Snapshot + " made",
	}, lines)
	require.NotEqual(t, firstSnap, res.Snapshot)
	e.requireSameContent(res.Snapshot)
	e.recordHistory(second, "hooks-around-snapshot-v6.json")
}
