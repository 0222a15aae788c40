package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ferry-nas/ferry/starter"
	"github.com/ferry-nas/ferry/workflows"
)

func init() { rootCmd.AddCommand(newStatusCmd()) }

func newStatusCmd() *cobra.Command {
	var (
		configPath string
		asJSON     bool
		watch      bool
		every      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status --config FILE [JOB] [--json] [--watch]",
		Short: "Show each job's schedule, current run, last success and last error",
		Long: `Show, for every job in the config (or only JOB), in name order:
  SCHEDULE      active or paused (manual jobs are paused), or "not applied"
                when 'ferry apply' has not created the job's schedule yet
  NEXT RUN      when the schedule runs the job next
  CURRENT       the run in progress: phase, step i/n, stream bytes received
                of the step's expected stream size, the wire rate (what
                stream.bwlimit caps; the stream rate beside it when
                compression makes them differ) and ETA, from the receiving
                worker's last heartbeat; a resume or restart from 0 after
                the receiver was lost, reconnects; "no progress from HOST
                for N s — worker down?" when the heartbeat is over twice its
                interval old (no stale rate or ETA then)
  LAST SUCCESS  when the last successful run finished, its snapshot, its
                stream and wire bytes (every attempt counted), and what its
                retention step pruned and kept on each host
  LAST ERROR    when the last failed (or cancelled, terminated, timed-out)
                run ended, with its error type and message

--json prints the same as a JSON array, for scripts. --watch shows it again
every --every (2s): redrawn in place on a terminal, printed again below a
time line otherwise; Temporal going away is shown as that, and watching goes
on until it is back. Interrupt it with Ctrl-C.

The answer comes from a bounded number of Temporal calls whatever the number
of jobs: one list of the schedules, one of the running runs, one of the
finished runs (each run's outcome is in its memo), and a describe and status
query per running run.`,
		Example: `  ferry status --config ferry.yaml
  ferry status --config ferry.yaml share01 --json
  ferry status --config ferry.yaml --watch`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
			out := cmd.OutOrStdout()
			show := func(sts []starter.JobStatus) error {
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
			}
			if !watch {
				sts, err := starter.Status(ctx, c, cfg, args...)
				var ue *starter.UnreachableError
				if errors.As(err, &ue) {
					return fmt.Errorf("Temporal at %s did not answer: %w\nis `ferry server` (or your Temporal cluster) running there?", temporalAddress(cfg), ue.Err)
				}
				if err != nil {
					return err
				}
				return show(sts)
			}
			if every <= 0 {
				return fmt.Errorf("--every must be positive, not %s", every)
			}
			redraw := isTerminal(out) && !asJSON
			for {
				sts, err := starter.Status(ctx, c, cfg, args...)
				if ctx.Err() != nil {
					return nil // Ctrl-C ends watching
				}
				if redraw {
					fmt.Fprint(out, "\033[H\033[2J") // home, clear screen
				}
				fmt.Fprintf(out, "%s  (every %s, Ctrl-C to stop)\n", time.Now().Format("15:04:05"), every)
				var ue *starter.UnreachableError
				switch {
				case errors.As(err, &ue):
					fmt.Fprintf(out, "Temporal at %s unreachable (%v); still watching\n", temporalAddress(cfg), ue.Err)
				case err != nil:
					return err
				default:
					if err := show(sts); err != nil {
						return err
					}
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(every):
				}
			}
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "ferry.yaml", "the ferry config file")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	cmd.Flags().BoolVar(&watch, "watch", false, "show the status again every --every until interrupted (redrawn in place on a terminal)")
	cmd.Flags().DurationVar(&every, "every", 2*time.Second, "with --watch, how often")
	return cmd
}

// isTerminal reports whether out is a terminal (not a file, a pipe or
// /dev/null).
func isTerminal(out io.Writer) bool {
	f, ok := out.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
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
		s += " (" + bytesShort(r.Bytes, r.Received) + ")"
	}
	if r.Prune != nil {
		s += " " + r.Prune.String()
	}
	return s
}

// bytesShort is bytesMoved for the table: the stream's size, the wire
// bytes (every attempt) and what interrupted the receives, tersely.
func bytesShort(wire int64, r workflows.Received) string {
	s := starter.FormatBytes(wire) + " wire"
	stream := r.StreamSize
	if stream == 0 { // a run from before the size was recorded
		stream = r.StreamBytes
	}
	if stream > 0 {
		s = starter.FormatBytes(stream) + " stream, " + s
	}
	if r.Resumes > 0 {
		s += ", " + plural(r.Resumes, "resume", "resumes")
	}
	if r.Restarts > 0 {
		s += ", " + plural(r.Restarts, "restart", "restarts") + " from 0"
	}
	if r.Reconnects > 0 {
		s += ", " + plural(r.Reconnects, "reconnect", "reconnects")
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
