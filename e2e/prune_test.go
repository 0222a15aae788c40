package e2e

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/starter"
	"github.com/ferry-nas/ferry/workflows"
)

// The grids of the retention scenario: one 1-minute period on the source,
// two on the target.
const (
	pruneSourceGrid = "1x1m"
	pruneTargetGrid = "2x1m"
	pruneRetention  = `{source: "` + pruneSourceGrid + `", target: "` + pruneTargetGrid + `"}`
	pruneRuns       = 4
)

// TestDirRetentionPrunesBothSides (issue 8, items 1-3) on dir.
func TestDirRetentionPrunesBothSides(t *testing.T) {
	retentionScenario(t, newEnv(t, envOptions{ShareSize: 1 << 20, Retention: pruneRetention}))
}

// TestBtrfsRetentionPrunesBothSides: the same on btrfs.
func TestBtrfsRetentionPrunesBothSides(t *testing.T) {
	retentionScenario(t, newBtrfsEnv(t, envOptions{ShareSize: 1 << 20, Retention: pruneRetention,
		Images: map[string]int64{source: 256 << 20, target: 256 << 20}}))
}

// retentionScenario: pruneRuns runs with the grids leave exactly the
// snapshots the rule of docs/retention.md keeps on each side (simulated
// run by run below, independently of package retention), each deletion
// is logged by its host's worker with job, snapshot and rule, and every
// run after the first is an incremental. Then, with retention switched
// off, an old-dated snapshot of the job is replicated; `ferry prune
// --dry-run` says it goes on both sides and deletes nothing, `ferry
// snapshots --json` parses and shows the cursor and the last received
// snapshot protected, `ferry prune` deletes it on both sides, and the
// next run is still an incremental with the source's content.
func retentionScenario(t *testing.T, e *env) {
	e.apply()
	var srcWant, tgtWant []string
	pruned := map[string][]string{} // host -> snapshots it deleted
	for i := range pruneRuns {
		st := e.start()
		res := e.mustSucceed(st)
		if i == pruneRuns-1 {
			e.recordHistory(st, "prune-step-"+e.kind+"-v5.json")
		}
		srcBefore, tgtBefore := append(srcWant, res.Snapshot), append(tgtWant, res.Snapshot)
		srcWant = keptByOneBucket(t, e.job, srcBefore, 1, time.Minute)
		tgtWant = keptByOneBucket(t, e.job, tgtBefore, 2, time.Minute)
		pruned[source] = append(pruned[source], without(srcBefore, srcWant)...)
		pruned[target] = append(pruned[target], without(tgtBefore, tgtWant)...)
		require.Equal(t, srcWant, e.snapshotNames(source), "run %d: the source's snapshots", i+1)
		require.Equal(t, tgtWant, e.snapshotNames(target), "run %d: the target's snapshots", i+1)
		require.NotNil(t, res.Prune, "run %d reports no prune", i+1)
		require.Equal(t, workflows.PruneSide{Host: source, Grid: pruneSourceGrid, Pruned: len(srcBefore) - len(srcWant), Kept: len(srcWant),
			Deleted: nonEmpty(without(srcBefore, srcWant))}, *res.Prune.Source, "run %d", i+1)
		require.Equal(t, workflows.PruneSide{Host: target, Grid: pruneTargetGrid, Pruned: len(tgtBefore) - len(tgtWant), Kept: len(tgtWant),
			Deleted: nonEmpty(without(tgtBefore, tgtWant))}, *res.Prune.Target, "run %d", i+1)
		if i > 0 {
			require.Len(t, res.Plan.Steps, 1, "run %d is not one incremental step", i+1)
			require.NotEmpty(t, res.Plan.Base, "run %d is not an incremental", i+1)
		}
		t.Logf("run %d: %s; source keeps %v, target %v", i+1, res.Prune, srcWant, tgtWant)
	}
	require.NotEmpty(t, pruned[source], "the runs pruned nothing on the source: the scenario proves nothing")
	for _, h := range []string{source, target} {
		var logged []string
		for _, l := range e.workerLogs(h, "pruned snapshot") {
			require.Equal(t, e.job, l["job"])
			require.Equal(t, h, l["host"])
			require.Contains(t, []any{"superseded", "expired"}, l["rule"])
			logged = append(logged, l["snapshot"].(string))
		}
		require.ElementsMatch(t, pruned[h], logged, "%s's worker did not log exactly its deletions", h)
	}

	// Retention off: an old-dated snapshot of the job is replicated and stays.
	e.setRetention("")
	old := workflows.SnapshotPrefix(e.job) + "20200101T000000.000Z"
	_, err := e.backend(source).CreateSnapshot(e.ctx, srcDataset, old)
	require.NoError(t, err)
	res := e.mustSucceed(e.start())
	require.Nil(t, res.Prune, "a run without retention pruned")
	require.Equal(t, old, res.Plan.Steps[0].To)
	srcWant, tgtWant = sorted(append(srcWant, old, res.Snapshot)), sorted(append(tgtWant, old, res.Snapshot))
	require.Equal(t, srcWant, e.snapshotNames(source))
	require.Equal(t, tgtWant, e.snapshotNames(target))

	// Retention back in the file: the dry run deletes nothing and says what would go.
	e.setRetention(pruneRetention)
	dry := e.ferry("prune", e.job, "--dry-run")
	require.Zero(t, dry.Code, dry.Out)
	require.Contains(t, dry.Out, "dry run, nothing deleted")
	require.Equal(t, 2, strings.Count(dry.Out, "DELETE  "+old+"  expired:"), "the old snapshot is not marked DELETE on both sides")
	require.Equal(t, srcWant, e.snapshotNames(source), "--dry-run deleted on the source")
	require.Equal(t, tgtWant, e.snapshotNames(target), "--dry-run deleted on the target")

	list := e.ferry("snapshots", e.job, "--json")
	require.Zero(t, list.Code, list.Out)
	var out workflows.PruneOutcome
	require.NoError(t, json.Unmarshal([]byte(list.Out[strings.Index(list.Out, "{"):]), &out), list.Out)
	require.True(t, out.DryRun)
	require.Equal(t, srcWant, verdictNames(out.Source))
	require.Equal(t, tgtWant, verdictNames(out.Target))
	requireRule(t, out.Source, res.Snapshot, activities.RuleCursor, true)
	requireRule(t, out.Target, res.Snapshot, activities.RuleReceived, true)
	requireRule(t, out.Source, old, "expired", false)
	requireRule(t, out.Target, old, "expired", false)
	table := e.ferry("snapshots", e.job)
	require.Zero(t, table.Code, table.Out)
	require.Contains(t, table.Out, "KEPT BY")
	require.Contains(t, table.Out, "nothing: the next prune deletes it (expired)")

	done := e.ferry("prune", e.job)
	require.Zero(t, done.Code, done.Out)
	e.recordHistory(starter.Started{WorkflowID: workflows.PruneWorkflowID(e.job)}, "prune-workflow-"+e.kind+"-v5.json")
	require.Equal(t, 2, strings.Count(done.Out, "DELETED "+old+"  expired:"), done.Out)
	srcWant, tgtWant = keptByOneBucket(t, e.job, srcWant, 1, time.Minute), keptByOneBucket(t, e.job, tgtWant, 2, time.Minute)
	require.NotContains(t, srcWant, old)
	require.Equal(t, srcWant, e.snapshotNames(source))
	require.Equal(t, tgtWant, e.snapshotNames(target))

	// The next run is an incremental from the cursor, with the source's content.
	e.apply()
	last := e.start()
	res = e.mustSucceed(last)
	require.Len(t, res.Plan.Steps, 1)
	require.Equal(t, srcWant[len(srcWant)-1], res.Plan.Base)
	e.requireSameContent(res.Snapshot)
	require.NotNil(t, res.Prune)

	// Visibility records a closed run a moment after it closes (asynchronously,
	// more slowly on a loaded machine), so status may show the run before it.
	var lastSuccess *starter.RunSummary
	require.Eventually(t, func() bool {
		st := e.ferry("status", e.job, "--json")
		var sts []starter.JobStatus
		if st.Code != 0 || !strings.Contains(st.Out, "[") || json.Unmarshal([]byte(st.Out[strings.Index(st.Out, "["):]), &sts) != nil || len(sts) != 1 {
			return false
		}
		lastSuccess = sts[0].LastSuccess
		return lastSuccess != nil && lastSuccess.WorkflowID == last.WorkflowID
	}, 20*time.Second, 250*time.Millisecond, "ferry status never showed run %s as the last success", last.WorkflowID)
	require.NotNil(t, lastSuccess.Prune, "ferry status does not say what the last run pruned")
	require.Equal(t, *res.Prune, *lastSuccess.Prune)
}

