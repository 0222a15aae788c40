package workflows

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/ferry-nas/ferry/activities"
)

// Item 8(b): the source deleted snapshots the target still holds.
func TestPlanKeepsTargetHistory(t *testing.T) {
	const ds = "dataset-a"
	snap := func(name, guid string) activities.Snapshot {
		return activities.Snapshot{Name: name, GUID: guid, DatasetGUID: ds}
	}
	// replica is a target snapshot received from source guid from, of source dataset dataset, on parent.
	replica := func(name, from, dataset, parent string) activities.Snapshot {
		return activities.Snapshot{Name: name, GUID: "t-" + from, ReceivedGUID: from, DatasetGUID: dataset, ParentGUID: parent}
	}
	w, newSnap := snap("ferry_j_w", "gw"), snap("ferry_j_new", "gnew")
	rw := replica("ferry_j_w", "gw", ds, "")
	rx := replica("ferry_j_x", "gx", ds, "gw")
	incremental := Plan{Base: "ferry_j_w", Steps: []Step{{From: "ferry_j_w", FromGUID: "gw", TargetParent: "ferry_j_w", To: "ferry_j_new", ToGUID: "gnew"}}}
	withKept := func(p Plan, kept ...string) Plan { p.Kept = kept; return p }

	tests := []struct {
		name    string
		in      PlanInput
		want    Plan
		says    []string // a conflict's message contains each of these
		notSays []string
	}{
		{
			name: "the cursor deleted on the source stays on a dir target; the plan continues from the older common snapshot",
			in:   PlanInput{Want: "ferry_j_new", Source: []activities.Snapshot{w, newSnap}, Target: []activities.Snapshot{rw, rx}, TargetBackend: "dir"},
			want: withKept(incremental, "ferry_j_x"),
		},
		{
			name: "the same on btrfs",
			in:   PlanInput{Want: "ferry_j_new", Source: []activities.Snapshot{w, newSnap}, Target: []activities.Snapshot{rw, rx}, TargetBackend: "btrfs"},
			want: withKept(incremental, "ferry_j_x"),
		},
		{
			name: "a replica received before targets recorded the source dataset is known by its parent",
			in: PlanInput{Want: "ferry_j_new", Source: []activities.Snapshot{w, newSnap},
				Target: []activities.Snapshot{replica("ferry_j_w", "gw", "", ""), replica("ferry_j_x", "gx", "", "gw"), replica("ferry_j_y", "gy", "", "gx")}, TargetBackend: "dir"},
			want: withKept(incremental, "ferry_j_x", "ferry_j_y"),
		},
		{
			name: "no common snapshot left: the new snapshot is sent in full and the replicas stay",
			in:   PlanInput{Want: "ferry_j_new", Source: []activities.Snapshot{newSnap}, Target: []activities.Snapshot{rw, rx}, TargetBackend: "dir"},
			want: Plan{Steps: []Step{{To: "ferry_j_new", ToGUID: "gnew"}}, Kept: []string{"ferry_j_w", "ferry_j_x"}},
		},
		{
			name:    "a replica of another source newer than the base is in the way, and said to be a replica",
			in:      PlanInput{Want: "ferry_j_new", Source: []activities.Snapshot{w, newSnap}, Target: []activities.Snapshot{rw, replica("ferry_k_1", "gk", "dataset-b", "")}, TargetBackend: "dir"},
			says:    []string{"ferry_k_1 (a replica received from another source)", "1 of them is a replica: removing it destroys that backup", "another target dataset"},
			notSays: []string{"none of them"},
		},
		{
			name:    "a replica whose source is unknown is in the way, and said to be a replica",
			in:      PlanInput{Want: "ferry_j_new", Source: []activities.Snapshot{w, newSnap}, Target: []activities.Snapshot{rw, replica("old", "gold", "", "")}, TargetBackend: "btrfs"},
			says:    []string{"old (a replica received from a source ferry cannot identify)", "is a replica: removing it destroys"},
			notSays: []string{"none of them"},
		},
		{
			name:    "a snapshot made on the target is in the way; kept history is not listed",
			in:      PlanInput{Want: "ferry_j_new", Source: []activities.Snapshot{w, newSnap}, Target: []activities.Snapshot{rw, rx, {Name: "local-edit", GUID: "zz"}}, TargetBackend: "dir"},
			says:    []string{"newer than the common base ferry_j_w", "local-edit (made on the target, not received)", "none of them is a replica"},
			notSays: []string{"ferry_j_x", "destroys"},
		},
		{
			name:    "no common snapshot and only another source's replicas: not 'none of them received'",
			in:      PlanInput{Want: "ferry_j_new", Source: []activities.Snapshot{newSnap}, Target: []activities.Snapshot{replica("ferry_k_1", "gk", "dataset-b", "")}, TargetBackend: "dir"},
			says:    []string{"no common snapshot", "did not come from this source", "a replica received from another source", "removing it destroys that backup"},
			notSays: []string{"none of them received"},
		},
		{
			name:    "zfs receives only onto its newest snapshot: this source's deleted cursor is in the way, said to be a replica",
			in:      PlanInput{Want: "ferry_j_new", Source: []activities.Snapshot{w, newSnap}, Target: []activities.Snapshot{rw, rx}, TargetBackend: "zfs"},
			says:    []string{"ferry_j_x (a replica of this source, deleted there", "is a replica: removing it destroys"},
			notSays: []string{"none of them"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Job, tc.in.KeepHistory, tc.in.OrderBySeq = "j", true, true
			got, err := ComputePlan(tc.in)
			if tc.says != nil {
				var ce *ConflictError
				if !errors.As(err, &ce) || len(ce.Target) == 0 {
					t.Fatalf("want a ConflictError naming target snapshots, got %v (plan %+v)", err, got)
				}
				for _, s := range tc.says {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("message lacks %q:\n%s", s, err)
					}
				}
				for _, s := range tc.notSays {
					if strings.Contains(err.Error(), s) {
						t.Errorf("message says %q:\n%s", s, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("plan\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}

	// Histories recorded before the change replay the old verdict.
	old, err := ComputePlan(PlanInput{Job: "j", Want: "ferry_j_new", Source: []activities.Snapshot{w, newSnap}, Target: []activities.Snapshot{rw, rx}, TargetBackend: "dir"})
	var ce *ConflictError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "target has diverged") {
		t.Fatalf("old path: want the diverged conflict, got %v (plan %+v)", err, old)
	}
}

func TestKeptNoteSaysWhatHappened(t *testing.T) {
	in := ReplicateInput{Source: Endpoint{Host: "nas-a"}, Target: Endpoint{Host: "nas-b"}}
	for _, tc := range []struct {
		plan Plan
		want string
	}{
		{Plan{}, ""},
		{Plan{Base: "ferry_w", Steps: []Step{{To: "ferry_n"}}, Kept: []string{"ferry_x"}},
			"ferry_x, the cursor, was deleted on nas-a; continuing from ferry_w; nas-b keeps its replica of ferry_x as history"},
		{Plan{Steps: []Step{{To: "ferry_n"}}, Kept: []string{"ferry_w", "ferry_x"}},
			"ferry_x, the cursor, and ferry_w were deleted on nas-a; no snapshot both sides hold is left: sending ferry_n in full; nas-b keeps its replicas of them as history"},
	} {
		if got := keptNote(in, tc.plan); got != tc.want {
			t.Errorf("note\n got %q\nwant %q", got, tc.want)
		}
	}
}
