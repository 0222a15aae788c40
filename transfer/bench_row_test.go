package transfer

import (
	"context"
	"crypto/tls"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-nas/ferry/internal/benchrec"
)

// The data plane's rows of docs/BENCHMARKS.md: 1 GiB of NAS-like data
// (nasMix: half incompressible, a third text, the rest zeros) through the
// real server and client over loopback TLS 1.3, next to a bare TLS 1.3
// copy with the same cipher suite and a raw TCP copy of the same bytes.
// Every tool reads the same generator, so the source costs the same.

const (
	dpTable    = "Data plane (loopback, 1 GiB, both ends on this machine)"
	dpCase     = "1 GiB, NAS-like data"
	dpPlain    = "ferry plain"
	dpZstd     = "ferry zstd"
	dpBareTLS  = "bare TLS 1.3"
	dpRawTCP   = "raw TCP"
	dpRuns     = 3
	dpSize     = 1 << 30
	dpSeed     = 2026
	dpCopyBuf  = 256 << 10
	dpSendBuf  = 1 << 20
	dpCipherOf = "cipher"
)

// BenchmarkRowDataPlane measures ferry plain and zstd, bare TLS 1.3 and raw
// TCP, interleaved run by run (the order rotates), and checks every copy:
// ferry's by its own BLAKE3 trailer against the generator's digest, the
// ceilings' by a CRC32C of what arrived (the cheapest check that still
// catches a wrong copy; it is timed, so it slightly favours ferry).
func BenchmarkRowDataPlane(b *testing.B) {
	e := newEnv(b)
	cfg := e.clientCfg(dstHost)
	textPool()
	wantSum := streamDigest(dpSeed, nasMix, dpSize)
	h := crc32.New(castagnoli)
	io.CopyBuffer(h, newGen(dpSeed, nasMix, dpSize), make([]byte, dpSendBuf))
	wantCRC := h.Sum32()

	bare := newCeiling(b, func(l net.Listener) net.Listener {
		return tls.NewListener(l, ceilingServerTLS(e.srv.tls))
	})
	raw := newCeiling(b, func(l net.Listener) net.Listener { return l })
	var cipher uint16
	ferry := func(compress bool) func() (float64, error) {
		return func() (float64, error) {
			tok := e.register(SessionSpec{Open: genOpen(dpSeed, nasMix, dpSize, nil), Compress: compress})
			req := e.fetch(tok)
			req.Compress = compress
			start := time.Now()
			s, err := Dial(context.Background(), cfg, req)
			if err != nil {
				return 0, err
			}
			defer s.Close()
			cipher = s.current().ConnectionState().CipherSuite
			n, err := io.CopyBuffer(io.Discard, s, make([]byte, dpCopyBuf))
			el := time.Since(start)
			if err != nil || n != dpSize || s.Sum() != wantSum {
				return 0, fmt.Errorf("ferry copied %d bytes (%s %x, want %x): %v", n, s.Algorithm(), s.Sum(), wantSum, err)
			}
			return mbps(el), nil
		}
	}
	tlsCfg := e.pki.clientTLS(b, dstHost)
	tlsCfg.ServerName = srcHost
	tlsCfg.NextProtos = []string{alpn}
	tlsCfg.MinVersion = tls.VersionTLS13
	var bareCipher uint16
	tools := []struct {
		name string
		run  func() (float64, error)
	}{
		{dpPlain, ferry(false)},
		{dpZstd, ferry(true)},
		{dpBareTLS, func() (float64, error) {
			return bare.copy(wantCRC, func(c net.Conn) (net.Conn, error) {
				tc := tls.Client(c, tlsCfg)
				if err := tc.Handshake(); err != nil {
					return nil, err
				}
				bareCipher = tc.ConnectionState().CipherSuite
				return tc, nil
			})
		}},
		{dpRawTCP, func() (float64, error) {
			return raw.copy(wantCRC, func(c net.Conn) (net.Conn, error) { return c, nil })
		}},
	}
	values := map[string][]float64{}
	cpu := map[string][]float64{} // CPU ns per stream byte, both ends: steadier than MB/s on a shared box
	for run := range dpRuns {
		for k := range tools {
			t := tools[(k+run)%len(tools)]
			before := cpuTime()
			v, err := t.run()
			if err != nil {
				b.Fatalf("%s, run %d: %v", t.name, run+1, err)
			}
			values[t.name] = append(values[t.name], v)
			cpu[t.name] = append(cpu[t.name], float64(cpuTime()-before)/dpSize)
		}
	}
	perByte := func(tool string) string { return fmt.Sprintf("%.2f ns", benchrec.Median(cpu[tool])) }
	// Cores in use: CPU per byte times bytes per second.
	cores := func(tool string) string {
		return fmt.Sprintf("%.1f", benchrec.Median(cpu[tool])*benchrec.Median(values[tool])/1e3)
	}
	b.Logf("CPU per stream byte, both ends and the generator: plain %s, zstd %s, bare TLS %s, raw TCP %s",
		perByte(dpPlain), perByte(dpZstd), perByte(dpBareTLS), perByte(dpRawTCP))
	if cipher != bareCipher {
		b.Fatalf("ferry negotiated %s, the bare TLS copy %s: the ceiling must use the same cipher suite",
			tls.CipherSuiteName(cipher), tls.CipherSuiteName(bareCipher))
	}
	suite := tls.CipherSuiteName(cipher)
	benchrec.Record(b, benchrec.Row{Table: dpTable, Case: dpCase, Tool: dpPlain, Unit: benchrec.MBps, Values: values[dpPlain],
		Compare: []benchrec.Compare{{Tool: dpBareTLS, Min: 0.85}, {Tool: dpRawTCP}},
		Note: "server and client of transfer/ over TLS 1.3 (" + suite + "): frames, CRC32C, BLAKE3 on both ends. CPU per stream byte (both ends, generator included): " +
			perByte(dpPlain) + " on " + cores(dpPlain) + " cores vs " + perByte(dpBareTLS) + " on " + cores(dpBareTLS) + " cores for bare TLS; " + dpPlainNote})
	benchrec.Record(b, benchrec.Row{Table: dpTable, Case: dpCase, Tool: dpZstd, Unit: benchrec.MBps, Values: values[dpZstd],
		Compare: []benchrec.Compare{{Tool: dpBareTLS}},
		Note:    "as plain, each 1 MiB frame zstd-compressed (default level) when that makes it smaller; MB/s of stream bytes"})
	benchrec.Record(b, benchrec.Row{Table: dpTable, Case: dpCase, Tool: dpBareTLS, Unit: benchrec.MBps, Values: values[dpBareTLS],
		Note: "Go crypto/tls, same certificates and cipher suite (" + suite + "), 1 MiB writes, no framing or digest; CRC32C of what arrived checks the copy"})
	benchrec.Record(b, benchrec.Row{Table: dpTable, Case: dpCase, Tool: dpRawTCP, Unit: benchrec.MBps, Values: values[dpRawTCP],
		Note: "the same bytes over plain loopback TCP, 1 MiB writes; CRC32C of what arrived checks the copy"})
}

