package activities

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/dir"
	"github.com/ferry-nas/ferry/transfer"
)

// fakeSessions holds send sessions open until told otherwise.
type fakeSessions struct{ open map[string]bool }

func (f *fakeSessions) Register(transfer.SessionSpec) (string, time.Time, error) {
	return "", time.Time{}, errors.New("not used")
}
func (f *fakeSessions) Revoke(t string) bool { delete(f.open, t); return true }
func (f *fakeSessions) Session(t string) (transfer.SessionInfo, bool) {
	if !f.open[t] {
		return transfer.SessionInfo{}, false
	}
	return transfer.SessionInfo{State: "streaming", Expires: time.Now().Add(time.Hour)}, true
}

// failingDestroy refuses to destroy one snapshot.
type failingDestroy struct {
	storage.Backend
	name string
}

func (f failingDestroy) DestroySnapshot(ctx context.Context, ds, name string) error {
	if name == f.name {
		return storage.Errorf(storage.KindTemporary, "destroy", ds, name, "try again", "injected failure")
	}
	return f.Backend.DestroySnapshot(ctx, ds, name)
}

func pruneHost(t *testing.T) *Host {
	t.Helper()
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "share"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "share", "f"), []byte("x"), 0o644))
	b, err := dir.New(root)
	require.NoError(t, err)
	return &Host{Name: "nas-a", Backend: b, Sessions: &fakeSessions{open: map[string]bool{}}, Logger: zaptest.NewLogger(t)}
}

func names(t *testing.T, h *Host) []string {
	t.Helper()
	snaps, err := h.Backend.ListSnapshots(context.Background(), "share")
	require.NoError(t, err)
	var out []string
	for _, s := range snaps {
		out = append(out, s.Name)
	}
	return out
}

func rulesOf(v SnapshotVerdict) []string {
	var out []string
	for _, r := range v.Reasons {
		out = append(out, r.Rule)
	}
	return out
}

// TestPruneKeepsEveryProtection: on a real dir source, grid 2x1h drops the
// job's superseded and expired snapshots and keeps, whatever the grid
// says, another job's cursor, another job's snapshot, a snapshot ferry did
// not make, what a partial on the target needs, what an open send session
// streams, the job's cursor and what is newer than it. --dry-run deletes
// nothing and says the same.
func TestPruneKeepsEveryProtection(t *testing.T) {
	ctx := context.Background()
	h := pruneHost(t)
	guid := map[string]string{}
	for _, n := range []string{
		"ferry_j_20261130T000000.000Z", // s1: expired, another job's cursor
		"ferry_j_20261130T010000.000Z", // s2: expired, in flight
		"ferry_k_20261130T020000.000Z", // another job's
		"manual-1",                     // not ferry's
		"ferry_j_20261130T030000.000Z", // s3: expired, a partial on the target is of it
		"ferry_j_20261130T080000.000Z", // s4: expired (age 2h): deleted
		"ferry_j_20261130T083000.000Z", // s5: the oldest of [1h,2h): kept
		"ferry_j_20261130T091000.000Z", // s6: the oldest of [0,1h): kept
		"ferry_j_20261130T093000.000Z", // s7: superseded by s6: deleted
		"ferry_j_20261130T094000.000Z", // s8: cursor.j
		"ferry_j_20261130T100000.000Z", // s9: newest, pending
	} {
		s, err := h.Backend.CreateSnapshot(ctx, "share", n)
		require.NoError(t, err)
		guid[n] = s.GUID
	}
	require.NoError(t, h.Backend.SetMark(ctx, "share", "cursor.other", "ferry_j_20261130T000000.000Z"))
	require.NoError(t, h.Backend.SetMark(ctx, "share", "cursor.j", "ferry_j_20261130T094000.000Z"))
	h.Sessions.(*fakeSessions).open["tok"] = true
	h.recordSend("tok", sendRef{Dataset: "share", To: "ferry_j_20261130T010000.000Z"})
	in := PruneInput{Job: "j", Dataset: "share", Side: SideSource, Grid: "2x1h", Now: time.Date(2026, 11, 30, 10, 5, 0, 0, time.UTC),
		DryRun: true, Protect: []Protection{{GUID: guid["ferry_j_20261130T030000.000Z"], Rule: RulePartialBase, Detail: "a partial on nas-b is of it"}}}
	before := names(t, h)

	dry, err := runActivity(t, h.Prune, in)
	require.NoError(t, err)
	require.Equal(t, before, names(t, h), "a dry run deletes nothing")
	require.Equal(t, 2, dry.Pruned)
	require.Equal(t, 9, dry.Kept)
	want := map[string][]string{
		"ferry_j_20261130T000000.000Z": {RuleCursor},
		"ferry_j_20261130T010000.000Z": {RuleInFlight},
		"ferry_k_20261130T020000.000Z": {"other-job"},
		"manual-1":                     {"not-ferry"},
		"ferry_j_20261130T030000.000Z": {RulePartialBase},
		"ferry_j_20261130T080000.000Z": {"expired"},
		"ferry_j_20261130T083000.000Z": {"bucket"},
		"ferry_j_20261130T091000.000Z": {"bucket"},
		"ferry_j_20261130T093000.000Z": {"superseded"},
		"ferry_j_20261130T094000.000Z": {RuleCursor, RuleBucket},
		"ferry_j_20261130T100000.000Z": {RulePending, RuleBucket},
	}
	require.Len(t, dry.Snapshots, len(want))
	for _, v := range dry.Snapshots {
		require.Equal(t, want[v.Name], rulesOf(v), v.Name)
		require.Equal(t, v.Name != "ferry_j_20261130T080000.000Z" && v.Name != "ferry_j_20261130T093000.000Z", v.Keep, v.Name)
		require.False(t, v.Deleted, v.Name)
		if v.Name != "manual-1" {
			require.True(t, v.TimeFromName, v.Name)
		}
	}

	in.DryRun = false
	res, err := runActivity(t, h.Prune, in)
	require.NoError(t, err)
	require.Equal(t, 2, res.Pruned)
	var left []string
	for _, n := range before {
		if n != "ferry_j_20261130T080000.000Z" && n != "ferry_j_20261130T093000.000Z" {
			left = append(left, n)
		}
	}
	require.Equal(t, left, names(t, h))

	// The session ended: its snapshot is no longer in flight, and expired.
	delete(h.Sessions.(*fakeSessions).open, "tok")
	res, err = runActivity(t, h.Prune, in)
	require.NoError(t, err)
	require.Equal(t, 1, res.Pruned)
	require.NotContains(t, names(t, h), "ferry_j_20261130T010000.000Z")
}

