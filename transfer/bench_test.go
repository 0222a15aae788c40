package transfer

import (
	"context"
	"io"
	"syscall"
	"testing"
)

// BenchmarkTransfer1GiB streams 1 GiB through the real server and client over
// loopback TLS 1.3, plain and zstd.
//
// The data imitates a NAS share (see nasMix): per 64 KiB block, about 50%
// incompressible pseudo-random bytes (photos, video, archives), 35% text and
// logs (about 3x compressible) and 15% zeros (sparse images). It is generated
// on the fly from a PRNG and a 4 MiB text pool, so the source costs little
// next to TLS, hashing and compression.
//
// MB/s comes from b.SetBytes (stream bytes, not wire bytes); peak-rss-MiB is
// the process's maximum resident set size (getrusage), which includes the
// test binary itself.
func BenchmarkTransfer1GiB(b *testing.B) {
	const size = 1 << 30
	for _, compress := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "zstd"}[compress]
		b.Run(name, func(b *testing.B) {
			e := newEnv(b)
			cfg := e.clientCfg(dstHost)
			textPool()
			b.SetBytes(size)
			b.ResetTimer()
			var wire int64
			for i := 0; i < b.N; i++ {
				tok := e.register(SessionSpec{Open: genOpen(uint64(100+i), nasMix, size, nil), Compress: compress})
				req := e.fetch(tok)
				req.Compress = compress
				s, err := Dial(context.Background(), cfg, req)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.CopyBuffer(io.Discard, s, make([]byte, 256<<10))
				if err != nil || n != size {
					b.Fatalf("read %d bytes: %v", n, err)
				}
				wire += s.Stats().WireBytes
				s.Close()
			}
			b.StopTimer()
			var ru syscall.Rusage
			if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
				b.ReportMetric(float64(ru.Maxrss)/1024, "peak-rss-MiB") // Maxrss is in KiB on Linux
			}
			b.ReportMetric(float64(wire)/float64(int64(b.N)*size), "wire/payload")
		})
	}
}
