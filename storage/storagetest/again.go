package storagetest

import (
	"slices"
	"strings"
	"testing"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
)

// testReceiveAgain: a receive whose snapshot the target already holds
// complete — the one being sent, received by an earlier attempt whose
// answer was lost — is done: it returns that snapshot, as the first
// receive did, and changes nothing. A snapshot of that name that is not the
// one being sent (another source snapshot under the name) is a Conflict
// that changes nothing either.
func testReceiveAgain(t *testing.T, h *Harness) {
	live := source(t, h)
	s1 := snapshot(t, h, "snap1")
	full := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap1"})
	first := receive(t, h, full, s1, "", "")
	MutateTree(t, live, 1)
	s2 := snapshot(t, h, "snap2")
	incr := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, From: "snap1", To: "snap2"})
	second := receive(t, h, incr, s2, "snap1", s1.GUID)

	listBefore, err := h.Target.ListSnapshots(ctx, TargetDataset)
	must(t, err)
	fp := footprint(t, h, Target)
	same := func(what string) {
		t.Helper()
		list, err := h.Target.ListSnapshots(ctx, TargetDataset)
		must(t, err)
		if !slices.EqualFunc(list, listBefore, sameSnapshot) {
			t.Fatalf("%s changed the target's snapshots:\nbefore %+v\nafter  %+v", what, listBefore, list)
		}
		if got := footprint(t, h, Target); !slices.Equal(got, fp) {
			t.Fatalf("%s changed the target's files:\nbefore %q\nafter  %q", what, fp, got)
		}
		if ps, err := h.Target.Partials(ctx, TargetDataset); err != nil || len(ps) != 0 {
			t.Fatalf("%s left partials %+v (%v)", what, ps, err)
		}
	}

	for _, c := range []struct {
		what   string
		src    storage.Snapshot
		parent string
		data   []byte
		want   storage.Snapshot
	}{
		{"the full receive again", s1, "", full, first},
		{"the incremental receive again", s2, "snap1", incr, second},
	} {
		got, err := h.Target.Receive(ctx, storage.ReceiveRequest{Dataset: TargetDataset, Name: c.src.Name, SourceGUID: c.src.GUID, Parent: c.parent},
			Stream(t, c.data, resume.Position{}))
		if err != nil {
			t.Fatalf("%s: %v; want the snapshot the first receive made", c.what, err)
		}
		if !sameSnapshot(got, c.want) {
			t.Fatalf("%s returned %+v; the first receive returned %+v", c.what, got, c.want)
		}
		same(c.what)
		if _, err := h.Target.Verify(ctx, storage.VerifyRequest{Dataset: TargetDataset, Name: c.src.Name, SourceGUID: c.src.GUID, ParentSourceGUID: c.want.ParentGUID, Digest: c.src.Digest}); err != nil {
			t.Fatalf("after %s, verify: %v", c.what, err)
		}
	}

	// Another source snapshot under the name snap2: not the one the target holds.
	must(t, h.Source.DestroySnapshot(ctx, SourceDataset, "snap2"))
	MutateTree(t, live, 2)
	other := snapshot(t, h, "snap2")
	if other.GUID == s2.GUID {
		t.Fatalf("snap2 taken again kept its identity %s: the case proves nothing", other.GUID)
	}
	data := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, From: "snap1", To: "snap2"})
	held := digestOf(t, h.Target, TargetDataset, "snap2")
	_, err = h.Target.Receive(ctx, storage.ReceiveRequest{Dataset: TargetDataset, Name: "snap2", SourceGUID: other.GUID, Parent: "snap1"},
		Stream(t, data, resume.Position{}))
	kindIs(t, err, storage.KindConflict)
	if !strings.Contains(err.Error(), "already exists on the target") {
		t.Fatalf("the Conflict does not say the name is taken: %v", err)
	}
	same("receiving another snapshot under a held name")
	if digestOf(t, h.Target, TargetDataset, "snap2") != held {
		t.Fatal("the refused receive changed the target's snap2")
	}
}

// sameSnapshot compares two snapshots' every field (times by instant).
func sameSnapshot(a, b storage.Snapshot) bool {
	ta, tb := a.CreatedAt, b.CreatedAt
	a.CreatedAt, b.CreatedAt = ta.UTC().Round(0), tb.UTC().Round(0)
	return a == b && ta.Equal(tb)
}
