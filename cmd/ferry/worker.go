package main

import (
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/logging"
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

SIGINT or SIGTERM stops it gracefully: streams in flight stop at a resumable
point and continue when the worker is back.`,
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
			c, err := dialTemporal(ctx, cfg, log)
			if err != nil {
				return err
			}
			defer c.Close()
			return worker.Run(ctx, c, worker.Options{
				Config: cfg, Host: host, Cert: cert, Key: key, Listen: listen,
				Logger: log.With(logging.Host(host)), StopTimeout: stopTimeout,
			})
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