// keptByOneBucket is the rule of docs/retention.md for a grid of one
// bucket COUNTxPERIOD, written out for the test: ages count back from the
// newest snapshot (kept); each period keeps its oldest; a snapshot older
// than COUNT periods is deleted. names are the job's snapshots; the
// result is sorted oldest first.
func keptByOneBucket(t *testing.T, job string, names []string, count int, period time.Duration) []string {
	t.Helper()
	at := map[string]time.Time{}
	for _, n := range names {
		ts, err := time.Parse("20060102T150405.000Z", strings.TrimPrefix(n, workflows.SnapshotPrefix(job)))
		require.NoError(t, err, n)
		at[n] = ts
	}
	names = sorted(names)
	newest := at[names[len(names)-1]]
	keeper := map[int]bool{}
	var kept []string
	for _, n := range names {
		p := int(newest.Sub(at[n]) / period)
		if n == names[len(names)-1] || (p < count && !keeper[p]) {
			kept = append(kept, n)
		}
		keeper[p] = true
	}
	return kept
}

// sorted returns ferry snapshot names oldest first (their times sort as text).
func sorted(names []string) []string {
	out := slices.Clone(names)
	slices.Sort(out)
	return slices.Compact(out)
}

func without(all, drop []string) []string {
	var out []string
	for _, n := range all {
		if !slices.Contains(drop, n) {
			out = append(out, n)
		}
	}
	return out
}

func nonEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// snapshotNames lists host's snapshots of the job's dataset, sorted by name.
func (e *env) snapshotNames(host string) []string {
	e.t.Helper()
	ds := srcDataset
	if host == target {
		ds = tgtDataset
	}
	snaps, err := e.backend(host).ListSnapshots(e.ctx, ds)
	require.NoError(e.t, err)
	var out []string
	for _, s := range snaps {
		out = append(out, s.Name)
	}
	return sorted(out)
}

// setRetention rewrites the job's retention line in the config file ("":
// none) and reloads it; e.apply() makes the schedule follow.
func (e *env) setRetention(value string) {
	e.t.Helper()
	data, err := os.ReadFile(e.cfgPath)
	require.NoError(e.t, err)
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "retention:") {
			lines = append(lines, l)
		}
	}
	text := strings.Join(lines, "\n")
	if value != "" {
		text = strings.TrimRight(text, "\n") + "\n    retention: " + value + "\n"
	}
	require.NoError(e.t, os.WriteFile(e.cfgPath, []byte(text), 0o644))
	e.cfg, err = config.Load(e.cfgPath)
	require.NoError(e.t, err)
	e.apply()
}

func verdictNames(r activities.PruneResult) []string {
	var out []string
	for _, v := range r.Snapshots {
		out = append(out, v.Name)
	}
	return sorted(out)
}

// requireRule checks that name's verdict has rule among its reasons and
// the given keep.
func requireRule(t *testing.T, r activities.PruneResult, name, rule string, keep bool) {
	t.Helper()
	for _, v := range r.Snapshots {
		if v.Name != name {
			continue
		}
		require.Equal(t, keep, v.Keep, "%s on %s", name, r.Host)
		for _, reason := range v.Reasons {
			if reason.Rule == rule {
				return
			}
		}
		t.Fatalf("%s on %s: no %q among %+v", name, r.Host, rule, v.Reasons)
	}
	t.Fatalf("%s is not listed on %s", name, r.Host)
}
