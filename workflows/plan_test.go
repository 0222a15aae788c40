package workflows

import (
	"errors"
	"reflect"
	"testing"

	"github.com/ferry-nas/ferry/activities"
)

func src(name, guid string) activities.Snapshot { return activities.Snapshot{Name: name, GUID: guid} }

// rcv is a target snapshot received from the source snapshot with guid from.
func rcv(name, from string) activities.Snapshot {
	return activities.Snapshot{Name: name, GUID: "t-" + from, ReceivedGUID: from}
}

func TestComputePlan(t *testing.T) {
	s1, s2, s3, s4 := src("ferry_j_1", "g1"), src("ferry_j_2", "g2"), src("ferry_j_3", "g3"), src("ferry_j_4", "g4")
	other := src("ferry_other_x", "gx")
	resumable := activities.Partial{Name: "ferry_j_4", ID: "p1", SourceGUID: "g4", ParentGUID: "g3", Resume: &activities.ResumePosition{Offset: 4096, HashState: []byte{1}}}
	stale := activities.Partial{Name: "ferry_j_0", ID: "p0", Reason: "writable subvolume without received_uuid"}

	tests := []struct {
		name     string
		in       PlanInput
		want     Plan
		conflict bool
		notFound bool
	}{
		{
			name: "first replication sends the wanted snapshot whole",
			in:   PlanInput{Job: "j", Want: "ferry_j_2", Source: []activities.Snapshot{s1, s2}},
			want: Plan{Steps: []Step{{To: "ferry_j_2", ToGUID: "g2"}}},
		},
		{
			name: "incremental from the common base",
			in:   PlanInput{Job: "j", Want: "ferry_j_2", Source: []activities.Snapshot{s1, s2}, Target: []activities.Snapshot{rcv("ferry_j_1", "g1")}},
			want: Plan{Base: "ferry_j_1", Steps: []Step{{From: "ferry_j_1", FromGUID: "g1", TargetParent: "ferry_j_1", To: "ferry_j_2", ToGUID: "g2"}}},
		},
		{
			name: "catch-up chain through every missed snapshot of the job, skipping other jobs'",
			in:   PlanInput{Job: "j", Want: "ferry_j_4", Source: []activities.Snapshot{s1, s2, other, s3, s4}, Target: []activities.Snapshot{rcv("ferry_j_1", "g1")}},
			want: Plan{Base: "ferry_j_1", Steps: []Step{
				{From: "ferry_j_1", FromGUID: "g1", TargetParent: "ferry_j_1", To: "ferry_j_2", ToGUID: "g2"},
				{From: "ferry_j_2", FromGUID: "g2", TargetParent: "ferry_j_2", To: "ferry_j_3", ToGUID: "g3"},
				{From: "ferry_j_3", FromGUID: "g3", TargetParent: "ferry_j_3", To: "ferry_j_4", ToGUID: "g4"},
			}},
		},
		{
			name: "base found by identity even when the target renamed it",
			in:   PlanInput{Job: "j", Want: "ferry_j_2", Source: []activities.Snapshot{s1, s2}, Target: []activities.Snapshot{rcv("renamed", "g1")}},
			want: Plan{Base: "ferry_j_1", Steps: []Step{{From: "ferry_j_1", FromGUID: "g1", TargetParent: "renamed", To: "ferry_j_2", ToGUID: "g2"}}},
		},
		{
			name: "zfs-style identity: the target keeps the source guid",
			in:   PlanInput{Job: "j", Want: "ferry_j_2", Source: []activities.Snapshot{s1, s2}, Target: []activities.Snapshot{{Name: "ferry_j_1", GUID: "g1"}}},
			want: Plan{Base: "ferry_j_1", Steps: []Step{{From: "ferry_j_1", FromGUID: "g1", TargetParent: "ferry_j_1", To: "ferry_j_2", ToGUID: "g2"}}},
		},
		{
			name: "nothing to do when the target holds the wanted snapshot",
			in:   PlanInput{Job: "j", Want: "ferry_j_2", Source: []activities.Snapshot{s1, s2}, Target: []activities.Snapshot{rcv("ferry_j_1", "g1"), rcv("ferry_j_2", "g2")}, Partials: []activities.Partial{stale}},
			want: Plan{Base: "ferry_j_2", Discard: []activities.Partial{stale}},
		},
		{
			name:     "diverged target: a newer snapshot the source never had",
			in:       PlanInput{Job: "j", Want: "ferry_j_3", Source: []activities.Snapshot{s1, s2, s3}, Target: []activities.Snapshot{rcv("ferry_j_1", "g1"), {Name: "local-edit", GUID: "zz"}}},
			conflict: true,
		},
		{
			name:     "same name, other identity is not a common base",
			in:       PlanInput{Job: "j", Want: "ferry_j_2", Source: []activities.Snapshot{s1, s2}, Target: []activities.Snapshot{rcv("ferry_j_1", "elsewhere")}},
			conflict: true,
		},
		{
			name:     "no common base and a non-empty target",
			in:       PlanInput{Job: "j", Want: "ferry_j_2", Source: []activities.Snapshot{s1, s2}, Target: []activities.Snapshot{{Name: "foreign", GUID: "f"}}},
			conflict: true,
		},
		{
			name: "leftovers of older runs are discarded before streaming",
			in:   PlanInput{Job: "j", Want: "ferry_j_2", Source: []activities.Snapshot{s1, s2}, Target: []activities.Snapshot{rcv("ferry_j_1", "g1")}, Partials: []activities.Partial{stale}},
			want: Plan{Base: "ferry_j_1", Steps: []Step{{From: "ferry_j_1", FromGUID: "g1", TargetParent: "ferry_j_1", To: "ferry_j_2", ToGUID: "g2"}}, Discard: []activities.Partial{stale}},
		},
		{
			name: "a partial of the first step resumes; others are discarded",
			in:   PlanInput{Job: "j", Want: "ferry_j_4", Source: []activities.Snapshot{s3, s4}, Target: []activities.Snapshot{rcv("ferry_j_3", "g3")}, Partials: []activities.Partial{stale, resumable}},
			want: Plan{Base: "ferry_j_3", Steps: []Step{{From: "ferry_j_3", FromGUID: "g3", TargetParent: "ferry_j_3", To: "ferry_j_4", ToGUID: "g4", Resume: &resumable}}, Discard: []activities.Partial{stale}},
		},
		{
			name: "a partial of another stream for the same name is discarded, not resumed",
			in:   PlanInput{Job: "j", Want: "ferry_j_4", Source: []activities.Snapshot{s1, s4}, Partials: []activities.Partial{resumable}},
			want: Plan{Steps: []Step{{To: "ferry_j_4", ToGUID: "g4"}}, Discard: []activities.Partial{resumable}},
		},
		{
			name:     "the wanted snapshot is missing on the source",
			in:       PlanInput{Job: "j", Want: "ferry_j_9", Source: []activities.Snapshot{s1}},
			notFound: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ComputePlan(tc.in)
			var ce *ConflictError
			var nf *NotFoundError
			switch {
			case tc.conflict:
				if !errors.As(err, &ce) || len(ce.Target) == 0 {
					t.Fatalf("want a ConflictError naming target snapshots, got %v", err)
				}
				return
			case tc.notFound:
				if !errors.As(err, &nf) {
					t.Fatalf("want a NotFoundError, got %v", err)
				}
				return
			case err != nil:
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("plan\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestComputePlanIsDeterministic(t *testing.T) {
	in := PlanInput{Job: "j", Want: "ferry_j_3",
		Source: []activities.Snapshot{src("ferry_j_1", "g1"), src("ferry_j_2", "g2"), src("ferry_j_3", "g3")},
		Target: []activities.Snapshot{rcv("ferry_j_1", "g1")}}
	first, err := ComputePlan(in)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		again, _ := ComputePlan(in)
		if !reflect.DeepEqual(first, again) {
			t.Fatal("the same input gave a different plan")
		}
	}
}
