package e2e

import (
	"os"
	"path/filepath"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"

	"github.com/ferry-nas/ferry/starter"
)

// recordHistory writes the run's history as JSON to $FERRY_E2E_RECORD/name
// when that variable names a directory (workflows/testdata, for the replay
// tests: `FERRY_E2E_RECORD=$PWD/workflows/testdata go test ./e2e/ -run X`);
// without it, it does nothing.
func (e *env) recordHistory(st starter.Started, name string) {
	e.t.Helper()
	dir := os.Getenv("FERRY_E2E_RECORD")
	if dir == "" {
		return
	}
	hist := &historypb.History{}
	it := tc.GetWorkflowHistory(e.ctx, st.WorkflowID, st.RunID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(e.t, err)
		hist.Events = append(hist.Events, ev)
	}
	data, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(hist)
	require.NoError(e.t, err)
	path := filepath.Join(dir, name)
	require.NoError(e.t, os.WriteFile(path, append(data, '\n'), 0o644))
	e.t.Logf("recorded the history of %s in %s", st.WorkflowID, path)
}
