package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-nas/ferry/server"
)

func init() { rootCmd.AddCommand(newServerCmd()) }

func newServerCmd() *cobra.Command {
	var opts server.Options
	cmd := &cobra.Command{
		Use:   "server [--db FILE | --ephemeral]",
		Short: "Run the embedded Temporal server and web UI",
		Long: `Run an embedded Temporal server (SQLite) with its web UI, create the
namespace if it is missing and register ferry's search attributes
(FerryJob, FerrySource, FerryTarget, FerryPhase). Runs until interrupted.

State lives in the --db file (default ./ferry-data/temporal.db), so workflows
survive a restart; --ephemeral keeps everything in memory instead.

The web UI listens on 127.0.0.1:8233, reachable from this host only. To open
it to the LAN use --ui-address 0.0.0.0:8233 (the UI has no login: do this on a
trusted network only); --ui-address off disables it. The frontend
(--address) must be an IP:PORT; use 0.0.0.0:7233 when workers on other hosts
connect to it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("db") && opts.Ephemeral {
				return errors.New("--db and --ephemeral are mutually exclusive: --ephemeral keeps no database file")
			}
			if opts.Ephemeral {
				opts.DBPath = ""
			}
			logger, err := newLogger()
			if err != nil {
				return err
			}
			defer func() { _ = logger.Sync() }()
			opts.Logger = logger
			return runServer(cmd, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.DBPath, "db", server.DefaultDBPath, "SQLite database file (its directory is created)")
	f.BoolVar(&opts.Ephemeral, "ephemeral", false, "keep all state in memory; nothing survives the process")
	f.StringVar(&opts.Address, "address", server.DefaultAddress, "frontend gRPC listen address, IP:PORT")
	f.StringVar(&opts.UIAddress, "ui-address", server.DefaultUIAddress, `web UI listen address, HOST:PORT, or "off"`)
	f.StringVar(&opts.Namespace, "namespace", server.DefaultNamespace, "namespace to create if missing")
	f.StringVar(&opts.TemporalLogLevel, "temporal-log-level", "warn",
		"lowest level of the Temporal server's own logs to show (debug, info, warn, error); --log-level still applies")
	return cmd
}

func runServer(cmd *cobra.Command, opts server.Options) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	srv, err := server.Start(startCtx, opts)
	cancel()
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	_, _ = fmt.Fprintf(out, "Temporal frontend: %s%s\n", srv.FrontendAddress(), allInterfaces(opts.Address))
	_, _ = fmt.Fprintf(out, "Namespace:         %s\n", srv.Namespace())
	if u := srv.UIURL(); u != "" {
		_, _ = fmt.Fprintf(out, "Web UI:            %s%s\n", u, allInterfaces(opts.UIAddress))
	} else {
		_, _ = fmt.Fprintf(out, "Web UI:            off\n")
	}
	if p := srv.DBPath(); p != "" {
		_, _ = fmt.Fprintf(out, "Database:          %s\n", p)
	} else {
		_, _ = fmt.Fprintf(out, "Database:          in memory (ephemeral)\n")
	}
	_, _ = fmt.Fprintln(out, "Running; stop with Ctrl-C (SIGINT) or SIGTERM.")

	<-ctx.Done()
	stop() // a second signal ends the process at once
	_, _ = fmt.Fprintln(out, "Stopping...")
	if err := srv.Stop(); err != nil {
		return err
	}
	_, _ = fmt.Fprintln(out, "Stopped.")
	return nil
}

// allInterfaces notes when addr listens on every interface, where the
// printed loopback address is only one way in.
func allInterfaces(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return " (listening on all interfaces: " + addr + ")"
	}
	return ""
}
