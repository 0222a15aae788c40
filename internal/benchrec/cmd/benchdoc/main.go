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
	started := flag.Int64("started", 0, "when the command started, in Unix seconds (0: its run time is not reported)")
	flag.Parse()
	if err := run(*rowsPath, *goBench, *out, *command, *started); err != nil {
		fmt.Fprintln(os.Stderr, "benchdoc:", err)
		os.Exit(1)
	}
}

func run(rowsPath, goBench, out, command string, started int64) error {
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
		Notes:    []string{"Filesystem: " + tempFS()},
		Versions: versions(),
	}
	if started > 0 {
		took := time.Since(time.Unix(started, 0)).Round(time.Second)
		meta.Notes = append(meta.Notes, fmt.Sprintf("`%s` ran for %d min %d s, builds included.", command, int(took.Minutes()), int(took.Seconds())%60))
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
	model, flags := "unknown CPU", ""
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() && (model == "unknown CPU" || flags == "") {
			k, v, ok := strings.Cut(sc.Text(), ":")
			switch k = strings.TrimSpace(k); {
			case !ok:
			case k == "model name" && model == "unknown CPU":
				model = strings.TrimSpace(v)
			case k == "flags" && flags == "":
				flags = cpuFeatures(strings.Fields(v))
			}
		}
		f.Close()
	}
	if flags != "" {
		model += " (" + flags + ")"
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

// tempFS names the filesystem the dir rows and the loop images live on
// (the temporary directory's) and its mount options: online discard or no
// journal change what creating and removing many files costs.
func tempFS() string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "temporary directory's filesystem unknown"
	}
	dir, best := os.TempDir(), ""
	var desc string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		mnt := f[1]
		if (dir == mnt || strings.HasPrefix(dir, strings.TrimSuffix(mnt, "/")+"/")) && len(mnt) >= len(best) {
			best, desc = mnt, fmt.Sprintf("%s on %s is %s (%s)", dir, mnt, f[2], f[3])
		}
	}
	if desc == "" {
		return "temporary directory's filesystem unknown"
	}
	return desc
}

// cpuFeatures names the instruction sets the crypto, hashing and
// compression figures depend on most: the same model name has come with
// and without AVX-512, at 2-4x the speed per core.
func cpuFeatures(flags []string) string {
	has := map[string]bool{}
	for _, f := range flags {
		has[f] = true
	}
	var out []string
	for _, f := range []struct{ flag, name string }{{"avx2", "AVX2"}, {"avx512f", "AVX-512"}, {"aes", "AES-NI"}, {"vaes", "VAES"}, {"sha_ni", "SHA-NI"}} {
		if has[f.flag] {
			out = append(out, f.name)
		} else {
			out = append(out, "no "+f.name)
		}
	}
	return strings.Join(out, ", ")
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
