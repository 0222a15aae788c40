package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/starter"
	"github.com/ferry-nas/ferry/storage/replicaview"
	"github.com/ferry-nas/ferry/workflows"
)

func init() { rootCmd.AddCommand(newRunCmd()) }

func newRunCmd() *cobra.Command {
	var (
		configPath string
		wait       bool
	)
	cmd := &cobra.Command{
		Use:   "run --config FILE JOB [--wait]",
		Short: "Run a job now (trigger its schedule); --wait follows the run to its end",
		Long: `Trigger the job's schedule now, as 'temporal schedule trigger --schedule-id
ferry-JOB' does. This works for manual jobs too: their schedule stays paused
and the run starts anyway. If a run of the job is already in progress the
trigger is skipped (a job never runs twice at once) and ferry says so.

Without --wait, ferry prints the run's workflow ID and returns. With --wait it
follows the run (the one it started, or the one already in progress), printing
a progress line when something changes (at most about once a second), then a
summary; it exits non-zero with the run's error when the run fails.
Interrupting --wait stops following; the run goes on.`,
		Example: `  ferry run --config ferry.yaml share01
  ferry run --config ferry.yaml share01 --wait`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				cfg, err := loadConfig(configPath)
				if err != nil {
					return err
				}
				return errors.New(whichJob(cfg, configPath))
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

			out := cmd.OutOrStdout()
			st, err := starter.Run(ctx, c, job.Name)
			var na *starter.NotAppliedError
			if errors.As(err, &na) {
				return errors.New(na.Hint(configPath))
			}
			if err != nil {
				return err
			}
			if st.AlreadyRunning {
				fmt.Fprintf(out, "a run of %s is already in progress, so the trigger was skipped: %s\n", job.Name, st.WorkflowID)
			} else {
				fmt.Fprintf(out, "started %s (schedule %s)\n", st.WorkflowID, st.ScheduleID)
			}
			fmt.Fprintf(out, "run ID: %s\n", st.RunID)
			if !wait {
				fmt.Fprintf(out, "watch it: ferry status --config %s %s\n", configPath, job.Name)
				fmt.Fprintf(out, "web UI:   %s\n", webUIURL(cfg, job, st.WorkflowID, st.RunID))
				return nil
			}

			begin := time.Now()
			var notePrinted string
			res, err := starter.Follow(ctx, c, st.WorkflowID, st.RunID, func(p starter.Progress) {
				// The note (replicas kept as history) is known when the plan
				// is made: say it before the transfer, not only at the end.
				if p.Note != "" && p.Note != notePrinted {
					fmt.Fprintf(out, "%s  note: %s\n", time.Now().Format("15:04:05"), p.Note)
					notePrinted = p.Note
				}
				if p.Unreachable != "" {
					fmt.Fprintf(out, "%s  Temporal at %s unreachable: %s\n", time.Now().Format("15:04:05"), temporalAddress(cfg), p.Unreachable)
					return
				}
				fmt.Fprintf(out, "%s  %s\n", time.Now().Format("15:04:05"), p)
			})
			if err != nil {
				if errors.Is(err, context.Canceled) {
					return fmt.Errorf("stopped following %s; the run goes on (ferry status --config %s %s)", st.WorkflowID, configPath, job.Name)
				}
				return err
			}
			// The run's own duration, also when ferry joined it midway.
			took := time.Since(begin)
			if d, err := c.DescribeWorkflowExecution(ctx, st.WorkflowID, st.RunID); err == nil {
				if info := d.GetWorkflowExecutionInfo(); info.GetCloseTime() != nil && info.GetStartTime() != nil {
					took = info.GetCloseTime().AsTime().Sub(info.GetStartTime().AsTime())
				}
			}
			if res.Note == notePrinted {
				res.Note = "" // already said when the plan was made
			}
			printRunSummary(out, res, took)
			printReplicaPlace(out, cfg, job)
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "ferry.yaml", "the ferry config file")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the run to its end; exit non-zero if it fails")
	return cmd
}

