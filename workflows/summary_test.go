package workflows

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ferry-nas/ferry/activities"
)

// The web UI shows activity summaries in the timeline and event history by
// default: each names the host, and during a step which step.
func TestActivitySummariesNameHostAndStep(t *testing.T) {
	r := &replication{in: ReplicateInput{Source: Endpoint{"nas-a", "share01"}, Target: Endpoint{"nas-b", "replicas/share01"}}.withDefaults()}
	r.status.Phase = PhaseGreet
	require.Equal(t, "nas-a: inventory source", r.summary("nas-a", "inventory source"))

	r.status.Phase, r.status.Step, r.status.Steps = PhaseStream, 2, 3
	require.Equal(t, "nas-a: open send s2 (step 2/3)", r.summary("nas-a", "open send s2"))
	require.Equal(t, "nas-b: receive s2 from nas-a (step 2/3, incremental)", r.streamOptions(Step{From: "s1", To: "s2"}, true).Summary)
	require.Equal(t, "nas-b: receive s1 from nas-a (step 2/3, full, resuming a kept partial)",
		r.streamOptions(Step{To: "s1", Resume: &activities.Partial{Name: "s1"}}, true).Summary)

	r.status.Phase = PhaseMark
	require.Equal(t, "nas-b: mark received", r.summary("nas-b", "mark received"), "after the steps no step number")
}
