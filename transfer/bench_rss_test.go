package transfer

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferry-nas/ferry/internal/benchrec"
)

// The worker-memory rows: the data server and the client each run in a
// child process (this test binary re-executed), stream 4 GiB with zstd and
// the parent reads their peak resident set (VmHWM in /proc/PID/status)
// after the first GiB and at the end. Separate processes keep the harness's
// own memory (the generator's digest, the other end) out of the figure.

const (
	rssTable   = "Data plane: peak RSS of each end (zstd, 4 GiB stream)"
	rssSize    = 4 << 30
	rssMark    = 1 << 30
	rssSeed    = 4242
	rssRuns    = 3
	rssSource  = "ferry source (data server)"
	rssTarget  = "ferry target (client)"
	rssFirst   = "after the first 1 GiB"
	rssWhole   = "streaming 4 GiB"
	childEnv   = "FERRY_DP_CHILD" // server or client: run as that end
	childPKI   = "FERRY_DP_PKI"
	childAddr  = "FERRY_DP_ADDR"
	childToken = "FERRY_DP_TOKEN"
	childSum   = "FERRY_DP_DIGEST"
)

func BenchmarkRowDataPlaneRSS(b *testing.B) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		benchrec.Skip(b, rssTable, "no /proc/self/status (not Linux): peak RSS is read from VmHWM", map[string][]string{
			rssFirst: {rssSource, rssTarget}, rssWhole: {rssSource, rssTarget}})
	}
	textPool()
	want := streamDigest(rssSeed, nasMix, rssSize)
	p := newPKI(b)
	vals := map[string][]float64{}
	for run := range rssRuns {
		first, whole, err := rssRun(b, p.dir, hex.EncodeToString(want[:]))
		if err != nil {
			b.Fatalf("run %d: %v", run+1, err)
		}
		for i, tool := range []string{rssSource, rssTarget} {
			vals[rssFirst+tool] = append(vals[rssFirst+tool], first[i])
			vals[rssWhole+tool] = append(vals[rssWhole+tool], whole[i])
		}
	}
	notes := map[string]string{
		rssSource: "the data server alone in its own process (a worker adds the Temporal SDK): four 1 MiB frame buffers (two frames in turn, raw and compressed), one zstd encoder, and the test's data generator (4 MiB text pool)",
		rssTarget: "the client alone in its own process: two 1 MiB wire buffers, two 1 MiB output buffers and one zstd decoder",
	}
	for _, c := range []string{rssFirst, rssWhole} {
		for _, tool := range []string{rssSource, rssTarget} {
			r := benchrec.Row{Table: rssTable, Case: c, Tool: tool, Unit: benchrec.MiB, Values: vals[c+tool], Note: notes[tool]}
			if c == rssWhole {
				r.Limit = benchrec.AtMost(100)
				r.Note = "VmHWM at the end; the same as after 1 GiB when memory does not grow with the stream"
			}
			benchrec.Record(b, r)
		}
	}
}

// rssRun streams once and returns the peak RSS in MiB of source and target
// after the first GiB and at the end.
func rssRun(b *testing.B, pkiDir, sum string) (first, whole [2]float64, err error) {
	srv, srvOut, err := startChild(b, "server", childPKI+"="+pkiDir)
	if err != nil {
		return first, whole, err
	}
	defer srv.stop()
	line, err := srvOut.expect("READY ")
	if err != nil {
		return first, whole, fmt.Errorf("data server child: %w", err)
	}
	addr, tok, _ := strings.Cut(line, " ")
	cli, cliOut, err := startChild(b, "client", childPKI+"="+pkiDir, childAddr+"="+addr, childToken+"="+tok, childSum+"="+sum)
	if err != nil {
		return first, whole, err
	}
	defer cli.stop()
	for i, mark := range []string{"MARK", "DONE"} {
		if _, err := cliOut.expect(mark); err != nil {
			return first, whole, fmt.Errorf("client child: %w", err)
		}
		for j, c := range []*child{srv, cli} {
			v, err := vmHWM(c.cmd.Process.Pid)
			if err != nil {
				return first, whole, err
			}
			if i == 0 {
				first[j] = v
			} else {
				whole[j] = v
			}
		}
	}
	return first, whole, nil
}

type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// stop lets the child exit (it waits for its stdin to close) and reaps it.
func (c *child) stop() {
	c.stdin.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

type lines struct{ sc *bufio.Scanner }

// expect returns the rest of the next line starting with prefix; other
// lines (test output) are skipped.
func (l lines) expect(prefix string) (string, error) {
	var tail []string
	for l.sc.Scan() {
		if rest, ok := strings.CutPrefix(l.sc.Text(), prefix); ok {
			return rest, nil
		}
		tail = append(tail, l.sc.Text())
	}
	return "", fmt.Errorf("exited before %q; output: %s", prefix, strings.Join(tail, " | "))
}

func startChild(b *testing.B, role string, env ...string) (*child, lines, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestDataPlaneChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), append(env, childEnv+"="+role)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, lines{}, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, lines{}, err
	}
	if err := cmd.Start(); err != nil {
		return nil, lines{}, fmt.Errorf("re-execute the test binary as the %s: %w", role, err)
	}
	return &child{cmd: cmd, stdin: stdin}, lines{bufio.NewScanner(out)}, nil
}

// vmHWM is the peak resident set of pid in MiB.
func vmHWM(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// TestDataPlaneChild is one end of BenchmarkRowDataPlaneRSS when
// re-executed with FERRY_DP_CHILD set; otherwise it does nothing.
func TestDataPlaneChild(t *testing.T) {
	role := os.Getenv(childEnv)
	if role == "" {
		t.Skip("runs only as a child of BenchmarkRowDataPlaneRSS")
	}
	p := &pki{dir: os.Getenv(childPKI)}
	switch role {
	case "server":
		srv, err := NewServer(ServerConfig{TLS: p.serverTLS(t), IdleTimeout: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(ln)
		defer srv.Close()
		tok, _, err := srv.Register(SessionSpec{Job: "rss", Peer: dstHost, Compress: true, Open: genOpen(rssSeed, nasMix, rssSize, nil)})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("READY %s %s\n", ln.Addr(), tok)
		io.Copy(io.Discard, os.Stdin) // until the parent has read our VmHWM
	case "client":
		cfg := ClientConfig{TLS: p.clientTLS(t, dstHost), IdleTimeout: 30 * time.Second}
		s, err := Dial(context.Background(), cfg, FetchRequest{Address: os.Getenv(childAddr), ServerName: srcHost,
			Token: os.Getenv(childToken), Compress: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		n, err := io.CopyN(io.Discard, s, rssMark)
		if err != nil {
			t.Fatalf("read %d bytes: %v", n, err)
		}
		fmt.Println("MARK")
		m, err := io.Copy(io.Discard, s)
		if sum := s.Sum(); err != nil || n+m != rssSize || hex.EncodeToString(sum[:]) != os.Getenv(childSum) {
			t.Fatalf("read %d bytes (%s %x, want %s): %v", n+m, s.Algorithm(), sum, os.Getenv(childSum), err)
		}
		fmt.Println("DONE")
		io.Copy(io.Discard, os.Stdin)
	default:
		t.Fatalf("%s=%q: want server or client", childEnv, role)
	}
}
