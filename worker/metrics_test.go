package worker

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/config"
)

func TestMetricsAddressPrecedence(t *testing.T) {
	h := config.Host{Name: "nas-a", MetricsAddress: "127.0.0.1:9400"}
	require.Equal(t, "127.0.0.1:9401", MetricsAddress(h, "127.0.0.1:9401"), "the flag wins")
	require.Equal(t, "127.0.0.1:9400", MetricsAddress(h, ""), "then the config")
	require.Empty(t, MetricsAddress(config.Host{Name: "nas-a"}, ""), "off by default")
}

// TestNewRefusesMetricsAddress: a metrics address that cannot be listened
// on stops the worker before it starts, naming the host and where the
// address came from; nothing is left listening.
func TestNewRefusesMetricsAddress(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	data := freePort(t)
	cfg := testConfig(t, data, "")
	h := cfg.Hosts["nas-a"]
	h.MetricsAddress = busy.Addr().String()
	cfg.Hosts["nas-a"] = h

	_, err = New(context.Background(), Options{Config: cfg, Host: "nas-a"})
	require.ErrorContains(t, err, "host nas-a: metrics server cannot listen on "+busy.Addr().String())
	require.ErrorContains(t, err, "hosts.nas-a.metrics_address")

	_, err = New(context.Background(), Options{Config: cfg, Host: "nas-a", MetricsAddress: "localhost"})
	require.ErrorContains(t, err, `metrics address "localhost" from --metrics-address is not host:port`)

	// The data address was released both times: a good address works.
	w, err := New(context.Background(), Options{Config: cfg, Host: "nas-a", MetricsAddress: "127.0.0.1:0"})
	require.NoError(t, err)
	w.Close()
}

// TestMetricsServed: the metrics server answers /metrics
// with ferry's metrics and 404 elsewhere.
func TestMetricsServed(t *testing.T) {
	cfg := testConfig(t, freePort(t), "")
	w, err := New(context.Background(), Options{Config: cfg, Host: "nas-a", MetricsAddress: "127.0.0.1:0"})
	require.NoError(t, err)
	defer w.Close()
	w.metrics.Step("share", "Receive", time.Second, "")
	stop := serveMetrics(w.metricsLn, w.metrics, w.log)
	defer stop()
	resp, err := http.Get(metricsURL(w.metricsLn))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, err = http.Get("http://" + w.metricsLn.Addr().String() + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestJobInterval(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	require.Equal(t, 15*time.Minute, jobInterval(config.Job{Every: 15 * time.Minute}, now))
	require.Equal(t, 24*time.Hour, jobInterval(config.Job{Cron: "0 3 * * *"}, now))
	require.Equal(t, time.Hour, jobInterval(config.Job{Cron: "@hourly"}, now))
	require.Zero(t, jobInterval(config.Job{}, now), "manual")
}

func TestStepLabels(t *testing.T) {
	require.Equal(t, "share", jobOf([]any{activities.ReceiveInput{Job: "share"}}))
	require.Equal(t, "share", jobOf([]any{&activities.MarkInput{Job: "share"}}))
	require.Empty(t, jobOf([]any{activities.ContentDigestInput{}}))
	require.Empty(t, jobOf(nil))

	require.Empty(t, errorType(nil))
	require.Equal(t, "NoSpace", errorType(temporal.NewNonRetryableApplicationError("full", "NoSpace", nil)))
	require.Equal(t, "Canceled", errorType(context.Canceled))
	require.Equal(t, "Unknown", errorType(errors.New("boom")))
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}
