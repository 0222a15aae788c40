package dir

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
)

// hotTree is the hot-path benchmarks' snapshot: 64 files of 256 KiB and
// 1024 of 1 KiB (17 MiB), so that both the per-byte and the per-entry
// costs of the stream show.
func hotTree(b *testing.B) (*Backend, storage.Snapshot) {
	b.Helper()
	src := newTestBackend(b)
	live := src.live("share")
	for i := range 64 {
		writeRandomFile(b, filepath.Join(live, "big", fmt.Sprintf("f%02d", i)), 256<<10)
	}
	for i := range 1024 {
		writeRandomFile(b, filepath.Join(live, fmt.Sprintf("small%d", i%16), fmt.Sprintf("f%04d", i)), 1<<10)
	}
	snap, err := src.CreateSnapshot(context.Background(), "share", "s1")
	if err != nil {
		b.Fatal(err)
	}
	return src, snap
}

func writeRandomFile(b *testing.B, p string, n int) {
	b.Helper()
	data := make([]byte, n)
	rand.Read(data)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		b.Fatal(err)
	}
}

// countWriter counts what it discards.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// BenchmarkHotSendStream is the dir tar stream writer: a full send of the
// hot tree (manifest walk, content read and checked against the manifest,
// PAX headers) into a counter; bytes are the stream's.
func BenchmarkHotSendStream(b *testing.B) {
	src, _ := hotTree(b)
	ctx := context.Background()
	var size int64
	for b.Loop() {
		var c countWriter
		if err := src.Send(ctx, storage.SendRequest{Dataset: "share", To: "s1"}, &c); err != nil {
			b.Fatal(err)
		}
		size = c.n
	}
	b.SetBytes(size)
}

// BenchmarkHotReceiveStream is the dir tar stream reader: a full receive of
// the hot tree's stream (held in memory) into a fresh dataset each time,
// its commit (syncs, manifest of the received tree, read-only modes)
// included; bytes are the stream's.
func BenchmarkHotReceiveStream(b *testing.B) {
	src, snap := hotTree(b)
	ctx := context.Background()
	var stream bytes.Buffer
	if err := src.Send(ctx, storage.SendRequest{Dataset: "share", To: "s1"}, &stream); err != nil {
		b.Fatal(err)
	}
	dst, err := New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { removeTree(dst.root) })
	b.SetBytes(int64(stream.Len()))
	i := 0
	for b.Loop() {
		i++
		r, err := resume.NewReader(bytes.NewReader(stream.Bytes()), resume.Position{})
		if err != nil {
			b.Fatal(err)
		}
		ds := fmt.Sprintf("r%d", i)
		if _, err := dst.Receive(ctx, storage.ReceiveRequest{Dataset: ds, Name: "s1", SourceGUID: snap.GUID}, r); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := dst.DestroySnapshot(ctx, ds, "s1"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkHotNoChangeCycle is one replication of an unchanged share of
// many small files (FERRY_HOT_FILES, default 10,000 of 1 KiB in 100
// directories), as a run drives it on both hosts: snapshot, the target's
// greet (list, partials, anomalies), the incremental stream received, and
// Verify. Each step's mean wall and CPU time (user and system, all
// threads) per file are reported.
func BenchmarkHotNoChangeCycle(b *testing.B) {
	files := envInt(b, "FERRY_HOT_FILES", 10_000)
	ctx := context.Background()
	src, dst := newTestBackend(b), newTestBackend(b)
	b.Cleanup(func() { removeTree(src.root); removeTree(dst.root) })
	live := src.live("share")
	data := make([]byte, files<<10)
	rand.Read(data)
	for d := range 100 {
		if err := os.MkdirAll(filepath.Join(live, fmt.Sprintf("d%03d", d)), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	for i := range files {
		p := filepath.Join(live, fmt.Sprintf("d%03d", i*100/files), fmt.Sprintf("f%06d", i))
		if err := os.WriteFile(p, data[i<<10:(i+1)<<10], 0o644); err != nil {
			b.Fatal(err)
		}
	}
	replicate := func(from, to string) time.Duration {
		snap, err := src.CreateSnapshot(ctx, "share", to)
		if err != nil {
			b.Fatal(err)
		}
		var stream bytes.Buffer
		if err := src.Send(ctx, storage.SendRequest{Dataset: "share", From: from, To: to}, &stream); err != nil {
			b.Fatal(err)
		}
		r, err := resume.NewReader(bytes.NewReader(stream.Bytes()), resume.Position{})
		if err != nil {
			b.Fatal(err)
		}
		began := time.Now()
		if _, err := dst.Receive(ctx, storage.ReceiveRequest{Dataset: "share", Name: to, SourceGUID: snap.GUID, Parent: from}, r); err != nil {
			b.Fatal(err)
		}
		return time.Since(began)
	}
	replicate("", "s0")
	times := newStepTimes(b)
	timed := times.timed
	i := 0
	for b.Loop() {
		i++
		from, to := fmt.Sprintf("s%d", i-1), fmt.Sprintf("s%d", i)
		var snap storage.Snapshot
		timed("snapshot", func() (err error) { snap, err = src.CreateSnapshot(ctx, "share", to); return err })
		timed("greet", func() error {
			if _, _, err := dst.SnapshotsAndAnomalies(ctx, "share"); err != nil {
				return err
			}
			_, err := dst.Partials(ctx, "share")
			return err
		})
		var stream bytes.Buffer
		timed("send", func() error {
			return src.Send(ctx, storage.SendRequest{Dataset: "share", From: from, To: to}, &stream)
		})
		timed("receive", func() error {
			r, err := resume.NewReader(bytes.NewReader(stream.Bytes()), resume.Position{})
			if err != nil {
				return err
			}
			_, err = dst.Receive(ctx, storage.ReceiveRequest{Dataset: "share", Name: to, SourceGUID: snap.GUID, Parent: from}, r)
			return err
		})
		timed("verify", func() error {
			_, err := dst.Verify(ctx, storage.VerifyRequest{Dataset: "share", Name: to, SourceGUID: snap.GUID, Digest: snap.Digest})
			return err
		})
	}
	for step, d := range times.wall {
		b.ReportMetric(float64(d.Nanoseconds())/float64(i)/float64(files), step+"-ns/file")
		b.ReportMetric(float64(times.cpu[step].Nanoseconds())/float64(i)/float64(files), step+"-cpu-ns/file")
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// stepTimes adds up the wall and CPU time of a benchmark's named steps.
type stepTimes struct {
	b         *testing.B
	wall, cpu map[string]time.Duration
}

func newStepTimes(b *testing.B) *stepTimes {
	return &stepTimes{b: b, wall: map[string]time.Duration{}, cpu: map[string]time.Duration{}}
}

// timed runs f as step, failing the benchmark when it fails.
func (s *stepTimes) timed(step string, f func() error) {
	began, cpu0 := time.Now(), cpuTime(s.b)
	if err := f(); err != nil {
		s.b.Fatalf("%s: %v", step, err)
	}
	s.wall[step] += time.Since(began)
	s.cpu[step] += cpuTime(s.b) - cpu0
}

// envInt is the integer in the environment variable name, or def when it
// is unset; anything else fails the benchmark.
func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n := def
	if _, err := fmt.Sscan(v, &n); err != nil {
		b.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}
