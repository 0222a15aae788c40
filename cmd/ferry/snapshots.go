package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/starter"
	"github.com/ferry-nas/ferry/workflows"
)

func init() { rootCmd.AddCommand(newSnapshotsCmd()) }

func newSnapshotsCmd() *cobra.Command {
	var (
		configPath string
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "snapshots --config FILE JOB [--json]",
		Short: "List each side's snapshots of the job: time, size, identity and what protects each",
		Long: `List the snapshots of the job's source and target datasets, oldest first,
as their hosts' workers report them (through the same workflow as 'ferry prune
--dry-run'; nothing is deleted):
  NAME       the snapshot's name
  TIME       the time in its name (ferry's snapshots), else its recorded creation time
  SIZE       its size where the backend knows it, else -
  IDENTITY   its GUID, and for a replica the GUID of the source snapshot it came from
  KEPT BY    what keeps it: a cursor, the last received snapshot, newer than the
             job's mark (pending), the base of a partial receive, an open send
             session, the grid's bucket, not ferry's, another job's; or what
             the next prune deletes it for (superseded, expired)

--json prints the whole outcome (both sides, every reason) as JSON.`,
		Example: `  ferry snapshots --config ferry.yaml share01
  ferry snapshots --config ferry.yaml share01 --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := runPrune(cmd, configPath, args[0], true)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), out)
			}
			printSnapshots(cmd.OutOrStdout(), out)
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "ferry.yaml", "the ferry config file")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return cmd
}

func printSnapshots(w io.Writer, out workflows.PruneOutcome) {
	for i, side := range []struct {
		name string
		r    activities.PruneResult
	}{{"source", out.Source}, {"target", out.Target}} {
		if i > 0 {
			fmt.Fprintln(w)
		}
		r := side.r
		fmt.Fprintf(w, "%s %s:%s (%s): %d snapshot(s)\n", side.name, r.Host, r.Dataset, r.Backend, len(r.Snapshots))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tTIME\tSIZE\tIDENTITY\tKEPT BY")
		for _, v := range r.Snapshots {
			size := "-"
			if v.Size > 0 {
				size = starter.FormatBytes(v.Size)
			}
			id := v.GUID
			if v.ReceivedGUID != "" {
				id += " (from " + v.ReceivedGUID + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.Name, v.Time.UTC().Format("2006-01-02 15:04:05Z"), size, id, keptBy(v))
		}
		_ = tw.Flush()
	}
}

// keptBy is the short form of a verdict: the rules, and "deleted by the
// next prune" for a snapshot nothing keeps.
func keptBy(v activities.SnapshotVerdict) string {
	rules := make([]string, len(v.Reasons))
	for i, r := range v.Reasons {
		rules[i] = r.Rule
	}
	if !v.Keep {
		return "nothing: the next prune deletes it (" + strings.Join(rules, ", ") + ")"
	}
	return strings.Join(rules, ", ")
}
