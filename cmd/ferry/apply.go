package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-nas/ferry/starter"
)

func init() { rootCmd.AddCommand(newApplyCmd()) }

func newApplyCmd() *cobra.Command {
	var (
		configPath string
		prune      bool
	)
	cmd := &cobra.Command{
		Use:   "apply --config FILE [--prune]",
		Short: "Create or update one Temporal Schedule per job (manual jobs: a paused schedule)",
		Long: `Make the Temporal Schedules match the jobs in the config: one schedule
ferry-JOB per job, created when missing, updated when its timing, workflow
input, policies or pause state differ from the config, and left alone when
they match (apply is safe to run again and again).

A job with every: or cron: runs on that schedule; a job with neither is manual:
its schedule is created paused and only 'ferry run' starts it. A run that is
due while the previous one is still going is skipped.

Schedules named ferry-* that run ferry's workflow but have no job in the
config are listed and left alone; --prune deletes them.`,
		Example: `  ferry apply --config /etc/ferry/ferry.yaml
  ferry apply --config /etc/ferry/ferry.yaml --prune`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cfg, c, logger, err := configAndClient(ctx, configPath)
			if logger != nil {
				defer func() { _ = logger.Sync() }()
			}
			if err != nil {
				return err
			}
			defer c.Close()
			report, err := starter.Apply(ctx, c, cfg, starter.ApplyOptions{Prune: prune})
			printApply(cmd.OutOrStdout(), report)
			return err
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "ferry.yaml", "the ferry config file")
	cmd.Flags().BoolVar(&prune, "prune", false, "delete ferry schedules whose job is no longer in the config")
	return cmd
}

func printApply(out io.Writer, r *starter.ApplyReport) {
	if r == nil {
		return
	}
	if len(r.Jobs) == 0 {
		fmt.Fprintln(out, "no jobs in the config")
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	if len(r.Jobs) > 0 {
		fmt.Fprintln(tw, "JOB\tSCHEDULE\tRESULT\tWHEN\tNEXT RUN")
	}
	for _, j := range r.Jobs {
		result := j.Result
		if len(j.Changed) > 0 {
			result += " (" + strings.Join(j.Changed, ", ") + ")"
		}
		when := j.Spec
		next := "-"
		switch {
		case j.Result == starter.Failed:
			next = j.Error
		case j.Paused:
			when += ", paused"
			next = "- (ferry run " + j.Job + ")"
		case !j.NextRun.IsZero():
			next = localTime(j.NextRun) + " (in " + starter.FormatDuration(time.Until(j.NextRun)) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", j.Job, j.ScheduleID, result, when, next)
	}
	_ = tw.Flush()

	for _, s := range r.Stale {
		switch {
		case s.Deleted:
			fmt.Fprintf(out, "deleted schedule %s: job %q is not in the config\n", s.ID, s.Job)
		case s.Error != "":
			fmt.Fprintf(out, "could not delete schedule %s: %s\n", s.ID, s.Error)
		default:
			fmt.Fprintf(out, "stale schedule %s: job %q is not in the config; left alone (ferry apply --prune deletes it)\n", s.ID, s.Job)
		}
	}
}
