package dir

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
)

// BenchmarkHotFullCopy is a full replication of a tree of large and small
// incompressible files (FERRY_HOT_MB, default 256 MiB: half in files of
// 32 MiB, half in files of 64 KiB) between two backends on the same
// filesystem, with the default checkpoint cadence: the snapshot, then the
// stream sent and received at once through a pipe (commit included). Each
// step's mean wall and CPU time (user and system, all threads) are
// reported; bytes are the tree's.
func BenchmarkHotFullCopy(b *testing.B) {
	mb := envInt(b, "FERRY_HOT_MB", 256)
	ctx := context.Background()
	newBackend := func() *Backend {
		root := b.TempDir()
		b.Cleanup(func() { removeTree(root) })
		var opts []Option
		if n := envInt(b, "FERRY_HOT_CKPT_MB", -1); n >= 0 {
			opts = append(opts, WithCheckpointEvery(int64(n)<<20, time.Hour))
		}
		be, err := New(root, opts...)
		if err != nil {
			b.Fatal(err)
		}
		return be
	}
	src, dst := newBackend(), newBackend()
	live := src.live("share")
	half := int64(mb) << 19
	for i := range half / (32 << 20) {
		writeRandomFile(b, filepath.Join(live, fmt.Sprintf("big-%02d", i)), 32<<20)
	}
	for i := range half / (64 << 10) {
		writeRandomFile(b, filepath.Join(live, fmt.Sprintf("small-%02d", i%32), fmt.Sprintf("f%05d", i)), 64<<10)
	}
	if err := syncFS(live); err != nil {
		b.Fatal(err)
	}
	times := newStepTimes(b)
	timed := times.timed
	i := 0
	for b.Loop() {
		i++
		name, ds := fmt.Sprintf("s%d", i), fmt.Sprintf("r%d", i)
		var snap storage.Snapshot
		timed("snapshot", func() (err error) { snap, err = src.CreateSnapshot(ctx, "share", name); return err })
		timed("stream", func() error {
			pr, pw := io.Pipe()
			sent := make(chan error, 1)
			go func() {
				err := src.Send(ctx, storage.SendRequest{Dataset: "share", To: name}, pw)
				pw.CloseWithError(err)
				sent <- err
			}()
			r, err := resume.NewReader(pr, resume.Position{})
			if err != nil {
				return err
			}
			_, err = dst.Receive(ctx, storage.ReceiveRequest{Dataset: ds, Name: name, SourceGUID: snap.GUID}, r)
			pr.CloseWithError(io.ErrClosedPipe)
			if serr := <-sent; err == nil && serr != io.ErrClosedPipe {
				err = serr
			}
			return err
		})
		b.StopTimer()
		if err := src.DestroySnapshot(ctx, "share", name); err != nil {
			b.Fatal(err)
		}
		if err := dst.DestroySnapshot(ctx, ds, name); err != nil {
			b.Fatal(err)
		}
		if err := syncFS(live); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.SetBytes(int64(mb) << 20)
	for step, d := range times.wall {
		b.ReportMetric(d.Seconds()/float64(i), step+"-s")
		b.ReportMetric(times.cpu[step].Seconds()/float64(i), step+"-cpu-s")
	}
}
