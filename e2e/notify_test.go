package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/workflows"
)

// webhook is a real HTTP server that collects the notifications POSTed
// to it.
type webhook struct {
	srv    *httptest.Server
	events chan activities.NotifyEvent
	posts  atomic.Int64
}

func newWebhook(t *testing.T) *webhook {
	w := &webhook{events: make(chan activities.NotifyEvent, 16)}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.posts.Add(1)
		var ev activities.NotifyEvent
		if r.Method != http.MethodPost || r.URL.Query().Get("token") != "s3cret" || json.NewDecoder(r.Body).Decode(&ev) != nil {
			http.Error(rw, "bad request", http.StatusBadRequest)
			return
		}
		w.events <- ev
	}))
	t.Cleanup(w.srv.Close)
	return w
}

// next is the next notification; the test's deadline bounds the wait.
func (w *webhook) next(e *env) activities.NotifyEvent {
	e.t.Helper()
	select {
	case ev := <-w.events:
		return ev
	case <-e.ctx.Done():
		e.t.Fatalf("no notification reached the webhook: %v", e.ctx.Err())
		return activities.NotifyEvent{}
	}
}

// TestNotifyOnFailureAndRecovery (issue 10): a run that fails for good — its
// pre_snapshot hook, a real script, refuses — POSTs a "failed" document to
// a real HTTP server; once the hook agrees again, the next run succeeds and
// POSTs "recovered". Both go through the real workers and Temporal.
func TestNotifyOnFailureAndRecovery(t *testing.T) {
	hookDir := t.TempDir()
	refuse := filepath.Join(hookDir, "refuse")
	require.NoError(t, os.WriteFile(refuse, nil, 0o644))
	script := filepath.Join(hookDir, "freeze.sh")
	require.NoError(t, os.WriteFile(script, []byte(fmt.Sprintf(`#!/bin/sh
if [ -e %q ]; then echo "database is locked by another backup"; echo "freeze refused" >&2; exit 7; fi
echo frozen
`, refuse)), 0o755))
	hook := newWebhook(t)
	e := newEnv(t, envOptions{ShareSize: 1 << 20,
		SourceHooks: fmt.Sprintf("{freeze: {command: [%q], timeout: 20s}}", script),
		JobExtra: fmt.Sprintf("    hooks: {pre_snapshot: freeze}\n    notify: {webhook: %q, ui_url: \"http://ui.test:8233\"}",
			hook.srv.URL+"/ferry?token=s3cret")})
	e.apply()

	first := e.start()
	_, err := e.result(first)
	var ae *temporal.ApplicationError
	require.ErrorAs(t, err, &ae, "the run whose pre hook refused did not fail")
	require.Equal(t, activities.ErrHookFailed, ae.Type())
	failed := hook.next(e)
	require.Equal(t, activities.NotifyFailed, failed.Status)
	require.Equal(t, e.job, failed.Job)
	require.Equal(t, source+":"+srcDataset, failed.Source)
	require.Equal(t, target+":"+tgtDataset, failed.Target)
	require.Equal(t, source, failed.SourceHost)
	require.Equal(t, target, failed.TargetHost)
	require.Equal(t, activities.ErrHookFailed, failed.ErrorType)
	require.Contains(t, failed.Message, "database is locked by another backup\nfreeze refused")
	require.Equal(t, first.WorkflowID, failed.WorkflowID)
	require.Equal(t, first.RunID, failed.RunID)
	require.Equal(t, "http://ui.test:8233/namespaces/"+tsrv.Namespace()+"/workflows/"+first.WorkflowID+"/"+first.RunID+"/history", failed.UILink)
	require.False(t, failed.Repeat)
	require.False(t, failed.Time.IsZero())
	e.recordHistory(first, "notify-failed-pre-hook-v6.json")

	require.NoError(t, os.Remove(refuse))
	second := e.start()
	res := e.mustSucceed(second)
	recovered := hook.next(e)
	require.Equal(t, activities.NotifyRecovered, recovered.Status)
	require.Equal(t, second.WorkflowID, recovered.WorkflowID)
	require.Equal(t, second.RunID, recovered.RunID)
	require.Equal(t, activities.ErrHookFailed, recovered.ErrorType, "the recovery names what the job recovered from")
	require.Equal(t, &workflows.NotifyReport{Status: activities.NotifyRecovered}, res.Notify)
	e.recordHistory(second, "notify-recovered-v6.json")
	// The recovery was sent before the run ended: nothing else came.
	require.Equal(t, int64(2), hook.posts.Load())
	for _, l := range e.logs {
		data, err := os.ReadFile(l)
		require.NoError(t, err)
		require.NotContains(t, string(data), "s3cret", "a worker logged the webhook's secret")
	}
}