// TestPruneTargetKeepsReceivedAndContinuesPastAFailure: on the target the
// job's received mark and what is newer stay; a snapshot that fails to be
// destroyed is reported and the others are still pruned.
func TestPruneTargetKeepsReceivedAndContinuesPastAFailure(t *testing.T) {
	ctx := context.Background()
	h := pruneHost(t)
	all := []string{"ferry_j_20261101T000000Z", "ferry_j_20261102T000000Z", "ferry_j_20261103T000000Z", "ferry_j_20261130T000000Z", "ferry_j_20261130T010000Z"}
	for _, n := range all {
		_, err := h.Backend.CreateSnapshot(ctx, "share", n)
		require.NoError(t, err)
	}
	require.NoError(t, h.Backend.SetMark(ctx, "share", "received.j", "ferry_j_20261130T000000Z"))
	h.Backend = failingDestroy{Backend: h.Backend, name: "ferry_j_20261102T000000Z"}
	res, err := runActivity(t, h.Prune, PruneInput{Job: "j", Dataset: "share", Side: SideTarget, Grid: "1x1d", Now: time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)})
	require.NoError(t, err)
	require.Equal(t, 2, res.Pruned)
	require.Equal(t, 1, res.Failed)
	require.Equal(t, 3, res.Kept, "the failed one is kept")
	require.Equal(t, []string{"ferry_j_20261102T000000Z", "ferry_j_20261130T000000Z", "ferry_j_20261130T010000Z"}, names(t, h))
	for _, v := range res.Snapshots {
		switch v.Name {
		case "ferry_j_20261102T000000Z":
			require.Contains(t, v.Error, "injected failure")
		case "ferry_j_20261130T000000Z":
			require.Equal(t, RuleReceived, v.Reasons[0].Rule)
		case "ferry_j_20261130T010000Z":
			require.Equal(t, RulePending, v.Reasons[0].Rule)
		}
	}
}

// TestPruneRefusesABadGrid: a grid that does not parse is Invalid and
// deletes nothing.
func TestPruneRefusesABadGrid(t *testing.T) {
	h := pruneHost(t)
	_, err := h.Backend.CreateSnapshot(context.Background(), "share", "ferry_j_20261101T000000Z")
	require.NoError(t, err)
	_, err = runActivity(t, h.Prune, PruneInput{Job: "j", Dataset: "share", Side: SideSource, Grid: "weekly", Now: time.Now()})
	require.ErrorContains(t, err, "retention grid")
	require.Len(t, names(t, h), 1)
}
