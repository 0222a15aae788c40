// Package worker runs one NAS host's part of ferry: the Temporal workers for
// the shared workflow queue and the host's own activity queue, and the data
// server that serves send streams to the targets the workflows authorise.
package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/certs"
	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/logging"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/btrfs"
	"github.com/ferry-nas/ferry/storage/dir"
	"github.com/ferry-nas/ferry/transfer"
	"github.com/ferry-nas/ferry/workflows"
)

// Options configure one host's worker.
type Options struct {
	Config *config.Config
	// Host is this worker's host name in the config.
	Host string
	// Cert and Key override the host's data-plane certificate files.
	Cert, Key string
	// Listen overrides the data server's listen address (default: the
	// host's data_address).
	Listen string
	Logger *zap.Logger
	// StopTimeout is how long in-flight activities get to finish on
	// shutdown before they are cancelled (and later resumed). Default 10 s.
	StopTimeout time.Duration
}

// DefaultStopTimeout is Options.StopTimeout's default.
const DefaultStopTimeout = 10 * time.Second

// progressEvery is how often a running receive's heartbeat reaches the server.
const progressEvery = 2 * time.Second

// Run serves until ctx is done, then stops gracefully: streams in flight are
// cancelled at a point they can resume from.
func Run(ctx context.Context, c client.Client, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	host, err := opts.Config.Host(opts.Host)
	if err != nil {
		return err
	}
	log = log.With(logging.Host(host.Name))
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = DefaultStopTimeout
	}

	backend, err := OpenBackend(host, log)
	if err != nil {
		return err
	}
	if err := backend.Check(ctx); err != nil {
		return fmt.Errorf("host %s: %s backend at %s is not usable: %w", host.Name, host.Backend, host.Root, err)
	}

	files := CertFiles(opts.Config, host, opts.Cert, opts.Key)
	serverTLS, err := certs.ServerConfig(files)
	if err != nil {
		return fmt.Errorf("host %s: data server certificate: %w", host.Name, err)
	}
	clientTLS, err := certs.ClientConfig(files, "")
	if err != nil {
		return fmt.Errorf("host %s: data client certificate: %w", host.Name, err)
	}
	data, err := transfer.NewServer(transfer.ServerConfig{TLS: serverTLS, Logger: log})
	if err != nil {
		return err
	}
	listen := opts.Listen
	if listen == "" {
		listen = host.DataAddress
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("host %s: data server cannot listen on %s (%w); free the port or change hosts.%s.data_address", host.Name, listen, err, host.Name)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- data.Serve(ln) }()
	fetcher, err := transfer.NewClient(transfer.ClientConfig{TLS: clientTLS, Logger: log})
	if err != nil {
		data.Close()
		return err
	}

	acts := &activities.Host{
		Name: host.Name, DataAddress: host.DataAddress,
		Backend: backend, Sessions: data, Fetcher: fetcher, Logger: log,
	}
	wfWorker := sdkworker.New(c, workflows.WorkflowTaskQueue, sdkworker.Options{WorkerStopTimeout: opts.StopTimeout})
	wfWorker.RegisterWorkflowWithOptions(workflows.ReplicateWorkflow, workflow.RegisterOptions{Name: workflows.ReplicateWorkflowName})
	hostWorker := sdkworker.New(c, workflows.HostTaskQueue(host.Name), sdkworker.Options{
		WorkerStopTimeout: opts.StopTimeout,
		// Send receive progress every few seconds, not every 0.8 x the
		// heartbeat timeout (24 s by default): `ferry status` shows it live.
		MaxHeartbeatThrottleInterval: progressEvery,
	})
	hostWorker.RegisterActivity(acts)

	if err := wfWorker.Start(); err != nil {
		data.Close()
		return fmt.Errorf("start workflow worker: %w", err)
	}
	if err := hostWorker.Start(); err != nil {
		wfWorker.Stop()
		data.Close()
		return fmt.Errorf("start activity worker: %w", err)
	}
	log.Info("worker running",
		zap.String("backend", host.Backend), zap.String("root", host.Root),
		zap.String("data_address", ln.Addr().String()),
		zap.String("task_queue", workflows.HostTaskQueue(host.Name)))

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if err != nil && !errors.Is(err, net.ErrClosed) {
			log.Error("data server stopped", zap.Error(err))
		}
	}
	log.Info("worker stopping", zap.Duration("stop_timeout", opts.StopTimeout))
	// The host worker stops first so running receives see the stop channel
	// and end at a resumable point while the data server still answers.
	hostWorker.Stop()
	wfWorker.Stop()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), opts.StopTimeout)
	defer cancel()
	if err := data.Shutdown(shutdownCtx); err != nil {
		log.Warn("data server shutdown", zap.Error(err))
	}
	log.Info("worker stopped")
	return nil
}

// OpenBackend opens the host's storage backend.
func OpenBackend(h config.Host, log *zap.Logger) (storage.Backend, error) {
	switch h.Backend {
	case config.BackendDir:
		if err := os.MkdirAll(h.Root, 0o755); err != nil {
			return nil, fmt.Errorf("host %s: create root %s: %w", h.Name, h.Root, err)
		}
		return dir.New(h.Root, dir.WithLogger(log))
	case config.BackendBtrfs:
		// The root must already be a mounted btrfs filesystem (or a
		// subvolume on one): nothing is created here, and Check says
		// plainly what is wrong when it is not.
		return btrfs.New(h.Root, btrfs.WithLogger(log))
	default:
		return nil, &storage.Error{Kind: storage.KindUnsupported, Op: "open backend " + h.Backend,
			Err: fmt.Errorf("the %s backend is not available in this ferry build", h.Backend),
			Fix: "use backend: dir for host " + h.Name + " or a ferry release with the " + h.Backend + " backend"}
	}
}

// CertFiles picks the host's data-plane certificate: the flags, else
// hosts.<h>.cert/key, else tls.cert/key, else <CA dir>/<host>.pem as
// `ferry certs issue` writes it.
func CertFiles(cfg *config.Config, h config.Host, certFlag, keyFlag string) certs.Files {
	f := certs.Files{CA: cfg.TLS.CA, Host: h.Name}
	switch {
	case certFlag != "" || keyFlag != "":
		f.Cert, f.Key = certFlag, keyFlag
	case h.Cert != "":
		f.Cert, f.Key = h.Cert, h.Key
	case cfg.TLS.Cert != "":
		f.Cert, f.Key = cfg.TLS.Cert, cfg.TLS.Key
	default:
		d := certs.HostFiles(filepath.Dir(cfg.TLS.CA), h.Name)
		f.Cert, f.Key = d.Cert, d.Key
	}
	return f
}
