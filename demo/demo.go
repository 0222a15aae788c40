// Package demo runs ferry end to end on one machine with nothing installed
// and no root: an ephemeral Temporal server with its web UI, two NAS workers
// on the dir backend, a sample share, a full and an incremental replication,
// and a check that the replica's content equals the source's.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"go.temporal.io/sdk/client"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ferry-nas/ferry/certs"
	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/logging"
	"github.com/ferry-nas/ferry/server"
	"github.com/ferry-nas/ferry/starter"
	"github.com/ferry-nas/ferry/storage/dir"
	"github.com/ferry-nas/ferry/worker"
	"github.com/ferry-nas/ferry/workflows"
)

// Options configure a demo run.
type Options struct {
	// Dir holds everything; empty means a new temporary directory, removed
	// at the end unless Keep is set.
	Dir string
	// Keep leaves the server, workers and files up until ctx is done.
	Keep bool
	// ShareSize is the sample share's size in bytes (default 200 MiB).
	ShareSize int64
	// Address and UIAddress are the Temporal frontend and web UI addresses;
	// when the defaults (127.0.0.1:7233, 127.0.0.1:8233) are busy a free
	// port is used.
	Address, UIAddress string
	// Out receives the demo's narration.
	Out io.Writer
}

// Job, source and target of the demo.
const (
	Job    = "share01"
	Source = "nas-a:share01"
	Target = "nas-b:replicas/share01"
)

// Result is what the demo did and measured.
type Result struct {
	Dir   string
	UIURL string
	// Full and Incr are the wall times of the two runs, trigger to result.
	Full, Incr time.Duration
	// FullBytes and IncrBytes are the bytes each run moved over the wire.
	FullBytes, IncrBytes int64
	// Snapshot is the incremental run's snapshot, the one digested.
	Snapshot                   string
	SourceDigest, TargetDigest string
	ShareSize                  int64
	Changes                    []string
}

// Run runs the demo. It returns an error unless the replica's content
// digest equals the source's after both replications.
func Run(ctx context.Context, opts Options) (res Result, err error) {
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	if opts.ShareSize <= 0 {
		opts.ShareSize = 200 << 20
	}
	dirPath := opts.Dir
	if dirPath == "" {
		if dirPath, err = os.MkdirTemp("", "ferry-demo-"); err != nil {
			return res, err
		}
		if !opts.Keep {
			defer os.RemoveAll(dirPath)
		}
	} else if err := os.MkdirAll(dirPath, 0o755); err != nil {
		return res, err
	}
	res.Dir, res.ShareSize = dirPath, opts.ShareSize
	logDir := filepath.Join(dirPath, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return res, err
	}
	logger, closeLog, err := fileLogger(filepath.Join(logDir, "ferry.log"))
	if err != nil {
		return res, err
	}
	defer closeLog()

	fmt.Fprintf(out, "ferry demo: everything lives in %s\n", dirPath)
	srv, err := server.Start(ctx, server.Options{
		Ephemeral: true,
		Address:   freeOr(orDefault(opts.Address, server.DefaultAddress)),
		UIAddress: freeOr(orDefault(opts.UIAddress, server.DefaultUIAddress)),
		Logger:    logger.Named("server"),
	})
	if err != nil {
		return res, fmt.Errorf("start the embedded Temporal server: %w", err)
	}
	defer srv.Stop()
	res.UIURL = srv.UIURL()
	fmt.Fprintf(out, "  Temporal server  %s (namespace %s, in memory)\n  web UI           %s\n", srv.FrontendAddress(), srv.Namespace(), srv.UIURL())

	cfgPath, err := writeSetup(dirPath, srv.FrontendAddress(), srv.Namespace())
	if err != nil {
		return res, err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return res, err
	}
	share := filepath.Join(cfg.Hosts["nas-a"].Root, "share01")
	if err := os.MkdirAll(share, 0o755); err != nil {
		return res, err
	}
	if err := WriteShare(share, opts.ShareSize, uint64(time.Now().UnixNano())); err != nil {
		return res, fmt.Errorf("write the sample share: %w", err)
	}
	fmt.Fprintf(out, "  sample share     %s, %s of photos, documents and source files\n", Source, starter.FormatBytes(opts.ShareSize))

	c, err := client.DialContext(ctx, client.Options{
		HostPort: srv.FrontendAddress(), Namespace: srv.Namespace(),
		Logger: logging.Temporal(logger.Named("sdk").WithOptions(zap.IncreaseLevel(zapcore.WarnLevel))),
	})
	if err != nil {
		return res, err
	}
	defer c.Close()

	workerCtx, stopWorkers := context.WithCancel(ctx)
	workersDone := make(chan error, 2)
	for _, h := range []string{"nas-a", "nas-b"} {
		go func() {
			workersDone <- worker.Run(workerCtx, c, worker.Options{Config: cfg, Host: h, Logger: logger.Named(h), StopTimeout: 2 * time.Second})
		}()
	}
	defer func() {
		stopWorkers()
		for range 2 {
			if werr := <-workersDone; werr != nil && err == nil {
				err = fmt.Errorf("worker: %w", werr)
			}
		}
	}()
	fmt.Fprintf(out, "  workers          nas-a (source) and nas-b (target), dir backend; logs in %s\n", logDir)

	if _, err := starter.Apply(ctx, c, cfg, starter.ApplyOptions{}); err != nil {
		return res, fmt.Errorf("apply the demo job's schedule: %w", err)
	}

	fmt.Fprintf(out, "\n[1/2] full replication %s -> %s\n", Source, Target)
	full, took, err := replicate(ctx, c, out)
	if err != nil {
		return res, err
	}
	res.Full, res.FullBytes = took, full.Bytes

	changes, err := ChangeShare(share, uint64(time.Now().UnixNano()))
	if err != nil {
		return res, fmt.Errorf("change the sample share: %w", err)
	}
	res.Changes = changes
	fmt.Fprintf(out, "\nchanges on %s:\n", Source)
	for _, ch := range changes {
		fmt.Fprintf(out, "  - %s\n", ch)
	}

	fmt.Fprintf(out, "\n[2/2] incremental replication %s -> %s\n", Source, Target)
	incr, took, err := replicate(ctx, c, out)
	if err != nil {
		return res, err
	}
	res.Incr, res.IncrBytes, res.Snapshot = took, incr.Bytes, incr.Snapshot

	if res.SourceDigest, res.TargetDigest, err = digests(cfg, incr.Snapshot); err != nil {
		return res, err
	}
	fmt.Fprintf(out, "\ncontent digest of %s@%s\n  source %s\n  target %s\n", Job, incr.Snapshot, res.SourceDigest, res.TargetDigest)
	if res.SourceDigest != res.TargetDigest {
		return res, errors.New("the replica's content digest differs from the source's")
	}
	fmt.Fprintf(out, "source and target are identical.\n\nbrowse the runs: %s/namespaces/%s/workflows\n", srv.UIURL(), srv.Namespace())

	if opts.Keep {
		fmt.Fprintf(out, "--keep: server, UI and workers stay up; config %s. Press Ctrl-C to stop.\n", cfgPath)
		<-ctx.Done()
	}
	return res, nil
}

