package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is ferry's version, set at build time by `make build`
// (-ldflags "-X main.version=..."); otherwise the build info's.
var version = ""

func init() { rootCmd.AddCommand(newVersionCmd()) }

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print ferry's version and the Temporal SDK, server and UI versions built in",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bi, _ := debug.ReadBuildInfo()
			printVersion(cmd.OutOrStdout(), bi)
			return nil
		},
	}
}

// Modules whose versions `ferry version` names: what `ferry server` runs
// and what every command talks to Temporal with.
var versionModules = []struct{ path, name string }{
	{"go.temporal.io/sdk", "Temporal Go SDK"},
	{"go.temporal.io/server", "Temporal server (ferry server)"},
	{"github.com/temporalio/ui-server/v2", "Temporal web UI (ferry server)"},
}

func printVersion(out io.Writer, bi *debug.BuildInfo) {
	v, rev, dirty := version, "", false
	if bi != nil {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if v == "" {
			v = bi.Main.Version
		}
	}
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	fmt.Fprintf(out, "ferry %s", v)
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		fmt.Fprintf(out, " (commit %s", rev)
		if dirty {
			fmt.Fprint(out, ", modified")
		}
		fmt.Fprint(out, ")")
	}
	fmt.Fprintf(out, ", %s\n", runtime.Version())
	deps := map[string]string{}
	if bi != nil {
		for _, d := range bi.Deps {
			if d.Replace != nil {
				d = d.Replace
			}
			deps[d.Path] = d.Version
		}
	}
	for _, m := range versionModules {
		v := deps[m.path]
		if v == "" {
			v = "unknown (no build info)"
		}
		fmt.Fprintf(out, "%-32s %s\n", m.name+":", v)
	}
}
