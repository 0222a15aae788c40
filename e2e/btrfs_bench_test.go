package e2e

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/storage"
)

// benchShare is the benchmark's share: 1 GiB of incompressible data.
const benchShare = 1 << 30

// BenchmarkBtrfsThroughput compares, on one pair of loop-mounted btrfs
// images, a full replication of a 1 GiB share of incompressible data
// through ferry (embedded server, both workers as processes, the data
// plane over loopback TLS straight to the source's data server, compress
// none, no rate limit) with stream.resume off and staged, and a plain
// `btrfs send <snapshot> | btrfs receive <dir>` of the same data between
// the same filesystems. ferry's figure is the wall time from the trigger
// to the run's result (the receive is committed with syncfs); the pipe's
// is the pipe's wall time plus a syncfs of the target, so both end durable
// (the metric pipe-nosync-MB/s leaves the sync out). MB/s is the share's
// size (1 GiB = 1073.7 MB) over that time. Both filesystems are synced
// before each measurement; the source's data is in the page cache for
// all three.
//
// Root only; one iteration: `make bench-btrfs` (-benchtime 1x).
func BenchmarkBtrfsThroughput(b *testing.B) {
	needBtrfs(b)
	e := newBtrfsEnv(b, envOptions{
		ShareSize:  benchShare,
		Resume:     string(storage.ResumeOff),
		Direct:     true,
		WriteShare: writeIncompressible,
		Timeout:    20 * time.Minute,
		// The target holds one 1 GiB copy at a time (each is destroyed
		// after it is measured), plus the staged spool.
		Images: map[string]int64{source: 3 << 30, target: 4 << 30},
	})
	e.apply()
	var snapshot string
	for _, mode := range []string{string(storage.ResumeOff), string(storage.ResumeStaged)} {
		b.Run(mode, func(b *testing.B) {
			defer e.as(b)()
			if mode != string(storage.ResumeOff) {
				e.setResume(mode)
			}
			e.syncBoth()
			b.ResetTimer()
			began := time.Now()
			st := e.start()
			res := e.mustSucceed(st)
			took := time.Since(began)
			b.StopTimer()
			require.Len(b, res.Plan.Steps, 1)
			require.Empty(b, res.Plan.Steps[0].From, "not a full replication")
			require.True(b, hasEntry(e.workerLogs(target, "received"), map[string]any{"snapshot": res.Snapshot, "mode": mode}),
				"%s was not received in %s mode", res.Snapshot, mode)
			report(b, took, res.Bytes)
			// Where the time went, from the workers' logs: the stream
			// (receive start to the source's "transfer complete") and what
			// followed it on the target (staged: applying the spool) up to
			// the commit.
			rcvAt := e.logTime(target, "receive", res.Snapshot)
			sentAt := e.logTime(source, "transfer complete", "")
			doneAt := e.logTime(target, "received", res.Snapshot)
			b.ReportMetric(sentAt.Sub(rcvAt).Seconds(), "stream-s")
			b.ReportMetric(doneAt.Sub(sentAt).Seconds(), "apply-s")
			if snapshot == "" {
				snapshot = res.Snapshot
			}
			e.requireSameContent(res.Snapshot)
			// Make room for the next copy.
			require.NoError(b, e.backend(target).DestroySnapshot(e.ctx, tgtDataset, res.Snapshot))
			btrfs(b, "subvolume", "sync", e.roots[target])
		})
	}
	b.Run("pipe", func(b *testing.B) {
		defer e.as(b)()
		require.NotEmpty(b, snapshot, "no ferry run made the snapshot to send")
		src := filepath.Join(e.roots[source], ".ferry", "snapshots", srcDataset, snapshot, snapshot)
		dst := filepath.Join(e.roots[target], "pipe")
		require.NoError(b, os.Mkdir(dst, 0o755))
		e.syncBoth()
		b.ResetTimer()
		began := time.Now()
		sendReceive(b, src, dst)
		piped := time.Since(began)
		require.NoError(b, syncFS(dst))
		took := time.Since(began)
		b.StopTimer()
		report(b, took, 0)
		b.ReportMetric(float64(benchShare)/1e6/piped.Seconds(), "pipe-nosync-MB/s")
		got, err := storage.TreeDigest(filepath.Join(dst, snapshot), nil)
		require.NoError(b, err)
		want, err := e.backend(source).ContentDigest(e.ctx, srcDataset, snapshot)
		require.NoError(b, err)
		require.Equal(b, want, got, "the piped copy differs from the source")
	})
}

