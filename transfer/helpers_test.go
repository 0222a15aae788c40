package transfer

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/ferry-nas/ferry/certs"
	"github.com/ferry-nas/ferry/resume"
)

const (
	srcHost = "nas-a" // the source: runs the data server
	dstHost = "nas-b" // the target: runs the client
	badHost = "nas-c" // a third host of the same CA
)

// pki is a certificate directory made by the certs package.
type pki struct {
	dir      string
	otherDir string // a second CA that also issued dstHost
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), otherDir: t.TempDir()}
	_, _, err := certs.Init(p.dir, false)
	require.NoError(t, err)
	for _, h := range []string{srcHost, dstHost, badHost} {
		_, _, err := certs.Issue(p.dir, h, certs.IssueOptions{IPs: []net.IP{net.ParseIP("127.0.0.1")}})
		require.NoError(t, err)
	}
	_, _, err = certs.Init(p.otherDir, false)
	require.NoError(t, err)
	_, _, err = certs.Issue(p.otherDir, dstHost, certs.IssueOptions{})
	require.NoError(t, err)
	return p
}

func (p *pki) serverTLS(t testing.TB) *tls.Config {
	cfg, err := certs.ServerConfig(certs.HostFiles(p.dir, srcHost))
	require.NoError(t, err)
	return cfg
}

// clientTLS is the TLS config of host (issued by our CA) trusting our CA.
func (p *pki) clientTLS(t testing.TB, host string) *tls.Config {
	cfg, err := certs.ClientConfig(certs.HostFiles(p.dir, host), "")
	require.NoError(t, err)
	return cfg
}

// foreignClientTLS presents dstHost's certificate from the other CA.
func (p *pki) foreignClientTLS(t testing.TB) *tls.Config {
	f := certs.HostFiles(p.otherDir, dstHost)
	cfg, err := certs.ClientConfig(f, "")
	require.NoError(t, err)
	pool, err := certs.LoadCAPool(filepath.Join(p.dir, certs.CAFile))
	require.NoError(t, err)
	cfg.RootCAs = pool // it still trusts the real server
	return cfg
}

type env struct {
	t    testing.TB
	pki  *pki
	srv  *Server
	addr string
}

type envOpt func(*ServerConfig)

func newEnv(t testing.TB, opts ...envOpt) *env {
	t.Helper()
	p := newPKI(t)
	return newEnvWithPKI(t, p, opts...)
}

func testLogger(t testing.TB) *zap.Logger {
	return zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
}

