package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/internal/logcheck"
	"github.com/ferry-nas/ferry/logging"
	"github.com/ferry-nas/ferry/server"
)

// syncBuffer is the log output shared by the logger and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// line returns the first JSON log line whose msg is msg, or nil.
func (b *syncBuffer) line(t *testing.T, msg string) map[string]any {
	for l := range strings.Lines(string(b.Bytes())) {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == msg {
			return m
		}
	}
	return nil
}

// startTemporal starts an in-memory Temporal server for the test and dials
// it; the SDK logs through log.
func startTemporal(t *testing.T, log *zap.Logger) client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := server.Start(ctx, server.Options{Ephemeral: true, Address: "127.0.0.1:0", UIAddress: "off"})
	require.NoError(t, err)
	t.Cleanup(func() { srv.Stop() })
	c, err := client.DialContext(ctx, client.Options{HostPort: srv.FrontendAddress(), Namespace: srv.Namespace(), Logger: logging.Temporal(log)})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// TestServeOnTemporal runs the real worker (New, Serve) on an in-memory
// Temporal server with the JSON logger the `ferry worker --log-json`
// command builds, layered the same way:
//   - "worker running" names both the listen address and the advertised
//     data_address;
//   - a cancelled context stops the worker cleanly (nil);
//   - a data server that stops while the worker runs makes Serve stop the
//     worker and return an error saying so (the command exits non-zero);
//   - every line written is one JSON object with each key once.
func TestServeOnTemporal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Temporal server")
	}
	var out syncBuffer
	log, err := logging.New(logging.Options{JSON: true, Output: &out})
	require.NoError(t, err)
	c := startTemporal(t, log)            // the SDK's own lines are checked too
	log = log.With(logging.Host("nas-a")) // as a caller that already names the host
	const advertised = "nas-a.example:7400"
	cfg := testConfig(t, advertised, "")

	start := func() (*Worker, net.Listener, chan error) {
		var ln net.Listener
		w, err := New(context.Background(), Options{
			Config: cfg, Host: "nas-a", Listen: "127.0.0.1:0", Logger: log, StopTimeout: time.Second,
			listen: func(network, addr string) (net.Listener, error) {
				l, err := net.Listen(network, addr)
				ln = l
				return l, err
			},
		})
		require.NoError(t, err)
		return w, ln, make(chan error, 1)
	}
	// waitRunning waits for the n-th "worker running" line and returns it.
	waitRunning := func(n int) map[string]any {
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			var seen int
			for l := range strings.Lines(string(out.Bytes())) {
				var m map[string]any
				if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "worker running" {
					if seen++; seen == n {
						return m
					}
				}
			}
		}
		t.Fatalf("no \"worker running\" line number %d:\n%s", n, out.Bytes())
		return nil
	}

	// A stop asked for: nil.
	w, ln, done := start()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- w.Serve(ctx, c) }()
	running := waitRunning(1)
	require.Equal(t, ln.Addr().String(), running["listen"], "listen is where the data server listens")
	require.Equal(t, advertised, running["data_address"], "data_address is what targets are told to dial")
	require.Equal(t, "nas-a", running["host"])
	cancel()
	require.NoError(t, <-done)

	// The data server's listener closed under it: the worker stops and says so.
	w, ln, done = start()
	go func() { done <- w.Serve(context.Background(), c) }()
	waitRunning(2)
	require.NoError(t, ln.Close())
	select {
	case err := <-done:
		require.Error(t, err)
		require.ErrorContains(t, err, "host nas-a: the data server on "+ln.Addr().String()+" stopped while the worker was running")
		require.ErrorContains(t, err, "the worker exits")
	case <-time.After(time.Minute):
		t.Fatal("Serve did not return after its data server stopped")
	}
	require.NotNil(t, out.line(t, "data server stopped: the worker exits"))
	require.NotNil(t, out.line(t, "worker stopped"))

	require.NoError(t, logcheck.Lines(out.Bytes()), "the worker's JSON log:\n%s", out.Bytes())
}