// report adds the benchmark's figures: MB/s of share data over the wall
// time, and the bytes ferry moved over the wire (0: not known).
func report(b *testing.B, took time.Duration, wireBytes int64) {
	b.ReportMetric(float64(benchShare)/1e6/took.Seconds(), "MB/s")
	b.ReportMetric(took.Seconds(), "s")
	if wireBytes > 0 {
		b.ReportMetric(float64(wireBytes)/1e6, "wire-MB")
	}
	b.Logf("%s: 1 GiB of share data in %v = %.1f MB/s", b.Name(), took.Round(time.Millisecond), float64(benchShare)/1e6/took.Seconds())
}

// sendReceive runs `btrfs send src | btrfs receive dst`: one pipe between
// the two processes.
func sendReceive(b *testing.B, src, dst string) {
	send := exec.Command("btrfs", "send", "-q", src)
	recv := exec.Command("btrfs", "receive", "-q", dst)
	var sendErr, recvErr strings.Builder
	send.Stderr, recv.Stderr = &sendErr, &recvErr
	pr, pw, err := os.Pipe()
	require.NoError(b, err)
	send.Stdout, recv.Stdin = pw, pr
	require.NoError(b, send.Start())
	require.NoError(b, recv.Start())
	pw.Close()
	pr.Close()
	require.NoError(b, send.Wait(), "btrfs send: %s", sendErr.String())
	require.NoError(b, recv.Wait(), "btrfs receive: %s", recvErr.String())
}

// logTime is the time of host's last log line with msg (and, when
// snapshot is set, that snapshot).
func (e *env) logTime(host, msg, snapshot string) time.Time {
	e.t.Helper()
	var at time.Time
	for _, l := range e.workerLogs(host, msg) {
		if l["msg"] != msg || (snapshot != "" && l["snapshot"] != snapshot) {
			continue
		}
		ts, _ := l["ts"].(string)
		t, err := time.Parse(time.RFC3339Nano, ts)
		require.NoError(e.t, err, "log time %q", ts)
		at = t
	}
	require.False(e.t, at.IsZero(), "no %q in %s's log", msg, host)
	return at
}

// as makes tb the env's test for a sub-benchmark, and returns the undo.
func (e *env) as(tb testing.TB) func() {
	prev := e.t
	e.t = tb
	return func() { e.t = prev }
}

// setResume rewrites the job's stream.resume and applies the config again.
func (e *env) setResume(mode string) {
	e.t.Helper()
	data, err := os.ReadFile(e.cfgPath)
	require.NoError(e.t, err)
	cfg := string(data)
	for _, m := range []string{string(storage.ResumeOff), string(storage.ResumeStaged), string(storage.ResumeAuto)} {
		cfg = strings.Replace(cfg, "resume: "+m, "resume: "+mode, 1)
	}
	require.NoError(e.t, os.WriteFile(e.cfgPath, []byte(cfg), 0o644))
	e.cfg, err = config.Load(e.cfgPath)
	require.NoError(e.t, err)
	require.Equal(e.t, mode, string(e.cfg.Jobs[e.job].Stream.Resume))
	e.apply()
}

// syncBoth commits both hosts' filesystems, so that no earlier writeback
// is measured.
func (e *env) syncBoth() {
	e.t.Helper()
	for _, h := range []string{source, target} {
		require.NoError(e.t, syncFS(e.roots[h]))
	}
}

func syncFS(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// writeIncompressible fills dir with size bytes of random data in 64 MiB
// files.
func writeIncompressible(dir string, size int64) error {
	buf := make([]byte, 1<<20)
	for i := 0; size > 0; i++ {
		n := min(size, 64<<20)
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("random-%02d.bin", i)))
		if err != nil {
			return err
		}
		for left := n; left > 0; left -= int64(len(buf)) {
			chunk := buf[:min(left, int64(len(buf)))]
			rand.Read(chunk)
			if _, err := f.Write(chunk); err != nil {
				f.Close()
				return err
			}
		}
		if err := f.Close(); err != nil {
			return err
		}
		size -= n
	}
	return nil
}
