package zfs

import (
	"context"
	"errors"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/storage"
)

// Holds on real pools (zfs-fuse, pool version 23: holds, no bookmarks).

func holdSide(t *testing.T) (side, string) {
	t.Helper()
	need(t)
	s := newSide(t, 128<<20)
	if !s.b.Features().Holds {
		t.Fatalf("pool %s has no holds: %s", s.pool.Name, s.b.Features())
	}
	zfsRun(t, "create", s.b.full("share"))
	return s, s.b.full("share")
}

func userrefs(t *testing.T, snap string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSpace(zfsRun(t, "get", "-H", "-p", "-o", "value", "userrefs", snap)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mustSnap(t *testing.T, b *Backend, name string) {
	t.Helper()
	if _, err := b.CreateSnapshot(context.Background(), "share", name); err != nil {
		t.Fatal(err)
	}
}

func exists(t *testing.T, snap string) bool {
	t.Helper()
	return exec.Command("zfs", "list", "-H", "-o", "name", snap).Run() == nil
}

// TestCursorHoldMovesAndKeepsTheBase: the cursor's snapshot is held
// (ferry_cursor_<job>); a user's `zfs destroy` of it fails; moving the
// cursor holds the new one and releases the old; the received mark holds
// under its own tag; ferry's own destroy of the cursor is a Conflict naming
// the hold, of a leftover ferry hold succeeds, of a foreign-held snapshot is
// a Conflict naming `zfs holds`, and nothing is destroyed by a refusal.
func TestCursorHoldMovesAndKeepsTheBase(t *testing.T) {
	s, fds := holdSide(t)
	b, ctx := s.b, context.Background()
	mustSnap(t, b, "s1")
	if err := b.SetMark(ctx, "share", "cursor.job1", "s1"); err != nil {
		t.Fatal(err)
	}
	if n := userrefs(t, fds+"@s1"); n != 1 {
		t.Fatalf("cursor snapshot s1 has %d holds, want 1", n)
	}
	out, err := exec.Command("zfs", "destroy", fds+"@s1").CombinedOutput()
	if err == nil || !exists(t, fds+"@s1") {
		t.Fatalf("zfs destroy of the held cursor succeeded: %s", out)
	}
	// The tag is ferry_cursor_job1: releasing it by hand frees the snapshot.
	zfsRun(t, "release", "ferry_cursor_job1", fds+"@s1")
	zfsRun(t, "hold", "ferry_cursor_job1", fds+"@s1")

	mustSnap(t, b, "s2")
	if err := b.SetMark(ctx, "share", "cursor.job1", "s2"); err != nil {
		t.Fatal(err)
	}
	if a, c := userrefs(t, fds+"@s1"), userrefs(t, fds+"@s2"); a != 0 || c != 1 {
		t.Fatalf("after moving the cursor: s1 %d holds, s2 %d; want 0, 1", a, c)
	}
	// Another mark holds under its own tag; moving (or retrying) the cursor leaves it.
	if err := b.SetMark(ctx, "share", "received.job1", "s1"); err != nil {
		t.Fatal(err)
	}
	if err := b.SetMark(ctx, "share", "cursor.job1", "s2"); err != nil {
		t.Fatal(err)
	}
	if a, c := userrefs(t, fds+"@s1"), userrefs(t, fds+"@s2"); a != 1 || c != 1 {
		t.Fatalf("with received.job1 on s1 and cursor.job1 on s2: %d, %d holds; want 1, 1", a, c)
	}
	zfsRun(t, "release", "ferry_received_job1", fds+"@s1")
	zfsRun(t, "inherit", markPrefix+escapeProp("received.job1"), fds)

	// ferry's own destroy of the cursor: refused, naming the hold.
	err = b.DestroySnapshot(ctx, "share", "s2")
	var se *storage.Error
	if !errors.As(err, &se) || se.Kind != storage.KindConflict || !strings.Contains(err.Error(), "ferry_cursor_job1") ||
		!strings.Contains(err.Error(), "zfs holds") || !exists(t, fds+"@s2") {
		t.Fatalf("destroy of the cursor: %v (s2 still there: %v)", err, exists(t, fds+"@s2"))
	}
	// s1 is no mark's: destroyed.
	if err := b.DestroySnapshot(ctx, "share", "s1"); err != nil || exists(t, fds+"@s1") {
		t.Fatalf("destroy of the old cursor: %v", err)
	}

	// A foreign hold: Conflict naming it, the snapshot stays.
	mustSnap(t, b, "s3")
	zfsRun(t, "hold", "keep-me", fds+"@s3")
	err = b.DestroySnapshot(ctx, "share", "s3")
	if !errors.As(err, &se) || se.Kind != storage.KindConflict || !strings.Contains(err.Error(), "1 user hold") ||
		!strings.Contains(err.Error(), "zfs holds "+fds+"@s3") || !exists(t, fds+"@s3") {
		t.Fatalf("destroy of a foreign-held snapshot: %v", err)
	}
	t.Logf("foreign hold: %v", err)
	zfsRun(t, "release", "keep-me", fds+"@s3")

	// A leftover of a crash between hold and mark (the tag on a snapshot
	// the mark does not name): released by ferry's destroy.
	zfsRun(t, "hold", "ferry_cursor_job1", fds+"@s3")
	if err := b.DestroySnapshot(ctx, "share", "s3"); err != nil || exists(t, fds+"@s3") {
		t.Fatalf("destroy of a snapshot with a leftover cursor hold: %v", err)
	}
}

// failingWriter fails its first write, after reading the holds the send
// holds while it streams.
type failingWriter struct {
	t      *testing.T
	snaps  []string
	during []int
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.during == nil {
		for _, s := range w.snaps {
			w.during = append(w.during, userrefs(w.t, s))
		}
	}
	return 0, errors.New("the link dropped")
}

// TestStepHoldsReleasedAndLeftoversCleaned: a step holds from and to under
// ferry_step_<job> while it streams and releases them when the send fails
// or succeeds; a step hold a killed worker left is released at the job's
// next step, and by the job's next cursor mark.
func TestStepHoldsReleasedAndLeftoversCleaned(t *testing.T) {
	s, fds := holdSide(t)
	b, ctx := s.b, context.Background()
	mustSnap(t, b, "s0")
	mustSnap(t, b, "s1")
	mustSnap(t, b, "s2")
	// A killed worker's step hold on s0 (no send of this worker streams it).
	zfsRun(t, "hold", "ferry_step_job1", fds+"@s0")

	w := &failingWriter{t: t, snaps: []string{fds + "@s0", fds + "@s1", fds + "@s2"}}
	err := b.Send(ctx, storage.SendRequest{Dataset: "share", From: "s1", To: "s2", Job: "job1"}, w)
	if err == nil {
		t.Fatal("a send into a failing writer succeeded")
	}
	if len(w.during) != 3 || w.during[0] != 0 || w.during[1] != 1 || w.during[2] != 1 {
		t.Fatalf("holds while streaming (s0, s1, s2): %v; want [0 1 1] (leftover released, from and to held)", w.during)
	}
	for _, n := range []string{"s0", "s1", "s2"} {
		if c := userrefs(t, fds+"@"+n); c != 0 {
			t.Fatalf("after the failed send %s has %d holds", n, c)
		}
	}
	if err := b.Send(ctx, storage.SendRequest{Dataset: "share", To: "s2", Job: "job1"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if c := userrefs(t, fds+"@s2"); c != 0 {
		t.Fatalf("after a successful send s2 has %d holds", c)
	}

	// A leftover is also released when the job's cursor moves.
	zfsRun(t, "hold", "ferry_step_job1", fds+"@s1")
	if err := b.SetMark(ctx, "share", "cursor.job1", "s2"); err != nil {
		t.Fatal(err)
	}
	if a, c := userrefs(t, fds+"@s1"), userrefs(t, fds+"@s2"); a != 0 || c != 1 {
		t.Fatalf("after the mark: s1 %d holds (leftover step hold), s2 %d (cursor); want 0, 1", a, c)
	}
}

// TestPruneLeavesTheHeldCursor: the prune activity on a real pool keeps
// the cursor (held) and the snapshot after it, destroys the older ferry
// snapshot, and reports a foreign-held one as not pruned with the hold
// named, continuing past it.
func TestPruneLeavesTheHeldCursor(t *testing.T) {
	s, fds := holdSide(t)
	b, ctx := s.b, context.Background()
	names := []string{"ferry_job1_20261130T090000.000Z", "ferry_job1_20261130T100000.000Z", "ferry_job1_20261130T110000.000Z", "ferry_job1_20261130T120000.000Z"}
	for _, n := range names {
		mustSnap(t, b, n)
	}
	zfsRun(t, "hold", "backup-tool", fds+"@"+names[0])
	if err := b.SetMark(ctx, "share", "cursor.job1", names[2]); err != nil {
		t.Fatal(err)
	}
	h := &activities.Host{Name: "nas-a", Backend: b}
	res, err := h.Prune(ctx, activities.PruneInput{Job: "job1", Dataset: "share", Side: activities.SideSource, Grid: "1x1h",
		Now: time.Date(2026, 11, 30, 12, 30, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]activities.SnapshotVerdict{}
	for _, v := range res.Snapshots {
		got[v.Name] = v
	}
	if v := got[names[0]]; v.Deleted || !strings.Contains(v.Error, "zfs holds") || !exists(t, fds+"@"+names[0]) {
		t.Fatalf("foreign-held snapshot: %+v", v)
	}
	if v := got[names[1]]; !v.Deleted || exists(t, fds+"@"+names[1]) {
		t.Fatalf("older ferry snapshot not pruned: %+v", v)
	}
	for _, n := range names[2:] {
		if v := got[n]; v.Deleted || !exists(t, fds+"@"+n) {
			t.Fatalf("%s pruned: %+v", n, v)
		}
	}
	if res.Failed != 1 {
		t.Fatalf("prune: %d failed, want 1 (the foreign-held one): %+v", res.Failed, res)
	}
	if c := userrefs(t, fds+"@"+names[2]); c != 1 {
		t.Fatalf("the cursor has %d holds after prune", c)
	}
}
