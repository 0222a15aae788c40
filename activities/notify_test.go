package activities

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestNotifyPostsTheDocument: a real HTTP server receives the JSON document.
func TestNotifyPostsTheDocument(t *testing.T) {
	got := make(chan NotifyEvent, 1)
	var contentType, token string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		contentType, token = r.Header.Get("Content-Type"), r.URL.Query().Get("token")
		var ev NotifyEvent
		body, _ := io.ReadAll(r.Body)
		require.NoError(t, json.Unmarshal(body, &ev))
		got <- ev
	}))
	defer srv.Close()
	ev := NotifyEvent{Status: NotifyFailed, Job: "j1", Source: "nas-a:s", Target: "nas-b:r/s", SourceHost: "nas-a", TargetHost: "nas-b",
		ErrorType: ErrNoSpace, Message: "job j1: no space", WorkflowID: "ferry-j1-x", RunID: "r1", Time: time.Date(2026, 11, 30, 21, 0, 0, 0, time.UTC)}
	n := &Notifier{Host: "nas-a"}
	res, err := runActivity(t, n.Notify, NotifyInput{Webhook: srv.URL + "/ferry?token=s3cret", Event: ev})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, ev, <-got)
	require.Equal(t, "application/json", contentType)
	require.Equal(t, "s3cret", token)
}

// TestNotifyErrorsHideTheSecret: a rejection is not retried, a server error
// and an unreachable webhook are; no error shows the URL's token.
func TestNotifyErrorsHideTheSecret(t *testing.T) {
	code := http.StatusForbidden
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad token", code)
	}))
	n := &Notifier{Host: "nas-a"}
	in := NotifyInput{Webhook: srv.URL + "/ferry/s3cret-path?token=s3cret", Event: NotifyEvent{Status: NotifyRecovered, Job: "j1"}}

	_, err := runActivity(t, n.Notify, in)
	requireType(t, err, ErrNotifyRejected)
	requireNonRetryable(t, err)
	require.Contains(t, err.Error(), "answered 403 Forbidden: bad token")
	require.NotContains(t, err.Error(), "s3cret")

	code = http.StatusBadGateway
	_, err = runActivity(t, n.Notify, in)
	requireType(t, err, "NotifyUnavailable")
	require.NotContains(t, err.Error(), "s3cret")

	srv.Close()
	_, err = runActivity(t, n.Notify, in)
	requireType(t, err, "NotifyUnreachable")
	require.Contains(t, err.Error(), "connection refused")
	require.NotContains(t, err.Error(), "s3cret")
}
