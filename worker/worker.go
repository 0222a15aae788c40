// Package worker runs one NAS host's part of ferry: the Temporal workers for
// the shared workflow queue and the host's own activity queue, and the data
// server that serves send streams to the targets the workflows authorise.
package worker

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/certs"
	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/logging"
	"github.com/ferry-nas/ferry/metrics"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/btrfs"
	"github.com/ferry-nas/ferry/storage/dir"
	"github.com/ferry-nas/ferry/storage/zfs"
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
	// MetricsAddress overrides hosts.<h>.metrics_address: where /metrics
	// is served (plain HTTP); neither set means no metrics.
	MetricsAddress string
	// Metrics is the registry to serve when metrics are on; nil makes
	// one. Pass the one whose SDKHandler the Temporal client was dialled
	// with, so that the SDK's metrics are served too.
	Metrics *metrics.Metrics

	// listen opens the data server's listener; nil means net.Listen (tests
	// substitute it to get hold of the listener).
	listen func(network, address string) (net.Listener, error)
}

// DefaultStopTimeout is Options.StopTimeout's default.
const DefaultStopTimeout = 10 * time.Second

// progressEvery is how often a running receive's heartbeat reaches the server.
const progressEvery = 2 * time.Second

// Worker is one host's worker that passed its start-up checks: the backend
// is usable, the certificate is this host's, the data address is listened
// on. It is not connected to Temporal until Serve.
type Worker struct {
	opts    Options
	host    config.Host
	log     *zap.Logger
	backend storage.Backend
	data    *transfer.Server
	fetcher *transfer.Client
	ln      net.Listener
	// metrics and metricsLn are nil when metrics are off.
	metrics   *metrics.Metrics
	metricsLn net.Listener
}

// New runs the worker's start-up checks, each refusal an error naming the
// thing to fix: the host is in the config, its root exists (never created),
// the backend is usable, the certificate is issued for this host by the
// CA, and the data address (and the metrics address, when set) can be
// listened on. It touches no Temporal
// server, so a local mistake is reported before a connection is tried.
func New(ctx context.Context, opts Options) (*Worker, error) {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	host, err := opts.Config.Host(opts.Host)
	if err != nil {
		return nil, fmt.Errorf("--host %s: %w: start the worker with --host set to one of them, or declare hosts.%s in the config", opts.Host, err, opts.Host)
	}
	log = log.With(logging.Host(host.Name))
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = DefaultStopTimeout
	}

	backend, err := OpenBackend(host, log)
	if err != nil {
		return nil, err
	}
	if err := backend.Check(ctx); err != nil {
		return nil, fmt.Errorf("host %s: %s backend at %s is not usable: %w", host.Name, host.Backend, host.Root, err)
	}

	files := CertFiles(opts.Config, host, opts.Cert, opts.Key)
	serverTLS, err := certs.ServerConfig(files)
	if err != nil {
		return nil, fmt.Errorf("host %s: data-plane certificate: %w", host.Name, err)
	}
	clientTLS, err := certs.ClientConfig(files, "")
	if err != nil {
		return nil, fmt.Errorf("host %s: data-plane certificate: %w", host.Name, err)
	}
	var mtr *metrics.Metrics
	if MetricsAddress(host, opts.MetricsAddress) != "" {
		if mtr = opts.Metrics; mtr == nil {
			mtr = metrics.New(host.Name)
		}
	}
	data, err := transfer.NewServer(transfer.ServerConfig{TLS: serverTLS, Logger: log, Metrics: mtr})
	if err != nil {
		return nil, err
	}
	fetcher, err := transfer.NewClient(transfer.ClientConfig{TLS: clientTLS, Logger: log, Metrics: mtr})
	if err != nil {
		return nil, err
	}
	listen, listenFrom := opts.Listen, "--listen"
	if listen == "" {
		listen, listenFrom = host.DataAddress, "hosts."+host.Name+".data_address"
	}
	listenFn := opts.listen
	if listenFn == nil {
		listenFn = net.Listen
	}
	ln, err := listenFn("tcp", listen)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("host %s: data server cannot listen on %s (%w): is another `ferry worker --host %s` already running? If not, free the port or change %s",
			host.Name, listen, err, host.Name, listenFrom)
	}
	if err != nil {
		return nil, fmt.Errorf("host %s: data server cannot listen on %s (%w); free the port or change %s", host.Name, listen, err, listenFrom)
	}
	w := &Worker{opts: opts, host: host, log: log, backend: backend, data: data, fetcher: fetcher, ln: ln, metrics: mtr}
	if mtr != nil {
		if w.metricsLn, err = listenMetrics(host, MetricsAddress(host, opts.MetricsAddress), opts.MetricsAddress, listenFn); err != nil {
			ln.Close()
			return nil, err
		}
	}
	return w, nil
}

// Close releases what New acquired (the listener) when Serve is not called;
// after Serve it does nothing more.
func (w *Worker) Close() {
	w.ln.Close()
	if w.metricsLn != nil {
		w.metricsLn.Close()
	}
	w.data.Close()
}

// Run is New then Serve.
func Run(ctx context.Context, c client.Client, opts Options) error {
	w, err := New(ctx, opts)
	if err != nil {
		return err
	}
	return w.Serve(ctx, c)
}

