package workflows

import (
	"reflect"
	"testing"
	"time"

	"github.com/ferry-nas/ferry/activities"
)

// TestPlanOrdersByFilesystemNotClock: the clock stepped back an hour before
// each snapshot, so creation times say the opposite of the real order, and
// the hosts listed them in yet another order. The plan follows Seq.
func TestPlanOrdersByFilesystemNotClock(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
	at := func(seq uint64) time.Time { return t0.Add(-time.Duration(seq) * time.Hour) }
	s1 := activities.Snapshot{Name: "ferry_j_1", GUID: "g1", Seq: 101, CreatedAt: at(1)}
	s2 := activities.Snapshot{Name: "ferry_j_2", GUID: "g2", Seq: 102, CreatedAt: at(2)}
	s3 := activities.Snapshot{Name: "ferry_j_3", GUID: "g3", Seq: 103, CreatedAt: at(3)}
	r1 := activities.Snapshot{Name: "ferry_j_1", GUID: "t1", ReceivedGUID: "g1", Seq: 7, CreatedAt: at(1)}
	r2 := activities.Snapshot{Name: "ferry_j_2", GUID: "t2", ReceivedGUID: "g2", Seq: 9, CreatedAt: at(2)}
	in := PlanInput{Job: "j", Want: "ferry_j_3", OrderBySeq: true,
		Source: []activities.Snapshot{s3, s1, s2}, Target: []activities.Snapshot{r2, r1}}
	want := Plan{Base: "ferry_j_2", Steps: []Step{{From: "ferry_j_2", FromGUID: "g2", TargetParent: "ferry_j_2", To: "ferry_j_3", ToGUID: "g3"}}}
	got, err := ComputePlan(in)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("plan\n got %+v\nwant %+v", got, want)
	}
	if in.Source[0].Name != "ferry_j_3" {
		t.Fatal("the planner reordered its caller's slice")
	}

	// Without the flag (histories recorded before the change) the planner
	// trusts the given order, as it always did: ferry_j_1 is then the newest
	// common snapshot and the plan differs, which is why the flag exists.
	in.OrderBySeq = false
	old, err := ComputePlan(in)
	if err != nil {
		t.Fatal(err)
	}
	if old.Base != "ferry_j_1" {
		t.Fatalf("old path: base %q, want ferry_j_1 (the given order)", old.Base)
	}
}

// TestPlanOrderKeepsSnapshotsWithoutSeqInGivenOrder: snapshots without a
// Seq (made before hosts reported one) come first, in the order given, so
// a history recorded then plans the same with the flag on.
func TestPlanOrderKeepsSnapshotsWithoutSeqInGivenOrder(t *testing.T) {
	old1, old2 := src("ferry_j_1", "g1"), src("ferry_j_2", "g2")
	numbered := activities.Snapshot{Name: "ferry_j_3", GUID: "g3", Seq: 5}
	got := orderBySeq([]activities.Snapshot{numbered, old1, old2})
	if names := names(got); !reflect.DeepEqual(names, []string{"ferry_j_1", "ferry_j_2", "ferry_j_3"}) {
		t.Fatalf("order %q", names)
	}
	in := PlanInput{Job: "j", Want: "ferry_j_2", Source: []activities.Snapshot{old1, old2}, Target: []activities.Snapshot{rcv("ferry_j_1", "g1")}}
	without, err1 := ComputePlan(in)
	in.OrderBySeq = true
	with, err2 := ComputePlan(in)
	if err1 != nil || err2 != nil || !reflect.DeepEqual(without, with) {
		t.Fatalf("snapshots without Seq planned differently with the flag: %+v (%v) vs %+v (%v)", without, err1, with, err2)
	}
}
