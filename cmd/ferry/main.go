// Command ferry replicates NAS snapshots between hosts, orchestrated by Temporal.
// Each subcommand lives in its own file and registers itself on rootCmd.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/logging"
)

var logOpts logging.Options

func init() {
	rootCmd.PersistentFlags().StringVar(&logOpts.Level, "log-level", "info", "log level: debug, info, warn or error")
	rootCmd.PersistentFlags().BoolVar(&logOpts.JSON, "log-json", false, "log JSON lines instead of console text")
}

// newLogger builds the process logger from the global flags.
func newLogger() (*zap.Logger, error) { return logging.New(logOpts) }

var rootCmd = &cobra.Command{
	Use:   "ferry",
	Short: "Durable snapshot replication between NAS hosts, orchestrated by Temporal",
	Long: `ferry replicates NAS shares (btrfs subvolumes, ZFS datasets, plain directories)
from one host to another as durable Temporal workflows: interrupted transfers
resume, partial receives are never mistaken for complete ones.`,
	SilenceUsage:  true,
	SilenceErrors: true,
}

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "ferry: %v\n", err)
		os.Exit(1)
	}
}
