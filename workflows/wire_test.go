package workflows

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/ferry-nas/ferry/activities"
)

// wireTypes is each activity's input and result type, as the workflow sends
// and decodes them.
var wireTypes = map[string][2]func() any{
	"CreateSnapshot":  {func() any { return new(activities.CreateSnapshotInput) }, func() any { return new(activities.CreateSnapshotResult) }},
	"Inventory":       {func() any { return new(activities.InventoryInput) }, func() any { return new(activities.InventoryResult) }},
	"OpenSend":        {func() any { return new(activities.OpenSendInput) }, func() any { return new(activities.OpenSendResult) }},
	"Receive":         {func() any { return new(activities.ReceiveInput) }, func() any { return new(activities.ReceiveResult) }},
	"Verify":          {func() any { return new(activities.VerifyInput) }, func() any { return new(activities.VerifyResult) }},
	"ContentDigest":   {func() any { return new(activities.ContentDigestInput) }, func() any { return new(activities.ContentDigestResult) }},
	"DestroySnapshot": {func() any { return new(activities.DestroySnapshotInput) }, func() any { return new(activities.DestroySnapshotResult) }},
	"DiscardPartials": {func() any { return new(activities.DiscardPartialsInput) }, func() any { return new(activities.DiscardPartialsResult) }},
	"Mark":            {func() any { return new(activities.MarkInput) }, func() any { return new(activities.MarkResult) }},
	"CloseSend":       {func() any { return new(activities.CloseSendInput) }, func() any { return new(activities.CloseSendResult) }},
	"Prune":           {func() any { return new(activities.PruneInput) }, func() any { return new(activities.PruneResult) }},
	"CheckNewDataset": {func() any { return new(activities.CheckNewDatasetInput) }, func() any { return new(activities.CheckNewDatasetResult) }},
	"Materialize":     {func() any { return new(activities.MaterializeInput) }, func() any { return new(activities.MaterializeResult) }},
	"RunHook":         {func() any { return new(activities.RunHookInput) }, func() any { return new(activities.RunHookResult) }},
	"Notify":          {func() any { return new(activities.NotifyInput) }, func() any { return new(activities.NotifyResult) }},
}

// workflowTypes is each workflow's input and result type.
var workflowTypes = map[string][2]func() any{
	ReplicateWorkflowName: {func() any { return new(ReplicateInput) }, func() any { return new(ReplicateResult) }},
	PruneWorkflowName:     {func() any { return new(PruneRequest) }, func() any { return new(PruneOutcome) }},
	RestoreWorkflowName:   {func() any { return new(RestoreRequest) }, func() any { return new(RestoreResult) }},
}

// droppedFields are fields recorded histories carry that the types no longer
// have because nothing read them (decoding ignores them).
var droppedFields = map[string]bool{
	"Resume":     true, // ReceiveInput: the activity decides from the target's partial
	"Expires":    true, // OpenSendResult
	"ParentGUID": true, // OpenSendResult (snapshots keep their lower-case parent_guid)
	"SourceKind": true, // OpenSendResult
}

// TestWireTypesKeepRecordedPayloads decodes every payload of the recorded
// histories into today's types and encodes it again: what comes out must be
// what was recorded, less the dropped dead fields (and plus fields added
// since, at their zero value). A type change that would
// rename, retype or lose a recorded field fails here.
func TestWireTypesKeepRecordedPayloads(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r, err := os.Open(f)
			require.NoError(t, err)
			defer r.Close()
			hist, err := client.HistoryFromJSON(r, client.HistoryJSONOptions{})
			require.NoError(t, err)
			scheduled := map[int64]string{}
			checked := 0
			var wf string
			for _, e := range hist.Events {
				switch e.EventType {
				case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
					wf = e.GetWorkflowExecutionStartedEventAttributes().GetWorkflowType().GetName()
					types, ok := workflowTypes[wf]
					require.True(t, ok, "workflow %s has no wire types in this test", wf)
					checkPayloads(t, wf+" input", e.GetWorkflowExecutionStartedEventAttributes().GetInput(), types[0])
				case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
					checkPayloads(t, wf+" result", e.GetWorkflowExecutionCompletedEventAttributes().GetResult(), workflowTypes[wf][1])
				case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
					a := e.GetActivityTaskScheduledEventAttributes()
					name := a.GetActivityType().GetName()
					types, ok := wireTypes[name]
					require.True(t, ok, "activity %s has no wire types in this test", name)
					scheduled[e.EventId] = name
					checkPayloads(t, name+" input", a.GetInput(), types[0])
					checked++
				case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
					a := e.GetActivityTaskCompletedEventAttributes()
					name := scheduled[a.GetScheduledEventId()]
					checkPayloads(t, name+" result", a.GetResult(), wireTypes[name][1])
					checked++
				}
			}
			require.Positive(t, checked)
		})
	}
}

func checkPayloads(t *testing.T, what string, ps *commonpb.Payloads, newValue func() any) {
	t.Helper()
	for _, p := range ps.GetPayloads() {
		var recorded any
		require.NoError(t, json.Unmarshal(p.GetData(), &recorded), what)
		v := newValue()
		require.NoError(t, json.Unmarshal(p.GetData(), v), what)
		again, err := json.Marshal(v)
		require.NoError(t, err)
		var got any
		require.NoError(t, json.Unmarshal(again, &got))
		want := dropFields(recorded)
		if !reflect.DeepEqual(want, dropAddedZeros(want, got)) {
			t.Errorf("%s: re-encoded payload differs from the recorded one\nrecorded %s\n     now %s", what, p.GetData(), again)
		}
	}
}

// dropFields removes droppedFields from a decoded JSON value, at any depth.
func dropFields(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, x := range v {
			if !droppedFields[k] {
				out[k] = dropFields(x)
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = dropFields(x)
		}
		return out
	}
	return v
}

// dropAddedZeros removes from got the fields the recorded value does not
// have and that hold their zero value: fields added after the recording.
func dropAddedZeros(recorded, got any) any {
	switch g := got.(type) {
	case map[string]any:
		r, _ := recorded.(map[string]any)
		out := map[string]any{}
		for k, x := range g {
			rx, ok := r[k]
			if !ok && isZeroJSON(x) {
				continue
			}
			out[k] = dropAddedZeros(rx, x)
		}
		return out
	case []any:
		r, _ := recorded.([]any)
		out := make([]any, len(g))
		for i, x := range g {
			var rx any
			if i < len(r) {
				rx = r[i]
			}
			out[i] = dropAddedZeros(rx, x)
		}
		return out
	}
	return got
}

func isZeroJSON(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case bool:
		return !v
	case float64:
		return v == 0
	}
	return false
}
