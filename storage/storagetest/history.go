package storagetest

import (
	"testing"

	"github.com/ferry-nas/ferry/storage"
)

// testIncrementalBesideNewer: the planner keeps a target's replica of a
// snapshot the source deleted and continues from an older common snapshot
// (issue 7, item 8b), which holds only if a backend receives an
// incremental onto an older base while a newer received snapshot is
// there, leaving that one as it was. Backends whose received snapshots are
// linear (ZFS) do not set IndependentReceives and skip this case.
func testIncrementalBesideNewer(t *testing.T, h *Harness) {
	if !h.IndependentReceives {
		t.Skip("the backend's received snapshots are not independent of each other")
	}
	live := source(t, h)
	s1 := snapshot(t, h, "hist1")
	MutateTree(t, live, 1)
	s2 := snapshot(t, h, "hist2")
	MutateTree(t, live, 2)
	s3 := snapshot(t, h, "hist3")
	receiveFrom(t, h, s1, "", "")
	receiveFrom(t, h, s2, "hist1", s1.GUID)
	before := digestOf(t, h.Target, TargetDataset, "hist2")

	// The source deletes hist2 (the cursor); the next step is hist1 -> hist3.
	must(t, h.Source.DestroySnapshot(ctx, SourceDataset, "hist2"))
	receiveFrom(t, h, s3, "hist1", s1.GUID)

	requireOrder(t, h, Target, TargetDataset, []string{"hist1", "hist2", "hist3"})
	if got := digestOf(t, h.Target, TargetDataset, "hist2"); got != before {
		t.Fatal("receiving hist3 onto hist1 changed the target's hist2")
	}
	if _, err := h.Target.Verify(ctx, storage.VerifyRequest{Dataset: TargetDataset, Name: "hist2", SourceGUID: s2.GUID, ParentSourceGUID: s1.GUID, Digest: s2.Digest}); err != nil {
		t.Fatalf("the kept replica hist2 no longer verifies: %v", err)
	}
	if a, b := digestOf(t, h.Source, SourceDataset, "hist3"), digestOf(t, h.Target, TargetDataset, "hist3"); a != b {
		t.Fatalf("hist3 differs: source %s, target %s", a, b)
	}
}