// Serve runs the worker on c until ctx is done, then stops gracefully
// (streams in flight are cancelled at a point they can resume from) and
// returns nil. When the data server stops while the worker runs, Serve stops
// the worker and returns an error: a worker that cannot serve sends must not
// look healthy.
func (w *Worker) Serve(ctx context.Context, c client.Client) error {
	host, log, data, ln, opts := w.host, w.log, w.data, w.ln, w.opts
	serveErr := make(chan error, 1)
	go func() { serveErr <- data.Serve(ln) }()

	acts := &activities.Host{
		Name: host.Name, DataAddress: host.DataAddress,
		Backend: w.backend, Sessions: data, Fetcher: w.fetcher, Logger: log, Metrics: w.metrics,
		Hooks: hookCommands(host), Root: host.Root,
	}
	var interceptors []interceptor.WorkerInterceptor
	if w.metrics != nil {
		exportJobs(ctx, opts.Config, host.Name, w.backend, w.metrics, log)
		stopMetrics := serveMetrics(w.metricsLn, w.metrics, log)
		defer stopMetrics()
		interceptors = append(interceptors, &stepMetrics{m: w.metrics})
	}
	wfWorker := sdkworker.New(c, workflows.WorkflowTaskQueue, sdkworker.Options{WorkerStopTimeout: opts.StopTimeout})
	wfWorker.RegisterWorkflowWithOptions(workflows.ReplicateWorkflow, workflow.RegisterOptions{Name: workflows.ReplicateWorkflowName})
	wfWorker.RegisterWorkflowWithOptions(workflows.PruneWorkflow, workflow.RegisterOptions{Name: workflows.PruneWorkflowName})
	wfWorker.RegisterWorkflowWithOptions(workflows.RestoreWorkflow, workflow.RegisterOptions{Name: workflows.RestoreWorkflowName})
	// Notifications go out from any worker: the workflow queue is polled
	// by all of them, so a job whose own hosts are down is still reported.
	wfWorker.RegisterActivity(&activities.Notifier{Logger: log, Host: host.Name})
	hostWorker := sdkworker.New(c, workflows.HostTaskQueue(host.Name), sdkworker.Options{
		WorkerStopTimeout: opts.StopTimeout,
		// Send receive progress every few seconds, not every 0.8 x the
		// heartbeat timeout (24 s by default): `ferry status` shows it live.
		MaxHeartbeatThrottleInterval: progressEvery,
		Interceptors:                 interceptors,
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
		// Where this worker listens, and the address targets are told to
		// dial (they differ behind NAT or a relay).
		zap.String("listen", ln.Addr().String()),
		zap.String("data_address", host.DataAddress),
		zap.String("task_queue", workflows.HostTaskQueue(host.Name)),
		zap.String("metrics", metricsURL(w.metricsLn)))

	var failure error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		failure = fmt.Errorf("host %s: the data server on %s stopped while the worker was running (%w); "+
			"the worker exits so that its supervisor restarts it (the systemd unit does)", host.Name, ln.Addr(), err)
		log.Error("data server stopped: the worker exits", zap.Error(err))
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
	return failure
}

// hookCommands is the host's hooks as RunHook runs them: from this
// worker's own config, never from workflow input.
func hookCommands(h config.Host) map[string]activities.HookCommand {
	out := make(map[string]activities.HookCommand, len(h.Hooks))
	for name, hook := range h.Hooks {
		out[name] = activities.HookCommand{Command: hook.Command, Timeout: hook.Timeout}
	}
	return out
}

// OpenBackend opens the host's storage backend. The root must exist: it is
// never created (only <root>/.ferry inside it is), because a root missing is
// most often a disk that is not mounted, and creating it would put replicas
// on the system disk under the empty mount point.
func OpenBackend(h config.Host, log *zap.Logger) (storage.Backend, error) {
	if h.Backend == config.BackendZFS {
		// The root is a dataset name, not a path: Check refuses a root
		// dataset that does not exist (it is never created either).
		return zfs.New(h.Root, zfs.WithLogger(log))
	}
	if err := checkRoot(h); err != nil {
		return nil, err
	}
	switch h.Backend {
	case config.BackendDir:
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

// checkRoot refuses a root that does not exist or is not a directory,
// naming the path, the config key and the fix.
func checkRoot(h config.Host) error {
	op := "host " + h.Name
	fi, err := os.Stat(h.Root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return storage.Errorf(storage.KindUnsupported, op, "", "",
			fmt.Sprintf("mount the filesystem that holds it; if the root is new, create it with `%s`; or fix hosts.%s.root in the config", createHint(h), h.Name),
			"root %s does not exist; ferry never creates a host's root, so that a backup disk that is not mounted does not turn into replicas on the system disk",
			h.Root)
	case err != nil:
		return storage.Errorf(storage.KindUnsupported, op, "", "",
			fmt.Sprintf("make it reachable for the worker's user, or fix hosts.%s.root in the config", h.Name),
			"root %s: %v", h.Root, err)
	case !fi.IsDir():
		return storage.Errorf(storage.KindUnsupported, op, "", "",
			fmt.Sprintf("point hosts.%s.root at a directory", h.Name),
			"root %s is not a directory", h.Root)
	}
	return nil
}

// createHint is the command that makes a root for the host's backend.
func createHint(h config.Host) string {
	if h.Backend == config.BackendBtrfs {
		return "btrfs subvolume create " + h.Root
	}
	return "mkdir " + h.Root
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

// metricsURL is where /metrics is served, "off" without a listener.
func metricsURL(ln net.Listener) string {
	if ln == nil {
		return "off"
	}
	return "http://" + ln.Addr().String() + "/metrics"
}