func newEnvWithPKI(t testing.TB, p *pki, opts ...envOpt) *env {
	cfg := ServerConfig{TLS: p.serverTLS(t), IdleTimeout: 5 * time.Second}
	if _, ok := t.(*testing.T); ok {
		cfg.Logger = testLogger(t)
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := NewServer(cfg)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return &env{t: t, pki: p, srv: srv, addr: ln.Addr().String()}
}

// clientCfg is the target's client configuration with short, test-friendly
// retry timings.
func (e *env) clientCfg(host string) ClientConfig {
	cfg := ClientConfig{
		TLS:         e.pki.clientTLS(e.t, host),
		IdleTimeout: 5 * time.Second,
		MaxRetries:  6,
		Backoff:     20 * time.Millisecond,
		MaxBackoff:  200 * time.Millisecond,
	}
	if _, ok := e.t.(*testing.T); ok {
		cfg.Logger = testLogger(e.t)
	}
	return cfg
}

func (e *env) register(spec SessionSpec) string {
	e.t.Helper()
	if spec.Job == "" {
		spec.Job = "share01"
	}
	if spec.Peer == "" {
		spec.Peer = dstHost
	}
	tok, _, err := e.srv.Register(spec)
	require.NoError(e.t, err)
	return tok
}

func (e *env) fetch(token string) FetchRequest {
	return FetchRequest{Address: e.addr, ServerName: srcHost, Token: token}
}

func (e *env) open(ctx context.Context, cfg ClientConfig, req FetchRequest) (*Stream, error) {
	s, err := Dial(ctx, cfg, req)
	if err == nil {
		e.t.Cleanup(func() { s.Close() })
	}
	return s, err
}

// --- deterministic test data -------------------------------------------

const blockSize = 64 << 10

// dataKind selects what a generator produces.
type dataKind int

const (
	// random: incompressible pseudo-random bytes (PCG).
	random dataKind = iota
	// nasMix imitates a NAS share, block by block (64 KiB): about 50%
	// incompressible (photos, video, archives), 35% text and logs (words
	// drawn from a small vocabulary, compresses about 3x with zstd), 15%
	// zeros (sparse VM images, preallocated files). Cheap to generate: the
	// text comes from a 4 MiB pool at pseudo-random offsets.
	nasMix
)

// gen is a deterministic stream of size bytes; block i depends only on
// (seed, i), so any prefix is reproducible.
type gen struct {
	seed  uint64
	kind  dataKind
	size  int64
	off   int64
	blk   []byte
	blkIx int64
}

func newGen(seed uint64, kind dataKind, size int64) *gen {
	return &gen{seed: seed, kind: kind, size: size, blk: make([]byte, blockSize), blkIx: -1}
}

func (g *gen) Close() error { return nil }

func (g *gen) Read(p []byte) (int, error) {
	if g.off >= g.size {
		return 0, io.EOF
	}
	total := 0
	for len(p) > 0 && g.off < g.size {
		ix := g.off / blockSize
		if ix != g.blkIx {
			g.fill(ix)
		}
		end := min(int64(blockSize), g.size-ix*blockSize)
		n := copy(p, g.blk[g.off-ix*blockSize:end])
		p = p[n:]
		g.off += int64(n)
		total += n
	}
	return total, nil
}

func (g *gen) fill(ix int64) {
	g.blkIx = ix
	rng := rand.NewPCG(g.seed, uint64(ix))
	kind := "random"
	if g.kind == nasMix {
		switch r := rng.Uint64() % 100; {
		case r < 50:
		case r < 85:
			kind = "text"
		default:
			kind = "zero"
		}
	}
	switch kind {
	case "random":
		for i := 0; i < blockSize; i += 8 {
			binary.LittleEndian.PutUint64(g.blk[i:], rng.Uint64())
		}
	case "text":
		pool := textPool()
		at := rng.Uint64() % uint64(len(pool)-blockSize)
		copy(g.blk, pool[at:])
	case "zero":
		clear(g.blk)
	}
}

var (
	poolOnce sync.Once
	pool     []byte
)

func textPool() []byte {
	poolOnce.Do(func() {
		words := strings.Fields(`the a of to and in is for on that with snapshot share backup replica
			volume pool disk error warning info debug kernel btrfs zfs receive send transfer
			user admin photo document invoice report 2024 2025 config daemon started stopped
			connection timeout retry GET POST /api/v1/status 200 404 500 ms bytes`)
		rng := rand.New(rand.NewPCG(42, 42))
		var b strings.Builder
		for b.Len() < 4<<20 {
			fmt.Fprintf(&b, "%02d:%02d:%02d ", rng.IntN(24), rng.IntN(60), rng.IntN(60))
			for n := 4 + rng.IntN(12); n > 0; n-- {
				b.WriteString(words[rng.IntN(len(words))])
				b.WriteByte(' ')
			}
			b.WriteByte('\n')
		}
		pool = []byte(b.String())
	})
	return pool
}

var (
	digestMu    sync.Mutex
	digestCache = map[digestKey][resume.DigestSize]byte{}
)

type digestKey struct {
	alg              string
	seed, kind, size int64
}

// genDigest is the SHA-256 of a whole generated stream (what drain returns).
func genDigest(seed uint64, kind dataKind, size int64) [sha256.Size]byte {
	return genSum(resume.SHA256, seed, kind, size)
}

// streamDigest is the stream digest of a new stream (BLAKE3) of generated data.
func streamDigest(seed uint64, kind dataKind, size int64) [resume.DigestSize]byte {
	return genSum(resume.BLAKE3, seed, kind, size)
}

// genSum is the digest in algorithm alg of a whole generated stream.
func genSum(alg string, seed uint64, kind dataKind, size int64) [resume.DigestSize]byte {
	key := digestKey{alg, int64(seed), int64(kind), size}
	digestMu.Lock()
	defer digestMu.Unlock()
	if d, ok := digestCache[key]; ok {
		return d
	}
	h, err := resume.NewHash(alg)
	if err != nil {
		panic(err)
	}
	io.CopyBuffer(h, newGen(seed, kind, size), make([]byte, 1<<20))
	var d [resume.DigestSize]byte
	h.Sum(d[:0])
	digestCache[key] = d
	return d
}

// genOpen is a SessionSpec.Open over a generator; it counts its calls.
func genOpen(seed uint64, kind dataKind, size int64, calls *atomic.Int64) func(context.Context) (io.ReadCloser, error) {
	return func(context.Context) (io.ReadCloser, error) {
		if calls != nil {
			calls.Add(1)
		}
		return newGen(seed, kind, size), nil
	}
}

// drain reads s to the end and returns the SHA-256 of what it read.
func drain(s io.Reader) ([sha256.Size]byte, int64, error) {
	h := sha256.New()
	n, err := io.CopyBuffer(h, s, make([]byte, 256<<10))
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d, n, err
}

// --- a TCP relay that misbehaves on purpose ----------------------------

// relayPlan says what the relay does to one connection's server-to-client
// bytes; zero fields mean "never".
type relayPlan struct {
	cutAfter  int64 // close both sides after this many bytes
	flipAt    int64 // invert the byte at this index (1-based)
	holeAfter int64 // stop forwarding anything after this many bytes (blackhole); -1: from the start
}

type relay struct {
	ln     net.Listener
	target string
	plan   func(conn int) relayPlan
	n      atomic.Int64
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newRelay(t testing.TB, target string, plan func(conn int) relayPlan) *relay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r := &relay{ln: ln, target: target, plan: plan}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(r.close)
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) close() {
	r.ln.Close()
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *relay) track(c net.Conn) {
	r.mu.Lock()
	r.conns = append(r.conns, c)
	r.mu.Unlock()
}

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		client, err := r.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", r.target)
		if err != nil {
			client.Close()
			continue
		}
		r.track(client)
		r.track(server)
		plan := r.plan(int(r.n.Add(1) - 1))
		r.wg.Add(2)
		var holed atomic.Bool
		holed.Store(plan.holeAfter < 0)
		go func() { // client -> server
			defer r.wg.Done()
			defer server.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := client.Read(buf)
				if n > 0 && !holed.Load() {
					if _, err := server.Write(buf[:n]); err != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
		go func() { // server -> client
			defer r.wg.Done()
			defer client.Close()
			buf := make([]byte, 32<<10)
			var done int64
			for {
				n, err := server.Read(buf)
				if n > 0 && !holed.Load() {
					b := buf[:n]
					if plan.cutAfter > 0 && done+int64(n) >= plan.cutAfter {
						client.Write(b[:plan.cutAfter-done])
						server.Close()
						return
					}
					if plan.flipAt > 0 && done < plan.flipAt && plan.flipAt <= done+int64(n) {
						b[plan.flipAt-done-1] ^= 0xff
					}
					if plan.holeAfter > 0 && done+int64(n) >= plan.holeAfter {
						b = b[:plan.holeAfter-done]
						holed.Store(true)
					}
					done += int64(n)
					if _, err := client.Write(b); err != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

func mustPosition(t testing.TB, s resume.Stream) resume.Position {
	p := s.Position()
	require.NotNil(t, p.HashState)
	return p
}

func tlsDial(addr string, cfg *tls.Config) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return tls.DialWithDialer(d, "tcp", addr, cfg)
}
