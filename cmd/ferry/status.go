package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-nas/ferry/starter"
)

func init() { rootCmd.AddCommand(newStatusCmd()) }

func newStatusCmd() *cobra.Command {
	var (
		configPath string
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "status --config FILE [JOB] [--json]",
		Short: "Show each job's schedule, current run, last success and last error",
		Long: `Show, for every job in the config (or only JOB), in name order:
  SCHEDULE      active or paused (manual jobs are paused), or "not applied"
                when 'ferry apply' has not created the job's schedule yet
  NEXT RUN      when the schedule runs the job next
  CURRENT       the run in progress: phase, step i/n, bytes received of the
                step's expected size, rate and ETA (from the receiving
                worker's last heartbeat)
  LAST SUCCESS  when the last successful run finished, its snapshot and size,
                and what its retention step pruned and kept on each host
  LAST ERROR    when the last failed (or cancelled, terminated, timed-out)
                run ended, with its error type and message

--json prints the same as a JSON array, for scripts.`,
		Example: `  ferry status --config ferry.yaml
  ferry status --config ferry.yaml share01 --json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cfg, c, logger, err := configAndClient(ctx, configPath)
			if logger != nil {
				defer func() { _ = logger.Sync() }()
			}
			if err != nil {
				return err
			}
			defer c.Close()
			sts, err := starter.Status(ctx, c, cfg, args...)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if sts == nil {
					sts = []starter.JobStatus{}
				}
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(sts)
			}
			printStatus(out, sts, time.Now())
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "ferry.yaml", "the ferry config file")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return cmd
}

func printStatus(out io.Writer, sts []starter.JobStatus, now time.Time) {
	if len(sts) == 0 {
		fmt.Fprintln(out, "no jobs in the config")
		return
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSCHEDULE\tNEXT RUN\tCURRENT\tLAST SUCCESS\tLAST ERROR")
	for _, s := range sts {
		if !s.Applied() {
			fmt.Fprintf(tw, "%s\tnot applied: run `ferry apply`\t-\t%s\t%s\t%s\n", s.Job, current(s.Current), success(s.LastSuccess, now), failure(s.LastError, now))
			continue
		}
		state, next := "active", "-"
		if s.Schedule.Paused {
			state = "paused"
		} else if !s.Schedule.NextRun.IsZero() {
			next = localTime(s.Schedule.NextRun)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Job, state, next, current(s.Current), success(s.LastSuccess, now), failure(s.LastError, now))
	}
	_ = tw.Flush()
	for _, s := range sts {
		for _, p := range s.Problems {
			fmt.Fprintf(out, "%s: could not read %s\n", s.Job, p)
		}
	}
}

func current(p *starter.Progress) string {
	if p == nil {
		return "-"
	}
	q := *p
	q.Snapshot = "" // the table has no room for it; --json has it
	return q.String()
}

func success(r *starter.RunSummary, now time.Time) string {
	if r == nil {
		return "never"
	}
	s := ago(r.CloseTime, now)
	if r.Snapshot != "" {
		s += " " + r.Snapshot
	}
	if r.Steps > 0 {
		s += " (" + starter.FormatBytes(r.Bytes) + ")"
	}
	if r.Prune != nil {
		s += " " + r.Prune.String()
	}
	return s
}

func failure(r *starter.RunSummary, now time.Time) string {
	if r == nil {
		return "-"
	}
	msg := r.Error
	if r.ErrorType != "" {
		msg = r.ErrorType + ": " + msg
	}
	return ago(r.CloseTime, now) + " " + strings.ReplaceAll(msg, "\n", " ")
}

// ago renders t as local time and how long ago it was.
func ago(t, now time.Time) string {
	return localTime(t) + " (" + starter.FormatDuration(now.Sub(t)) + " ago)"
}
