package main

import (
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/worker"
)

func init() { rootCmd.AddCommand(newWorkerCmd()) }

func newWorkerCmd() *cobra.Command {
	var (
		configPath, host, cert, key, listen string
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
			cfg, err := config.Load(configPath)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			// The local checks (root, backend, certificate, listen address)
			// come first, so their refusals are not hidden behind Temporal's.
			w, err := worker.New(ctx, worker.Options{
				Config: cfg, Host: host, Cert: cert, Key: key, Listen: listen,
				Logger: log, StopTimeout: stopTimeout, // New adds the host field
			})
			if err != nil {
				return err
			}
			defer w.Close()
			c, err := dialTemporal(ctx, cfg, log)
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
	cmd.Flags().DurationVar(&stopTimeout, "stop-timeout", worker.DefaultStopTimeout, "how long in-flight work gets on shutdown")
	_ = cmd.MarkFlagRequired("host")
	return cmd
}
