package server_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ferry-nas/ferry/server"
	"github.com/ferry-nas/ferry/visibility"
)

// testLogger writes warnings and errors to stderr. (Not zaptest: the server's
// goroutines may still log a line after the test has returned.)
func testLogger() *zap.Logger {
	enc := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(os.Stderr), zapcore.WarnLevel))
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// start starts a server on free ports and stops it when the test ends.
func start(t *testing.T, opts server.Options) *server.Server {
	t.Helper()
	if opts.Address == "" {
		opts.Address = "127.0.0.1:0"
	}
	opts.Logger = testLogger()
	began := time.Now()
	s, err := server.Start(ctxFor(t), opts)
	require.NoError(t, err)
	t.Logf("server up in %v at %s, UI %q", time.Since(began).Round(time.Millisecond), s.FrontendAddress(), s.UIURL())
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

func dial(t *testing.T, s *server.Server) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: s.FrontendAddress(), Namespace: s.Namespace(), Logger: nopLogger{}})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

type nopLogger struct{}

func (nopLogger) Debug(string, ...any) {}
func (nopLogger) Info(string, ...any)  {}
func (nopLogger) Warn(string, ...any)  {}
func (nopLogger) Error(string, ...any) {}

func requireAttributes(t *testing.T, ctx context.Context, c client.Client, ns string) {
	t.Helper()
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
	require.NoError(t, err)
	for _, name := range []string{visibility.Job, visibility.Source, visibility.Target, visibility.Phase} {
		require.Equal(t, enumspb.INDEXED_VALUE_TYPE_KEYWORD, resp.GetCustomAttributes()[name], name)
	}
}

func requireRunning(t *testing.T, ctx context.Context, c client.Client, id, runID string) {
	t.Helper()
	desc, err := c.DescribeWorkflowExecution(ctx, id, runID)
	require.NoError(t, err)
	require.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, desc.GetWorkflowExecutionInfo().GetStatus())
}

// requireListed waits until the visibility store finds the run by FerryJob.
func requireListed(t *testing.T, ctx context.Context, c client.Client, ns, job, id string) {
	t.Helper()
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: ns,
			Query:     visibility.Job + " = '" + job + "'",
		})
		if assert.NoError(ct, err) && assert.Len(ct, resp.GetExecutions(), 1) {
			assert.Equal(ct, id, resp.GetExecutions()[0].GetExecution().GetWorkflowId())
		}
	}, 20*time.Second, 200*time.Millisecond)
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

// TestFileServerSurvivesRestart is the main path of `ferry server`: a file
// database, namespace, search attributes, UI; then a restart on the same file.
func TestFileServerSurvivesRestart(t *testing.T) {
	ctx := ctxFor(t)
	db := filepath.Join(t.TempDir(), "state", "temporal.db") // directory created by Start
	const ns = "ferry-test"
	opts := server.Options{DBPath: db, UIAddress: "127.0.0.1:0", Namespace: ns}

	s1 := start(t, opts)
	require.Equal(t, db, s1.DBPath())
	require.FileExists(t, db)
	c1 := dial(t, s1)

	desc, err := c1.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns})
	require.NoError(t, err)
	require.Equal(t, 7*24*time.Hour, desc.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration())
	requireAttributes(t, ctx, c1, ns)

	// No worker polls this queue: the run stays Running.
	const id = "ferry-share01-restart-test"
	run, err := c1.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                    id,
		TaskQueue:             "ferry-workflows-nobody",
		TypedSearchAttributes: temporal.NewSearchAttributes(visibility.FerryJob.ValueSet("share01")),
	}, "ferry.Replicate")
	require.NoError(t, err)
	requireRunning(t, ctx, c1, id, run.GetRunID())
	requireListed(t, ctx, c1, ns, "share01", id)

	// The UI serves its page and reaches the frontend.
	resp, body := get(t, s1.UIURL()+"/")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "text/html")
	require.Contains(t, body, `<div id="svelte">`)
	require.Contains(t, body, "/_app/immutable/")
	resp, body = get(t, s1.UIURL()+"/api/v1/namespaces/"+ns)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, body, `"name": "`+ns+`"`)

	// While s1 runs: its ports and its database are taken.
	_, err = server.Start(ctx, server.Options{DBPath: filepath.Join(t.TempDir(), "t.db"), Address: s1.FrontendAddress(), UIAddress: "off", Logger: testLogger()})
	require.ErrorContains(t, err, s1.FrontendAddress()+" is already in use")
	require.ErrorContains(t, err, "--address")
	uiAddr := strings.TrimPrefix(s1.UIURL(), "http://")
	_, err = server.Start(ctx, server.Options{DBPath: filepath.Join(t.TempDir(), "t.db"), Address: "127.0.0.1:0", UIAddress: uiAddr, Logger: testLogger()})
	require.ErrorContains(t, err, "UI address "+uiAddr+" is already in use")
	require.ErrorContains(t, err, "--ui-address")
	_, err = server.Start(ctx, server.Options{DBPath: db, Address: "127.0.0.1:0", UIAddress: "off", Logger: testLogger()})
	require.ErrorContains(t, err, db+" is in use by another ferry server")

	c1.Close()
	require.NoError(t, s1.Stop())
	require.NoError(t, s1.Stop(), "Stop twice is fine")

	// Same file, new ports: the run, the namespace and the attributes are all
	// still there, and registering the attributes again did not fail.
	s2 := start(t, opts)
	c2 := dial(t, s2)
	requireRunning(t, ctx, c2, id, run.GetRunID())
	requireAttributes(t, ctx, c2, ns)
	requireListed(t, ctx, c2, ns, "share01", id)
}

