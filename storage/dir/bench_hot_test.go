package dir

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"

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
