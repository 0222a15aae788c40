package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-nas/ferry/starter"
	"github.com/ferry-nas/ferry/workflows"
)

func init() { rootCmd.AddCommand(newRestoreCmd()) }

func newRestoreCmd() *cobra.Command {
	var (
		configPath, snapshot, to string
	)
	cmd := &cobra.Command{
		Use:   "restore --config FILE JOB [--snapshot NAME] --to HOST:DATASET",
		Short: "Copy a job's replica back into a new dataset (the disaster-recovery path)",
		Long: `Copy the job's replica from its target host into DATASET on HOST, which must
not exist yet: ferry never overwrites a dataset. HOST is the job's source host
or any host with the same backend as the job's target. Without --snapshot the
newest snapshot the target received is restored (list them with
'ferry snapshots').

The restore runs on the workers as a durable workflow through the same data
plane as replication: an interrupted stream resumes, and the received
snapshot is verified by identity and by content digest against the replica.
It then becomes a live, writable dataset at <root>/DATASET on HOST, and its
digest is compared once more. ferry follows the restore like 'ferry run
--wait' and ends with the three content digests. Interrupting stops
following; the restore goes on. See docs/restore.md.`,
		Example: `  ferry restore --config ferry.yaml share01 --to nas-a:share01-restored
  ferry restore --config ferry.yaml share01 --snapshot ferry_share01_20261121T080000.000Z --to nas-a:share01-restored`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return errors.New("--to HOST:DATASET is required: where to restore to, a dataset that does not exist yet (e.g. --to nas-a:share01-restored)")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			cfg, c, logger, err := configAndClient(ctx, configPath)
			if logger != nil {
				defer func() { _ = logger.Sync() }()
			}
			if err != nil {
				return err
			}
			defer c.Close()
			job, err := cfg.Job(args[0])
			if err != nil {
				return err
			}
			dest, err := cfg.RestoreDestination(job, to)
			if err != nil {
				return err
			}
			req := starter.RestoreRequestFor(job, dest, snapshot)
			out := cmd.OutOrStdout()
			st, err := starter.Restore(ctx, c, req)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "started %s: restore %s -> %s\nrun ID: %s\n", st.WorkflowID, req.From, req.To, st.RunID)
			fmt.Fprintf(out, "web UI: %s\n", webUIURL(cfg, job, st.WorkflowID, st.RunID))
			begin := time.Now()
			res, err := starter.FollowRestore(ctx, c, st.WorkflowID, st.RunID, func(p starter.Progress) {
				fmt.Fprintf(out, "%s  %s\n", time.Now().Format("15:04:05"), p)
			})
			if err != nil {
				if errors.Is(err, context.Canceled) {
					return fmt.Errorf("stopped following %s; the restore goes on (temporal workflow show --workflow-id %s)", st.WorkflowID, st.WorkflowID)
				}
				return err
			}
			printRestoreSummary(out, res, time.Since(begin))
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "ferry.yaml", "the ferry config file")
	cmd.Flags().StringVar(&snapshot, "snapshot", "", "the replica's snapshot to restore (default: the newest received)")
	cmd.Flags().StringVar(&to, "to", "", "HOST:DATASET to restore into; the dataset must not exist yet")
	return cmd
}

// printRestoreSummary says what was restored where, how fast, and the
// content digests side by side.
func printRestoreSummary(out io.Writer, res workflows.RestoreResult, took time.Duration) {
	fmt.Fprintf(out, "restored %s from %s to %s in %s: %s moved", res.Snapshot, res.From, res.To, starter.FormatDuration(took), starter.FormatBytes(res.Bytes))
	if s := took.Seconds(); s > 0 && res.Bytes > 0 {
		fmt.Fprintf(out, " (%s)", starter.FormatRate(float64(res.Bytes)/s))
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "live dataset: %s:%s\n", res.To.Host, res.Path)
	fmt.Fprintln(out, "content digests:")
	fmt.Fprintf(out, "  replica   %s@%s  %s\n", res.From, res.Snapshot, res.ReplicaDigest)
	fmt.Fprintf(out, "  received  %s@%s  %s  %s\n", res.To, res.Snapshot, res.ReceivedDigest, match(res.ReceivedDigest, res.ReplicaDigest))
	fmt.Fprintf(out, "  live      %s:%s  %s  %s\n", res.To.Host, res.Path, res.LiveDigest, match(res.LiveDigest, res.ReplicaDigest))
}

func match(a, b string) string {
	if a == b && a != "" {
		return "match"
	}
	return "DIFFERS"
}
