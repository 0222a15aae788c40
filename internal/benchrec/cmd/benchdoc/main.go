// Command benchdoc turns the rows `make bench` recorded into
// docs/BENCHMARKS.md, with the machine, kernel and versions it ran on.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/ferry-nas/ferry/internal/benchrec"
)

func main() {
	rowsPath := flag.String("rows", "", "the JSON lines the benchmarks wrote ($FERRY_BENCH_OUT)")
	goBench := flag.String("gobench", "", "`go test -bench` output of the hot-path benchmarks")
	out := flag.String("out", "docs/BENCHMARKS.md", "the report to write")
	command := flag.String("command", "make bench", "the command that produced the figures, as the report names it")
	flag.Parse()
	if err := run(*rowsPath, *goBench, *out, *command); err != nil {
		fmt.Fprintln(os.Stderr, "benchdoc:", err)
		os.Exit(1)
	}
}

func run(rowsPath, goBench, out, command string) error {
	f, err := os.Open(rowsPath)
	if err != nil {
		return fmt.Errorf("read the benchmark rows: %w (run `make bench`, which writes them)", err)
	}
	rows, err := benchrec.ReadRows(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", rowsPath, err)
	}
	var gb []benchrec.GoBench
	if goBench != "" {
		g, err := os.Open(goBench)
		if err != nil {
			return err
		}
		gb = benchrec.ParseGoBench(g)
		g.Close()
	}
	meta := benchrec.Meta{
		Date:     time.Now().UTC().Format("2006-01-02 15:04 MST"),
		Command:  command,
		Machine:  machine(),
		Kernel:   firstLine("uname", "-sr"),
		Versions: versions(),
	}
	if os.Geteuid() != 0 {
		meta.Notes = append(meta.Notes, "Run without root: rows that need loop devices, btrfs or zfs are listed under \"Not measured\".")
	}
	tmp := out + ".tmp"
	w, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := benchrec.Render(w, meta, rows, gb); err != nil {
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

func machine() string {
	model := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %d GiB RAM", (kb+(1<<19))>>20)
		}
	}
	return fmt.Sprintf("%s, %d cores%s", model, runtime.NumCPU(), mem)
}

// versions names what produced the figures: Go, ferry, the pinned Temporal
// modules, and the tools ferry is compared with (absent ones are said so).
func versions() []string {
	v := []string{"Go: " + runtime.Version(), "ferry: " + firstLine("git", "describe", "--tags", "--always", "--dirty")}
	if b, err := os.ReadFile("go.mod"); err == nil {
		var mods []string
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 && (f[0] == "go.temporal.io/server" || f[0] == "go.temporal.io/sdk" || f[0] == "github.com/temporalio/ui-server/v2") {
				mods = append(mods, f[0]+" "+f[1])
			}
		}
		v = append(v, "Temporal: "+strings.Join(mods, ", "))
	}
	for _, t := range [][]string{
		{"btrfs", "--version"}, {"rsync", "--version"}, {"tar", "--version"}, {"ssh", "-V"}, {"openssl", "version"},
	} {
		v = append(v, t[0]+": "+firstLine(t[0], t[1:]...))
	}
	if _, err := exec.LookPath("zfs-fuse"); err == nil {
		v = append(v, "zfs: zfs-fuse "+firstLine("dpkg-query", "-W", "-f", "${Version}", "zfs-fuse"))
	} else {
		v = append(v, "zfs: not installed")
	}
	return v
}

func firstLine(name string, args ...string) string {
	b, err := exec.Command(name, args...).CombinedOutput()
	if err != nil && len(b) == 0 {
		return "not available (" + err.Error() + ")"
	}
	l, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return l
}