// replicate runs the demo job once and follows it to the end.
func replicate(ctx context.Context, c client.Client, out io.Writer) (workflows.ReplicateResult, time.Duration, error) {
	start := time.Now()
	run, err := starter.Run(ctx, c, Job)
	if err != nil {
		return workflows.ReplicateResult{}, 0, err
	}
	r, err := starter.Follow(ctx, c, run.WorkflowID, run.RunID, func(p starter.Progress) {
		fmt.Fprintf(out, "  %s\n", p)
	})
	if err != nil {
		return r, 0, err
	}
	took := time.Since(start)
	fmt.Fprintf(out, "  done: %s, %d step(s), %s moved in %s\n", r.Snapshot, len(r.Plan.Steps), starter.FormatBytes(r.Bytes), took.Round(10*time.Millisecond))
	return r, took, nil
}

// digests computes the snapshot's content digest on both hosts' storage.
func digests(cfg *config.Config, snapshot string) (string, string, error) {
	src, err := dir.New(cfg.Hosts["nas-a"].Root)
	if err != nil {
		return "", "", err
	}
	tgt, err := dir.New(cfg.Hosts["nas-b"].Root)
	if err != nil {
		return "", "", err
	}
	s, err := src.ContentDigest(context.Background(), "share01", snapshot)
	if err != nil {
		return "", "", fmt.Errorf("source content digest: %w", err)
	}
	t, err := tgt.ContentDigest(context.Background(), "replicas/share01", snapshot)
	if err != nil {
		return "", "", fmt.Errorf("target content digest: %w", err)
	}
	return s, t, nil
}

// writeSetup makes the CA, the two host certificates and the config file.
func writeSetup(root, frontend, namespace string) (string, error) {
	certDir := filepath.Join(root, "certs")
	if _, _, err := certs.Init(certDir, false); err != nil {
		return "", err
	}
	ports := make([]string, 2)
	for i, h := range []string{"nas-a", "nas-b"} {
		if _, _, err := certs.Issue(certDir, h, certs.IssueOptions{}); err != nil {
			return "", err
		}
		if err := os.MkdirAll(filepath.Join(root, h), 0o755); err != nil {
			return "", err
		}
		ports[i] = freeOr("127.0.0.1:0")
	}
	cfg := fmt.Sprintf(`# written by ferry demo
temporal: {address: %q, namespace: %q}
tls: {ca: certs/ca.pem}
hosts:
  nas-a: {data_address: %q, backend: dir, root: %q}
  nas-b: {data_address: %q, backend: dir, root: %q}
jobs:
  %s:
    source: %s
    target: %s
    stream: {compress: zstd}
`, frontend, namespace, ports[0], filepath.Join(root, "nas-a"), ports[1], filepath.Join(root, "nas-b"), Job, Source, Target)
	p := filepath.Join(root, "ferry.yaml")
	return p, os.WriteFile(p, []byte(cfg), 0o644)
}

// freeOr returns addr when it can be listened on now, else a free port on
// its IP; with port 0 it always picks a concrete free port.
func freeOr(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ln, err := net.Listen("tcp", addr); err == nil {
		got := ln.Addr().String()
		ln.Close()
		return got
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return addr
	}
	defer ln.Close()
	return ln.Addr().String()
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// fileLogger logs every component of the demo into one JSON-lines file.
func fileLogger(path string) (*zap.Logger, func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(f), zapcore.InfoLevel)
	l := zap.New(core)
	return l, func() { l.Sync(); f.Close() }, nil
}