func TestEphemeralLeavesNoFile(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir) // the default DB path is relative: make sure nothing lands here
	ctx := ctxFor(t)

	s := start(t, server.Options{Ephemeral: true})
	require.Empty(t, s.DBPath())
	require.Empty(t, s.UIURL(), "UI off unless asked")
	require.Equal(t, server.DefaultNamespace, s.Namespace())
	c := dial(t, s)
	requireAttributes(t, ctx, c, server.DefaultNamespace)
	_, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "ephemeral", TaskQueue: "nobody"}, "ferry.Replicate")
	require.NoError(t, err)
	c.Close()
	require.NoError(t, s.Stop())

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "ephemeral mode wrote files")
}

// TestStartErrors covers the errors found before anything starts.
func TestStartErrors(t *testing.T) {
	ctx := ctxFor(t)
	dir := t.TempDir()

	notDB := filepath.Join(dir, "notes.db")
	require.NoError(t, os.WriteFile(notDB, []byte(strings.Repeat("not a database\n", 400)), 0o600))

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = busy.Close() })

	for _, tc := range []struct {
		name string
		opts server.Options
		want []string
	}{
		{"db and ephemeral", server.Options{DBPath: "x.db", Ephemeral: true}, []string{"--db or --ephemeral"}},
		{"host name", server.Options{Ephemeral: true, Address: "localhost:7233"}, []string{`"localhost:7233"`, "IP address", "--address"}},
		{"no port", server.Options{Ephemeral: true, Address: "127.0.0.1"}, []string{`"127.0.0.1"`, "--address"}},
		{"busy frontend", server.Options{Ephemeral: true, Address: busy.Addr().String()}, []string{busy.Addr().String() + " is already in use", "--address"}},
		{"busy UI", server.Options{Ephemeral: true, Address: "127.0.0.1:0", UIAddress: busy.Addr().String()}, []string{busy.Addr().String() + " is already in use", "--ui-address"}},
		{"not a database", server.Options{DBPath: notDB, Address: "127.0.0.1:0"}, []string{notDB, "not a SQLite database"}},
		{"database is a directory", server.Options{DBPath: dir, Address: "127.0.0.1:0"}, []string{dir + " is a directory"}},
		{"bad namespace", server.Options{Ephemeral: true, Namespace: "no spaces"}, []string{`"no spaces"`, "--namespace"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Logger = testLogger()
			s, err := server.Start(ctx, tc.opts)
			if err == nil {
				_ = s.Stop()
			}
			require.Error(t, err)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}