// dpPlainNote says where ferry's CPU goes (pprof of this benchmark).
const dpPlainNote = "the extra CPU is mostly the stream digest on both ends (pprof: BLAKE3 ~0.22 ns per byte per end, where SHA-256 took ~0.5 and ferry plain 2.05-2.17 ns per byte in all; BenchmarkHot*); each end hashes on its own goroutine, so ferry can use both cores and they are then the bound; fewer cores in use above means other load on the machine"

// cpuTime is the CPU this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func mbps(d time.Duration) float64 { return float64(dpSize) / 1e6 / d.Seconds() }

// ceilingServerTLS is the data server's TLS configuration for a copy without
// ferry's protocol: it accepts the client's certificate without checking it
// after the handshake (ferry checks it once per connection, not per byte).
func ceilingServerTLS(t *tls.Config) *tls.Config {
	c := t.Clone()
	c.NextProtos = []string{alpn}
	return c
}

// ceiling is a loopback server that writes the generator's dpSize bytes to
// every connection, with nothing around them.
type ceiling struct {
	b    *testing.B
	ln   net.Listener
	wg   sync.WaitGroup
	errs chan error
}

func newCeiling(b *testing.B, wrap func(net.Listener) net.Listener) *ceiling {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	c := &ceiling{b: b, ln: wrap(l), errs: make(chan error, 1)}
	c.wg.Add(1)
	go c.serve()
	b.Cleanup(func() {
		c.ln.Close()
		c.wg.Wait()
	})
	return c
}

func (c *ceiling) serve() {
	defer c.wg.Done()
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, dpSendBuf)
		_, err = io.CopyBuffer(writerOnly{conn}, readerOnly{newGen(dpSeed, nasMix, dpSize)}, buf)
		conn.Close()
		c.errs <- err
	}
}

// copy dials, reads everything the server sends and checks its CRC32C.
func (c *ceiling) copy(want uint32, wrap func(net.Conn) (net.Conn, error)) (float64, error) {
	start := time.Now()
	raw, err := net.Dial("tcp", c.ln.Addr().String())
	if err != nil {
		return 0, err
	}
	conn, err := wrap(raw)
	if err != nil {
		raw.Close()
		return 0, err
	}
	defer conn.Close()
	h := crc32.New(castagnoli)
	n, err := io.CopyBuffer(h, readerOnly{conn}, make([]byte, dpCopyBuf))
	el := time.Since(start)
	if serr := <-c.errs; serr != nil {
		return 0, fmt.Errorf("send: %w", serr)
	}
	if err != nil || n != dpSize || h.Sum32() != want {
		return 0, fmt.Errorf("copied %d bytes (crc32c %08x, want %08x): %v", n, h.Sum32(), want, err)
	}
	return mbps(el), nil
}

// readerOnly and writerOnly hide ReadFrom/WriteTo so that io.CopyBuffer uses
// the given buffer (no splice or sendfile shortcut ferry could not take).
type readerOnly struct{ io.Reader }
type writerOnly struct{ io.Writer }
