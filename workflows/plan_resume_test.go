package workflows

import (
	"reflect"
	"testing"

	"github.com/ferry-nas/ferry/activities"
)

// A first replication whose earlier run failed for a transient reason and
// kept its partial full receive: with ResumeKeptFull the plan resumes that
// receive and sends only the difference to Want; without it (runs recorded
// before the change) the partial is discarded and Want is sent whole.
func TestComputePlanResumesAKeptFullReceive(t *testing.T) {
	s1, s2, s3 := src("ferry_j_1", "g1"), src("ferry_j_2", "g2"), src("ferry_j_3", "g3")
	pos := &activities.ResumePosition{Offset: 1 << 30, HashState: []byte{1}}
	kept := activities.Partial{Name: "ferry_j_1", ID: "staging/ferry_j_1", SourceGUID: "g1", Resume: pos}
	keptNewer := activities.Partial{Name: "ferry_j_2", ID: "staging/ferry_j_2", SourceGUID: "g2", Resume: pos}
	incremental := activities.Partial{Name: "ferry_j_2", ID: "staging/ferry_j_2", SourceGUID: "g2", ParentGUID: "g1", Resume: pos}
	notResumable := activities.Partial{Name: "ferry_j_1", ID: "staging/ferry_j_1", SourceGUID: "g1", Reason: "before its first checkpoint"}
	otherStream := activities.Partial{Name: "ferry_j_1", ID: "staging/ferry_j_1", SourceGUID: "elsewhere", Resume: pos}
	whole := []Step{{To: "ferry_j_3", ToGUID: "g3"}}
	resumeS1 := []Step{
		{To: "ferry_j_1", ToGUID: "g1", Resume: &kept},
		{From: "ferry_j_1", FromGUID: "g1", TargetParent: "ferry_j_1", To: "ferry_j_3", ToGUID: "g3"},
	}

	tests := []struct {
		name string
		in   PlanInput
		want Plan
	}{
		{
			name: "the kept full receive is resumed, then one incremental to Want",
			in:   PlanInput{Job: "j", Want: "ferry_j_3", Source: []activities.Snapshot{s1, s2, s3}, Partials: []activities.Partial{kept}, ResumeKeptFull: true},
			want: Plan{Steps: resumeS1},
		},
		{
			name: "before the change the kept partial is discarded and Want sent whole",
			in:   PlanInput{Job: "j", Want: "ferry_j_3", Source: []activities.Snapshot{s1, s2, s3}, Partials: []activities.Partial{kept}},
			want: Plan{Steps: whole, Discard: []activities.Partial{kept}},
		},
		{
			name: "the newest kept full receive wins; the older one is discarded",
			in: PlanInput{Job: "j", Want: "ferry_j_3", Source: []activities.Snapshot{s1, s2, s3},
				Partials: []activities.Partial{kept, keptNewer}, ResumeKeptFull: true},
			want: Plan{Steps: []Step{
				{To: "ferry_j_2", ToGUID: "g2", Resume: &keptNewer},
				{From: "ferry_j_2", FromGUID: "g2", TargetParent: "ferry_j_2", To: "ferry_j_3", ToGUID: "g3"},
			}, Discard: []activities.Partial{kept}},
		},
		{
			name: "a partial without a resume position is not worth a step",
			in:   PlanInput{Job: "j", Want: "ferry_j_3", Source: []activities.Snapshot{s1, s3}, Partials: []activities.Partial{notResumable}, ResumeKeptFull: true},
			want: Plan{Steps: whole, Discard: []activities.Partial{notResumable}},
		},
		{
			name: "a partial of another source's stream under the same name is discarded",
			in:   PlanInput{Job: "j", Want: "ferry_j_3", Source: []activities.Snapshot{s1, s3}, Partials: []activities.Partial{otherStream}, ResumeKeptFull: true},
			want: Plan{Steps: whole, Discard: []activities.Partial{otherStream}},
		},
		{
			name: "a partial incremental cannot start a first replication",
			in:   PlanInput{Job: "j", Want: "ferry_j_3", Source: []activities.Snapshot{s1, s2, s3}, Partials: []activities.Partial{incremental}, ResumeKeptFull: true},
			want: Plan{Steps: whole, Discard: []activities.Partial{incremental}},
		},
		{
			name: "a kept partial whose snapshot was removed on the source is discarded",
			in:   PlanInput{Job: "j", Want: "ferry_j_3", Source: []activities.Snapshot{s2, s3}, Partials: []activities.Partial{kept}, ResumeKeptFull: true},
			want: Plan{Steps: whole, Discard: []activities.Partial{kept}},
		},
		{
			name: "a kept partial of Want itself is resumed as the one full step",
			in:   PlanInput{Job: "j", Want: "ferry_j_1", Source: []activities.Snapshot{s1}, Partials: []activities.Partial{kept}, ResumeKeptFull: true},
			want: Plan{Steps: []Step{{To: "ferry_j_1", ToGUID: "g1", Resume: &kept}}},
		},
		{
			name: "with a common base the catch-up chain resumes the kept incremental as before",
			in: PlanInput{Job: "j", Want: "ferry_j_3", Source: []activities.Snapshot{s1, s2, s3}, Target: []activities.Snapshot{rcv("ferry_j_1", "g1")},
				Partials: []activities.Partial{incremental}, ResumeKeptFull: true},
			want: Plan{Base: "ferry_j_1", Steps: []Step{
				{From: "ferry_j_1", FromGUID: "g1", TargetParent: "ferry_j_1", To: "ferry_j_2", ToGUID: "g2", Resume: &incremental},
				{From: "ferry_j_2", FromGUID: "g2", TargetParent: "ferry_j_2", To: "ferry_j_3", ToGUID: "g3"},
			}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ComputePlan(tc.in)
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("plan\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
