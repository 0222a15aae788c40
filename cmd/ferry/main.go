// Command ferry replicates NAS snapshots between hosts, orchestrated by Temporal.
// Each subcommand lives in its own file and registers itself on rootCmd.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

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