// bytesMoved words a run's byte figures: the stream's bytes and the wire's,
// every attempt together, and what interrupted the receives.
func bytesMoved(wire int64, r workflows.Received) string {
	s := starter.FormatBytes(wire) + " on the wire"
	if r.Resumes+r.Restarts > 0 {
		// An attempt cut short counts up to its last heartbeat.
		s = "at least " + s
	}
	switch {
	case r.StreamSize > 0 && r.StreamBytes > r.StreamSize:
		s = fmt.Sprintf("%s stream (%s of it sent over all attempts), %s", starter.FormatBytes(r.StreamSize), starter.FormatBytes(r.StreamBytes), s)
	case r.StreamSize > 0:
		s = starter.FormatBytes(r.StreamSize) + " stream, " + s
	case r.StreamBytes > 0:
		s = starter.FormatBytes(r.StreamBytes) + " stream, " + s
	}
	var parts []string
	if r.Resumes > 0 {
		parts = append(parts, plural(r.Resumes, "resume", "resumes")+" after an interruption")
	}
	if r.Restarts > 0 {
		parts = append(parts, plural(r.Restarts, "restart", "restarts")+" from 0 ("+r.Restart+")")
	}
	if r.Reconnects > 0 {
		parts = append(parts, plural(r.Reconnects, "reconnect", "reconnects"))
	}
	if len(parts) > 0 {
		s += ", all attempts counted: " + strings.Join(parts, ", ")
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// whichJob is the answer to `ferry run` without a job: the config's jobs
// and how to run one.
func whichJob(cfg *config.Config, configPath string) string {
	names := cfg.JobNames()
	if len(names) == 0 {
		return fmt.Sprintf("name the job to run; %s has no jobs yet (see docs/config.md)", configPath)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "name the job to run; %s has %s:\n", configPath, plural(len(names), "job", "jobs"))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, n := range names {
		job, _ := cfg.Job(n)
		every := "manual"
		switch {
		case job.Every > 0:
			every = "every " + strings.TrimSuffix(strings.TrimSuffix(job.Every.String(), "0s"), "0m")
		case job.Cron != "":
			every = "cron " + job.Cron
		}
		fmt.Fprintf(tw, "  %s\t%s -> %s\t%s\n", n, job.Source, job.Target, every)
	}
	_ = tw.Flush()
	fmt.Fprintf(&b, "e.g. ferry run --config %s %s --wait", configPath, names[0])
	return b.String()
}

func printRunSummary(out io.Writer, res workflows.ReplicateResult, took time.Duration) {
	what := "done in " + starter.FormatDuration(took)
	steps := len(res.Plan.Steps)
	switch {
	case steps == 0:
		fmt.Fprintf(out, "%s: snapshot %s, the target already had everything (nothing sent)\n", what, res.Snapshot)
	default:
		fmt.Fprintf(out, "%s: snapshot %s, %d step(s): %s", what, res.Snapshot, steps, bytesMoved(res.Bytes, res.Received))
		if res.Discarded > 0 {
			fmt.Fprintf(out, ", %d leftover partial receive(s) discarded", res.Discarded)
		}
		if resumed, ok := resumedBytes(res.Plan); ok && resumed > 0 {
			fmt.Fprintf(out, " (resumed %s kept by an earlier run)", starter.FormatBytes(resumed))
		} else if ok {
			fmt.Fprint(out, " (resumed a partial receive kept by an earlier run)")
		}
		fmt.Fprintln(out)
	}
	if res.Prune != nil {
		fmt.Fprintln(out, "retention: "+res.Prune.String())
	}
	if res.Note != "" {
		fmt.Fprintln(out, "note: "+res.Note)
	}
	for _, f := range res.Foreign {
		fmt.Fprintf(out, "left alone, not made by ferry: %s\n", f)
	}
	for _, host := range slices.Sorted(maps.Keys(res.Features)) {
		f := res.Features[host]
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(f)) {
			kv = append(kv, k+" "+f[k])
		}
		fmt.Fprintf(out, "features of %s: %s\n", host, strings.Join(kv, ", "))
	}
}

// printReplicaPlace says where the target shows the replica: for dir and
// btrfs the view at <root>/<dataset> (docs/storage.md, "Where the replica
// is"); for zfs the target dataset itself, mounted read-only, and how to
// list its snapshots there (docs/storage-zfs.md). ferry run reads no
// target host's storage, so it names places, not what they hold.
func printReplicaPlace(out io.Writer, cfg *config.Config, job config.Job) {
	h, err := cfg.Host(job.Target.Host)
	if err != nil {
		return
	}
	switch h.Backend {
	case config.BackendDir, config.BackendBtrfs:
		fmt.Fprintf(out, "replica: %s:%s (newest), one entry per snapshot beside it\n",
			h.Name, filepath.Join(h.Root, filepath.FromSlash(job.Target.Dataset), replicaview.Latest))
	case config.BackendZFS:
		ds := h.Root + "/" + job.Target.Dataset
		fmt.Fprintf(out, "replica: %s: zfs dataset %s (read-only, at its mountpoint: zfs get mountpoint %s); snapshots: zfs list -r -t snapshot -o name,creation -s createtxg %s\n",
			h.Name, ds, ds, ds)
	}
}

// resumedBytes is how much of the plan's resumed partials earlier runs had
// kept; ok is false when no step resumed one.
func resumedBytes(plan workflows.Plan) (n int64, ok bool) {
	for _, s := range plan.Steps {
		if s.Resume == nil {
			continue
		}
		ok = true
		if s.Resume.Resume != nil {
			n += s.Resume.Resume.Offset
		}
	}
	return n, ok
}
