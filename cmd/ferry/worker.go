package main

import (
	"fmt"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"go.temporal.io/sdk/client"

	"github.com/ferry-nas/ferry/metrics"
	"github.com/ferry-nas/ferry/worker"
)

func init() { rootCmd.AddCommand(newWorkerCmd()) }

func newWorkerCmd() *cobra.Command {
	var (
		configPath, host, cert, key, listen string
		metricsAddress                      string
		stopTimeout                         time.Duration
	)
	cmd := &cobra.Command{
		Use:   "worker --config FILE --host NAME",
		Short: "Run this NAS host's worker: its replication activities and its data server",
		Long: `Run the worker of one NAS host. It polls the shared workflow queue and the
host's own activity queue (ferry-host-NAME) on the Temporal server named in the
config, and serves send streams to the targets the workflows authorise.

The data-plane certificate is --cert/--key, else hosts.NAME.cert/key, else
tls.cert/key, else NAME.pem / NAME-key.pem beside the CA (as ` + "`ferry certs issue`" + ` writes them).

Before it connects to Temporal it refuses to start, saying what to fix, when
the host's root does not exist (it is never created: a backup disk that is
not mounted must not turn into replicas on the system disk; only
ROOT/.ferry is created), the backend is not usable there, the certificate
is missing, not from the CA or issued for another host, or the data address
cannot be listened on.

With --metrics-address (or hosts.NAME.metrics_address) it serves Prometheus
metrics, ferry's and the Temporal SDK's, on http://ADDRESS/metrics: plain
HTTP, so bind it to localhost or a management network (docs/metrics.md).

SIGINT or SIGTERM stops it gracefully: streams in flight stop at a resumable
point and continue when the worker is back. If its data server stops while
it runs, the worker stops and exits non-zero, for its supervisor to restart it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger()
			if err != nil {
				return err
			}
			defer log.Sync()
			cfg, err := loadConfig(configPath)
			if err != nil {
				return err
			}
			if host == "" { // checked here, not by cobra, so that the refusal can list the hosts
				return fmt.Errorf("name the host this worker runs on with --host; %s declares %s: e.g. ferry worker --config %s --host %s",
					configPath, strings.Join(cfg.HostNames(), ", "), configPath, cfg.HostNames()[0])
			}
			stopProfile, err := startCPUProfile(log, host)
			if err != nil {
				return err
			}
			defer stopProfile()
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			// One registry for ferry's metrics and the SDK's, made before
			// the client is dialled so that the SDK reports into it.
			var mtr *metrics.Metrics
			if h, err := cfg.Host(host); err == nil && worker.MetricsAddress(h, metricsAddress) != "" {
				mtr = metrics.New(h.Name)
			}
			// The local checks (root, backend, certificate, listen
			// addresses) come first, so their refusals are not hidden
			// behind Temporal's.
			w, err := worker.New(ctx, worker.Options{
				Config: cfg, Host: host, Cert: cert, Key: key, Listen: listen,
				Logger: log, StopTimeout: stopTimeout, // New adds the host field
				MetricsAddress: metricsAddress, Metrics: mtr,
			})
			if err != nil {
				return err
			}
			defer w.Close()
			c, err := dialTemporal(ctx, cfg, log, func(o *client.Options) { o.MetricsHandler = mtr.SDKHandler() })
			if err != nil {
				return err
			}
			defer c.Close()
			return w.Serve(ctx, c)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "ferry.yaml", "the ferry config file")
	cmd.Flags().StringVar(&host, "host", "", "this host's name under hosts: in the config")
	cmd.Flags().StringVar(&cert, "cert", "", "this host's data-plane certificate (PEM)")
	cmd.Flags().StringVar(&key, "key", "", "this host's data-plane private key (PEM)")
	cmd.Flags().StringVar(&listen, "listen", "", "data server listen address (default: the host's data_address)")
	cmd.Flags().StringVar(&metricsAddress, "metrics-address", "", "serve Prometheus metrics on http://ADDRESS/metrics, plain HTTP (default: hosts.NAME.metrics_address; off when neither is set)")
	cmd.Flags().DurationVar(&stopTimeout, "stop-timeout", worker.DefaultStopTimeout, "how long in-flight work gets on shutdown")
	return cmd
}
