package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/internal/redact"
	"github.com/ferry-nas/ferry/logging"
)

// ErrNotifyRejected: the webhook answered with a client error (4xx other
// than 408 and 429): sending the same document again will not help.
const ErrNotifyRejected = "NotifyRejected"

// Notification statuses (NotifyEvent.Status).
const (
	NotifyFailed    = "failed"
	NotifyRecovered = "recovered"
)

// NotifyHTTPTimeout bounds one POST to a webhook, connection included.
const NotifyHTTPTimeout = 10 * time.Second

// Notifier sends a job's failure and recovery notifications. Every worker
// registers it on the workflow task queue, which all workers poll, so a
// notification goes out while any worker runs — also when the job's own
// hosts are the ones that are down.
type Notifier struct {
	// Client posts the documents; nil means one with NotifyHTTPTimeout.
	Client *http.Client
	Logger *zap.Logger
	// Host is the worker's host, for the log.
	Host string
}

// NotifyInput is one notification: where to POST and what.
type NotifyInput struct {
	// Webhook is the URL from the config; it may hold a secret, so it is
	// logged and put in errors redacted (internal/redact).
	Webhook string      `json:"webhook"`
	Event   NotifyEvent `json:"event"`
}

// NotifyEvent is the JSON document POSTed to the webhook.
type NotifyEvent struct {
	// Status is NotifyFailed or NotifyRecovered.
	Status     string `json:"status"`
	Job        string `json:"job"`
	Source     string `json:"source"`
	Target     string `json:"target"`
	SourceHost string `json:"source_host"`
	TargetHost string `json:"target_host"`
	// ErrorType and Message are the run's failure (failed), or the
	// previous run's that this one recovered from (recovered).
	ErrorType string `json:"error_type,omitempty"`
	Message   string `json:"message,omitempty"`
	// Repeat: the run failed and so did the job's previous run.
	Repeat     bool   `json:"repeat,omitempty"`
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
	// UILink is the run in the Temporal web UI (when notify.ui_url is set).
	UILink string    `json:"ui_link,omitempty"`
	Time   time.Time `json:"time"`
}

// NotifyResult is the webhook's answer.
type NotifyResult struct {
	StatusCode int `json:"status_code"`
}

// Notify POSTs the event as JSON to the webhook. A 2xx answer is success;
// 4xx (but 408 and 429) fails as ErrNotifyRejected, not retried; anything
// else (no connection, 5xx) is retried by the workflow's policy.
func (n *Notifier) Notify(ctx context.Context, in NotifyInput) (NotifyResult, error) {
	log := n.Logger
	if log == nil {
		log = zap.NewNop()
	}
	hook := redact.URL(in.Webhook)
	log = log.With(logging.Host(n.Host), logging.Job(in.Event.Job), logging.Step("notify"),
		zap.String("status", in.Event.Status), zap.String("webhook", hook))
	if activity.IsActivity(ctx) {
		info := activity.GetInfo(ctx)
		log = log.With(zap.String("workflow_id", info.WorkflowExecution.ID), zap.Int32("attempt", info.Attempt))
	}
	body, err := json.Marshal(in.Event)
	if err != nil {
		return NotifyResult{}, temporal.NewNonRetryableApplicationError("encode notification: "+err.Error(), ErrInvalid, nil)
	}
	client := n.Client
	if client == nil {
		client = &http.Client{Timeout: NotifyHTTPTimeout}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.Webhook, bytes.NewReader(body))
	if err != nil {
		return NotifyResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("notify %s: webhook %s is not usable: %v", in.Event.Job, hook, unwrapURLError(err)), ErrInvalid, nil)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ferry")
	resp, err := client.Do(req)
	if err != nil {
		// url.Error's text holds the whole URL: keep only its cause.
		msg := fmt.Sprintf("notify %s: POST %s: %v", in.Event.Job, hook, unwrapURLError(err))
		log.Warn("notification not delivered; will retry", zap.String("error", msg))
		return NotifyResult{}, temporal.NewApplicationError(msg, "NotifyUnreachable")
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	res := NotifyResult{StatusCode: resp.StatusCode}
	if resp.StatusCode/100 == 2 {
		log.Info("notification delivered", zap.Int("http_status", resp.StatusCode))
		return res, nil
	}
	msg := fmt.Sprintf("notify %s: POST %s answered %s", in.Event.Job, hook, resp.Status)
	if a := strings.TrimSpace(string(answer)); a != "" {
		msg += ": " + a
	}
	if resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
		log.Error("notification rejected by the webhook", zap.Int("http_status", resp.StatusCode), zap.String("error", msg))
		return res, temporal.NewNonRetryableApplicationError(msg, ErrNotifyRejected, nil)
	}
	log.Warn("notification not accepted; will retry", zap.Int("http_status", resp.StatusCode), zap.String("error", msg))
	return res, temporal.NewApplicationError(msg, "NotifyUnavailable")
}

// unwrapURLError drops the *url.Error wrapper, whose text repeats the URL
// with its secret.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
