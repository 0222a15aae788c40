package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/starter"
	"github.com/ferry-nas/ferry/workflows"
)

func init() { rootCmd.AddCommand(newPruneCmd()) }

func newPruneCmd() *cobra.Command {
	var (
		configPath string
		dryRun     bool
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "prune --config FILE JOB [--dry-run] [--json]",
		Short: "Apply the job's retention on both hosts now, printing every snapshot with keep/delete and why",
		Long: `Apply the job's retention grids (retention.source, retention.target) on both
hosts now, as the last step of every run does: a short workflow (PruneWorkflow)
runs a prune activity on the target's worker, then on the source's. Each
snapshot is printed with keep, DELETE (--dry-run) or DELETED and every
reason: the grid's bucket, superseded or expired, or what protects it (a
cursor, the last received snapshot, newer than the job's mark, the base of a
partial receive, an open send session, not made by ferry, another job's). A
side without a grid keeps everything.

--dry-run decides and prints but deletes nothing. One prune of a job runs at
a time (workflow ID ferry-prune-JOB); a prune beside a running replication of
the job is safe, because everything a run in flight uses is protected.
A snapshot that fails to be deleted is printed with its error and the others
are still pruned; ferry exits non-zero then.`,
		Example: `  ferry prune --config ferry.yaml share01 --dry-run
  ferry prune --config ferry.yaml share01`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := runPrune(cmd, configPath, args[0], dryRun)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return printJSON(w, out)
			}
			printPrune(w, out)
			if n := out.Source.Failed + out.Target.Failed; n > 0 {
				return fmt.Errorf("%d snapshot(s) could not be deleted (see above); they stay until the next prune", n)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "ferry.yaml", "the ferry config file")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "decide and print, delete nothing")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of text")
	return cmd
}

// runPrune loads the config, dials Temporal and runs the job's PruneWorkflow.
func runPrune(cmd *cobra.Command, configPath, jobName string, dryRun bool) (workflows.PruneOutcome, error) {
	ctx := cmd.Context()
	cfg, c, logger, err := configAndClient(ctx, configPath)
	if logger != nil {
		defer func() { _ = logger.Sync() }()
	}
	if err != nil {
		return workflows.PruneOutcome{}, err
	}
	defer c.Close()
	job, err := cfg.Job(jobName)
	if err != nil {
		return workflows.PruneOutcome{}, err
	}
	// The workers answer in a second; when one is down the command would
	// otherwise wait silently for up to timeouts.host per host.
	slow := time.AfterFunc(pruneQuietFor, func() { fmt.Fprintln(cmd.ErrOrStderr(), pruneWaitingNote(job)) })
	defer slow.Stop()
	return starter.Prune(ctx, c, job, dryRun)
}

// pruneQuietFor is how long prune and snapshots wait before saying why.
const pruneQuietFor = 10 * time.Second

// pruneWaitingNote says what a prune or listing that has not answered for
// pruneQuietFor waits for, and how long it will.
func pruneWaitingNote(job config.Job) string {
	host := job.Timeouts.Host
	if host <= 0 {
		host = workflows.DefaultHostTimeout
	}
	workers := fmt.Sprintf("the workers of %s and %s", job.Target.Host, job.Source.Host)
	cmds := fmt.Sprintf("are `ferry worker --host %s` and `ferry worker --host %s` running", job.Target.Host, job.Source.Host)
	if job.Target.Host == job.Source.Host {
		workers, cmds = "the worker of "+job.Source.Host, fmt.Sprintf("is `ferry worker --host %s` running", job.Source.Host)
	}
	return fmt.Sprintf("no answer yet from %s after %s: %s and connected to Temporal? (it gives up when a host has not answered within timeouts.host, %s)",
		workers, pruneQuietFor, cmds, host)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printPrune writes each side: a header, one line per snapshot, a total.
func printPrune(w io.Writer, out workflows.PruneOutcome) {
	when := out.Now.UTC().Format("2006-01-02 15:04:05 UTC")
	if out.DryRun {
		fmt.Fprintf(w, "job %s at %s: dry run, nothing deleted\n", out.Job, when)
	} else {
		fmt.Fprintf(w, "job %s at %s\n", out.Job, when)
	}
	for _, side := range []struct {
		name string
		r    activities.PruneResult
	}{{"source", out.Source}, {"target", out.Target}} {
		r := side.r
		grid := r.Grid
		if grid == "" {
			grid = "none (keep everything)"
		}
		fmt.Fprintf(w, "\n%s %s:%s (%s), grid %s\n", side.name, r.Host, r.Dataset, r.Backend, grid)
		for _, v := range r.Snapshots {
			verdict := "keep  "
			switch {
			case v.Deleted:
				verdict = "DELETED"
			case v.Error != "":
				verdict = "FAILED"
			case !v.Keep:
				verdict = "DELETE"
			}
			fmt.Fprintf(w, "  %-7s %s  %s\n", verdict, v.Name, reasons(v))
			if v.Error != "" {
				fmt.Fprintf(w, "          could not delete: %s\n", v.Error)
			}
		}
		what := "deleted"
		if out.DryRun {
			what = "would delete"
		}
		fmt.Fprintf(w, "  %s %d, keep %d", what, r.Pruned, r.Kept)
		if r.Failed > 0 {
			fmt.Fprintf(w, ", %d failed", r.Failed)
		}
		fmt.Fprintln(w)
	}
}

// reasons renders a verdict's reasons: "cursor: the replication cursor of
// job share01 (cursor.share01); bucket: in bucket 24x1h period 1 of 24 ...".
func reasons(v activities.SnapshotVerdict) string {
	parts := make([]string, len(v.Reasons))
	for i, r := range v.Reasons {
		parts[i] = r.Rule + ": " + r.Detail
	}
	return strings.Join(parts, "; ")
}
