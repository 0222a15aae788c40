package transfer

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ferry-nas/ferry/resume"
)

func TestRoundTrip(t *testing.T) {
	const size = 256 << 20
	for _, tc := range []struct {
		name     string
		kind     dataKind
		compress bool
	}{
		{"plain", random, false},
		{"zstd", nasMix, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			tok := e.register(SessionSpec{Open: genOpen(1, tc.kind, size, nil), Compress: tc.compress})
			req := e.fetch(tok)
			req.Compress = tc.compress
			s, err := e.open(context.Background(), e.clientCfg(dstHost), req)
			require.NoError(t, err)
			got, n, err := drain(s)
			require.NoError(t, err)
			assert.Equal(t, int64(size), n)
			assert.Equal(t, genDigest(1, tc.kind, size), got, "digest of the bytes read")
			want := streamDigest(1, tc.kind, size)
			assert.Equal(t, resume.BLAKE3, s.Algorithm(), "a new stream's digest")
			assert.Equal(t, want, s.Sum(), "stream's own digest")
			pos := s.Position()
			assert.Equal(t, int64(size), pos.Offset)
			assert.Equal(t, resume.BLAKE3, pos.Digest)
			d, err := pos.PrefixDigest()
			require.NoError(t, err)
			assert.Equal(t, want, d)

			st := s.Stats()
			assert.Equal(t, int64(size), st.PayloadBytes)
			assert.Zero(t, st.Reconnects)
			if tc.compress {
				assert.Less(t, st.WireBytes, int64(size)*3/4, "NAS-like data must shrink with zstd")
			} else {
				assert.Greater(t, st.WireBytes, int64(size))
			}
			t.Logf("%s: %d payload bytes, %d wire bytes", tc.name, st.PayloadBytes, st.WireBytes)

			info, ok := e.srv.Session(tok)
			require.True(t, ok)
			assert.Equal(t, "complete", info.State)
			assert.Equal(t, want, info.Digest)
			assert.Equal(t, resume.BLAKE3, info.DigestAlgorithm)
		})
	}
}

func TestEmptyStream(t *testing.T) {
	e := newEnv(t)
	tok := e.register(SessionSpec{Open: genOpen(1, random, 0, nil)})
	s, err := e.open(context.Background(), e.clientCfg(dstHost), e.fetch(tok))
	require.NoError(t, err)
	got, n, err := drain(s)
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Equal(t, genDigest(1, random, 0), got)
}

func TestResumeAfterCut(t *testing.T) {
	const size = 48 << 20
	for _, compress := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "zstd"}[compress], func(t *testing.T) {
			e := newEnv(t)
			var opens atomic.Int64
			tok := e.register(SessionSpec{Open: genOpen(2, nasMix, size, &opens), Compress: compress})
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
			cut := 1<<20 + rng.Int64N(16<<20)
			t.Logf("cutting the first connection after %d bytes", cut)
			r := newRelay(t, e.addr, func(i int) relayPlan {
				if i == 0 {
					return relayPlan{cutAfter: cut}
				}
				return relayPlan{}
			})
			req := e.fetch(tok)
			req.Address = r.addr()
			req.Compress = compress
			s, err := e.open(context.Background(), e.clientCfg(dstHost), req)
			require.NoError(t, err)
			got, n, err := drain(s)
			require.NoError(t, err)
			assert.Equal(t, int64(size), n)
			assert.Equal(t, genDigest(2, nasMix, size), got)
			st := s.Stats()
			assert.GreaterOrEqual(t, st.Reconnects, 1)
			assert.Equal(t, int64(size), st.PayloadBytes)
			assert.GreaterOrEqual(t, opens.Load(), int64(2), "the source regenerates the stream for the resume")
		})
	}
}

// TestResumeFromSavedPosition persists a Position (as JSON, like a receiver
// would), closes the stream, and continues in a new Open with the same token.
func TestResumeFromSavedPosition(t *testing.T) {
	const size = 24 << 20
	e := newEnv(t)
	tok := e.register(SessionSpec{Open: genOpen(3, random, size, nil)})
	cfg := e.clientCfg(dstHost)
	s1, err := e.open(context.Background(), cfg, e.fetch(tok))
	require.NoError(t, err)
	first := make([]byte, 10<<20+12345) // not a frame boundary
	_, err = io.ReadFull(s1, first)
	require.NoError(t, err)
	saved, err := json.Marshal(mustPosition(t, s1))
	require.NoError(t, err)
	require.NoError(t, s1.Close())

	var pos resume.Position
	require.NoError(t, json.Unmarshal(saved, &pos))
	assert.Equal(t, int64(len(first)), pos.Offset)
	req := e.fetch(tok)
	req.From = pos
	s2, err := e.open(context.Background(), cfg, req)
	require.NoError(t, err)
	_, n, err := drain(s2)
	require.NoError(t, err)
	assert.Equal(t, int64(size-len(first)), n)
	assert.Equal(t, streamDigest(3, random, size), s2.Sum(), "the resumed stream's digest covers the prefix too")
	assert.Equal(t, int64(size), s2.Position().Offset)

	// Resuming at the very end (everything received, trailer lost) works too.
	tok2 := e.register(SessionSpec{Open: genOpen(3, random, 1<<20, nil)})
	s3, err := e.open(context.Background(), cfg, e.fetch(tok2))
	require.NoError(t, err)
	_, err = io.ReadFull(s3, make([]byte, 1<<20))
	require.NoError(t, err)
	end := s3.Position()
	s3.Close()
	req = e.fetch(tok2)
	req.From = end
	s4, err := e.open(context.Background(), cfg, req)
	require.NoError(t, err)
	_, n, err = drain(s4)
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Equal(t, streamDigest(3, random, 1<<20), s4.Sum())
}

func TestCorruptFrameIsRefusedAndResumed(t *testing.T) {
	const size = 16 << 20
	for _, compress := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "zstd"}[compress], func(t *testing.T) {
			e := newEnv(t)
			var flipped atomic.Bool
			e.srv.corrupt = func(job string, seq int64, payload []byte) {
				if seq == 5 && flipped.CompareAndSwap(false, true) {
					payload[len(payload)/2] ^= 0x40
				}
			}
			tok := e.register(SessionSpec{Open: genOpen(4, nasMix, size, nil), Compress: compress})
			req := e.fetch(tok)
			req.Compress = compress
			s, err := e.open(context.Background(), e.clientCfg(dstHost), req)
			require.NoError(t, err)
			got, n, err := drain(s)
			require.NoError(t, err)
			assert.True(t, flipped.Load())
			assert.Equal(t, int64(size), n)
			assert.Equal(t, genDigest(4, nasMix, size), got)
			assert.Equal(t, 1, s.Stats().Reconnects)
		})
	}
}

func TestCorruptTLSRecordResumes(t *testing.T) {
	const size = 16 << 20
	e := newEnv(t)
	tok := e.register(SessionSpec{Open: genOpen(5, random, size, nil)})
	r := newRelay(t, e.addr, func(i int) relayPlan {
		if i == 0 {
			return relayPlan{flipAt: 3<<20 + 777}
		}
		return relayPlan{}
	})
	req := e.fetch(tok)
	req.Address = r.addr()
	s, err := e.open(context.Background(), e.clientCfg(dstHost), req)
	require.NoError(t, err)
	got, _, err := drain(s)
	require.NoError(t, err)
	assert.Equal(t, genDigest(5, random, size), got)
	assert.GreaterOrEqual(t, s.Stats().Reconnects, 1)
}

// flipFlop regenerates different bytes after its first Open.
func flipFlop(size int64) func(context.Context) (io.ReadCloser, error) {
	var calls atomic.Int64
	return func(context.Context) (io.ReadCloser, error) {
		if calls.Add(1) == 1 {
			return newGen(6, random, size), nil
		}
		return newGen(7, random, size), nil
	}
}

func TestResumeMismatch(t *testing.T) {
	const size = 8 << 20
	t.Run("separate open", func(t *testing.T) {
		e := newEnv(t)
		tok := e.register(SessionSpec{Open: flipFlop(size)})
		cfg := e.clientCfg(dstHost)
		s, err := e.open(context.Background(), cfg, e.fetch(tok))
		require.NoError(t, err)
		_, err = io.ReadFull(s, make([]byte, 3<<20))
		require.NoError(t, err)
		pos := s.Position()
		s.Close()
		req := e.fetch(tok)
		req.From = pos
		_, err = e.open(context.Background(), cfg, req)
		require.Error(t, err)
		assert.ErrorIs(t, err, ErrResumeMismatch)
		var re *RefusedError
		require.ErrorAs(t, err, &re)
		assert.Equal(t, CodeResumeMismatch, re.Code)
		assert.Contains(t, re.Message, "start over")

		// The caller discards and starts over from byte 0 with the same token.
		s2, err := e.open(context.Background(), cfg, e.fetch(tok))
		require.NoError(t, err)
		got, _, err := drain(s2)
		require.NoError(t, err)
		assert.Equal(t, genDigest(7, random, size), got)
	})
	t.Run("after a cut", func(t *testing.T) {
		e := newEnv(t)
		tok := e.register(SessionSpec{Open: flipFlop(size)})
		r := newRelay(t, e.addr, func(i int) relayPlan {
			if i == 0 {
				return relayPlan{cutAfter: 2 << 20}
			}
			return relayPlan{}
		})
		req := e.fetch(tok)
		req.Address = r.addr()
		s, err := e.open(context.Background(), e.clientCfg(dstHost), req)
		require.NoError(t, err)
		_, _, err = drain(s)
		assert.ErrorIs(t, err, ErrResumeMismatch)
	})
}

// TestDigestMismatchIsNotEOF: when the trailer does not match what the
// client delivered, Read fails with ErrDigestMismatch instead of io.EOF and
// the token is not burned. The client's running hash is swapped for one that
// missed the first MiB, as a stand-in for bytes damaged past the CRC.
func TestDigestMismatchIsNotEOF(t *testing.T) {
	e := newEnv(t)
	tok := e.register(SessionSpec{Open: genOpen(8, random, 4<<20, nil)})
	s, err := e.open(context.Background(), e.clientCfg(dstHost), e.fetch(tok))
	require.NoError(t, err)
	_, err = io.ReadFull(s, make([]byte, 1<<20))
	require.NoError(t, err)
	// Make the client's running hash differ from the bytes it delivered.
	s.hmu.Lock()
	s.hp.stop()
	s.h = sha256.New()
	s.hp = newHashPipe(s.h)
	s.hmu.Unlock()
	_, _, err = drain(s)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrDigestMismatch)
	info, _ := e.srv.Session(tok)
	assert.NotEqual(t, "complete", info.State, "an unverified stream must not burn the token")
}

func TestSourceErrors(t *testing.T) {
	e := newEnv(t)
	cfg := e.clientCfg(dstHost)

	tok := e.register(SessionSpec{Open: func(context.Context) (io.ReadCloser, error) {
		return nil, errors.New("snapshot ferry_x not found")
	}})
	_, err := e.open(context.Background(), cfg, e.fetch(tok))
	var se *SourceError
	require.ErrorAs(t, err, &se)
	assert.Contains(t, se.Message, "snapshot ferry_x not found")

	tok = e.register(SessionSpec{Open: func(context.Context) (io.ReadCloser, error) {
		return struct {
			io.Reader
			io.Closer
		}{io.MultiReader(newGen(9, random, 3<<20), failingReader{}), io.NopCloser(nil)}, nil
	}})
	s, err := e.open(context.Background(), cfg, e.fetch(tok))
	require.NoError(t, err)
	_, n, err := drain(s)
	require.ErrorAs(t, err, &se)
	assert.Contains(t, se.Message, "btrfs send: exit status 1")
	assert.Equal(t, int64(3<<20), n)
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("btrfs send: exit status 1") }

func TestRefusals(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	p := newPKI(t)
	e := newEnvWithPKI(t, p, func(c *ServerConfig) { c.Logger = zap.New(core) })
	ctx := context.Background()
	var opens atomic.Int64
	open := genOpen(10, random, 2<<20, &opens)

	type tc struct {
		name   string
		setup  func() (ClientConfig, FetchRequest)
		want   error
		reason string
	}
	cases := []tc{
		{"unknown token", func() (ClientConfig, FetchRequest) {
			return e.clientCfg(dstHost), e.fetch("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
		}, ErrUnknownToken, "unknown token"},
		{"expired", func() (ClientConfig, FetchRequest) {
			tok := e.register(SessionSpec{Open: open, TTL: 20 * time.Millisecond})
			time.Sleep(50 * time.Millisecond)
			return e.clientCfg(dstHost), e.fetch(tok)
		}, ErrExpired, "expired"},
		{"revoked", func() (ClientConfig, FetchRequest) {
			tok := e.register(SessionSpec{Open: open})
			require.True(t, e.srv.Revoke(tok))
			return e.clientCfg(dstHost), e.fetch(tok)
		}, ErrExpired, "expired"},
		{"wrong peer", func() (ClientConfig, FetchRequest) {
			tok := e.register(SessionSpec{Open: open})
			return e.clientCfg(badHost), e.fetch(tok)
		}, ErrWrongPeer, "wrong peer"},
		{"no client certificate", func() (ClientConfig, FetchRequest) {
			tok := e.register(SessionSpec{Open: open})
			cfg := e.clientCfg(dstHost)
			cfg.TLS.Certificates = nil
			return cfg, e.fetch(tok)
		}, ErrNoCertificate, "no client certificate"},
		{"certificate from another CA", func() (ClientConfig, FetchRequest) {
			tok := e.register(SessionSpec{Open: open})
			cfg := e.clientCfg(dstHost)
			cfg.TLS = p.foreignClientTLS(t)
			return cfg, e.fetch(tok)
		}, ErrUntrustedCertificate, "untrusted certificate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := opens.Load()
			logs.TakeAll()
			cfg, req := c.setup()
			s, err := Dial(ctx, cfg, req)
			require.Error(t, err)
			assert.Nil(t, s, "nothing may be streamed")
			assert.ErrorIs(t, err, c.want)
			var re *RefusedError
			require.ErrorAs(t, err, &re)
			assert.NotEmpty(t, re.Message)
			assert.Equal(t, before, opens.Load(), "the source stream must not even be opened")
			refusals := logs.FilterMessage("data-plane connection refused").All()
			require.Len(t, refusals, 1, "one attempt, one log line: refusals are not retried")
			f := refusals[0].ContextMap()
			assert.Equal(t, c.reason, f["reason"])
			assert.NotEmpty(t, f["remote"])
			if c.want != ErrUnknownToken && c.want != ErrNoCertificate && c.want != ErrUntrustedCertificate {
				assert.Equal(t, "share01", f["job"])
				assert.Equal(t, dstHost, f["peer"])
			}
		})
	}

	t.Run("replayed", func(t *testing.T) {
		tok := e.register(SessionSpec{Open: open})
		s, err := Dial(ctx, e.clientCfg(dstHost), e.fetch(tok))
		require.NoError(t, err)
		_, _, err = drain(s)
		require.NoError(t, err)
		s.Close()
		before := opens.Load()
		_, err = Dial(ctx, e.clientCfg(dstHost), e.fetch(tok))
		assert.ErrorIs(t, err, ErrReplayed)
		assert.Equal(t, before, opens.Load())
		// Resuming a completed transfer is a replay too.
		req := e.fetch(tok)
		req.From = s.Position()
		_, err = Dial(ctx, e.clientCfg(dstHost), req)
		assert.ErrorIs(t, err, ErrReplayed)
	})

	t.Run("concurrent use", func(t *testing.T) {
		tok := e.register(SessionSpec{Open: open})
		first, err := Dial(ctx, e.clientCfg(dstHost), e.fetch(tok))
		require.NoError(t, err)
		defer first.Close()
		cfg := e.clientCfg(dstHost)
		cfg.MaxRetries = 2 // in-use is retried (a stale connection of our own) but bounded
		logs.TakeAll()
		_, err = Dial(ctx, cfg, e.fetch(tok))
		assert.ErrorIs(t, err, ErrInUse)
		assert.Len(t, logs.FilterMessage("data-plane connection refused").All(), 3)
		// The first connection is unaffected.
		got, _, err := drain(first)
		require.NoError(t, err)
		assert.Equal(t, genDigest(10, random, 2<<20), got)
	})

	t.Run("server name mismatch is not retried", func(t *testing.T) {
		tok := e.register(SessionSpec{Open: open})
		req := e.fetch(tok)
		req.ServerName = "nas-x"
		logs.TakeAll()
		_, err := Dial(ctx, e.clientCfg(dstHost), req)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "nas-x")
		assert.Contains(t, err.Error(), "ferry certs issue")
		assert.Eventually(t, func() bool {
			return logs.FilterMessage("data-plane handshake failed").Len() == 1
		}, 5*time.Second, 10*time.Millisecond, "the server logs the failed handshake once: the client does not retry")
	})

	t.Run("malformed token", func(t *testing.T) {
		_, err := Dial(ctx, e.clientCfg(dstHost), e.fetch("nope"))
		require.Error(t, err)
	})
}

// refusalOf sends r as a client would, bypassing Dial's checks, and
// returns the code and message of the source's refusal.
func refusalOf(t *testing.T, e *env, r request) (Code, string) {
	t.Helper()
	cfg := e.pki.clientTLS(t, dstHost).Clone()
	cfg.ServerName = srcHost
	cfg.NextProtos = []string{alpn}
	conn, err := tlsDial(e.addr, cfg)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write(r.marshal())
	require.NoError(t, err)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	typ, p, err := newFrameReader(conn, maxControl).next()
	require.NoError(t, err)
	require.Equal(t, frameRefused, typ)
	return Code(uint16(p[0])<<8 | uint16(p[1])), string(p[2:])
}

func TestBadVersionRefused(t *testing.T) {
	code, msg := refusalOf(t, newEnv(t), request{version: 99})
	assert.Equal(t, CodeBadVersion, code)
	assert.Contains(t, msg, fmt.Sprintf("protocol %d", ProtocolVersion))
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t)
	tok := e.register(SessionSpec{Open: genOpen(11, random, 64<<20, nil)})
	r := newRelay(t, e.addr, func(i int) relayPlan {
		if i == 0 {
			return relayPlan{holeAfter: 2 << 20}
		}
		return relayPlan{holeAfter: -1} // later connections hang in the handshake
	})
	cfg := e.clientCfg(dstHost)
	cfg.IdleTimeout = 300 * time.Millisecond
	cfg.MaxRetries = 2
	cfg.Backoff = 10 * time.Millisecond
	req := e.fetch(tok)
	req.Address = r.addr()
	s, err := e.open(context.Background(), cfg, req)
	require.NoError(t, err)
	start := time.Now()
	_, n, err := drain(s)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrIdleTimeout)
	assert.Contains(t, err.Error(), "giving up after 3 failed attempts")
	assert.Less(t, n, int64(64<<20))
	assert.Less(t, time.Since(start), 20*time.Second)
	// The Position still says exactly what was delivered.
	assert.Equal(t, n, s.Position().Offset)
}

// TestKeepalive: a source that is slow to start and stalls mid-stream for
// longer than the client's idle timeout; the server's keepalives hold the
// connection.
func TestKeepalive(t *testing.T) {
	e := newEnv(t, func(c *ServerConfig) { c.IdleTimeout = 300 * time.Millisecond })
	tok := e.register(SessionSpec{Open: func(ctx context.Context) (io.ReadCloser, error) {
		time.Sleep(1500 * time.Millisecond)
		return struct {
			io.Reader
			io.Closer
		}{io.MultiReader(newGen(12, random, 1<<20), &stall{d: 1500 * time.Millisecond}, newGen(13, random, 1<<20)), io.NopCloser(nil)}, nil
	}})
	cfg := e.clientCfg(dstHost)
	cfg.IdleTimeout = 600 * time.Millisecond // keepalives come every 100 ms
	s, err := e.open(context.Background(), cfg, e.fetch(tok))
	require.NoError(t, err)
	_, n, err := drain(s)
	require.NoError(t, err)
	assert.Equal(t, int64(2<<20), n)
	assert.Zero(t, s.Stats().Reconnects)
}

type stall struct {
	d    time.Duration
	done bool
}

func (s *stall) Read([]byte) (int, error) {
	if !s.done {
		time.Sleep(s.d)
		s.done = true
	}
	return 0, io.EOF
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t)
	const rateBps = 16 << 20
	tok := e.register(SessionSpec{Open: genOpen(14, random, 8<<20, nil), RateLimit: rateBps})
	start := time.Now()
	s, err := e.open(context.Background(), e.clientCfg(dstHost), e.fetch(tok))
	require.NoError(t, err)
	_, n, err := drain(s)
	require.NoError(t, err)
	el := time.Since(start)
	assert.Equal(t, int64(8<<20), n)
	assert.GreaterOrEqual(t, el, 400*time.Millisecond, "8 MiB at 16 MiB/s")
	t.Logf("8 MiB at 16 MiB/s took %v", el)

	// Two sessions of the same job share the bucket.
	var wg sync.WaitGroup
	start = time.Now()
	for i := range 2 {
		tok := e.register(SessionSpec{Job: "share02", Open: genOpen(uint64(15+i), random, 4<<20, nil), RateLimit: rateBps})
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Dial(context.Background(), e.clientCfg(dstHost), e.fetch(tok))
			if !assert.NoError(t, err) {
				return
			}
			defer s.Close()
			_, _, err = drain(s)
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	el = time.Since(start)
	assert.GreaterOrEqual(t, el, 400*time.Millisecond, "2 x 4 MiB of one job at 16 MiB/s")
	t.Logf("2 x 4 MiB of one job at 16 MiB/s took %v", el)
}

// TestConstantMemory streams 256 MiB and checks that neither the live heap
// nor the total allocation grows with the stream (frame buffers are reused).
func TestConstantMemory(t *testing.T) {
	const size = 256 << 20
	e := newEnv(t, func(c *ServerConfig) { c.Logger = zap.NewNop() })
	tok := e.register(SessionSpec{Open: genOpen(16, nasMix, size, nil), Compress: true})
	cfg := e.clientCfg(dstHost)
	cfg.Logger = zap.NewNop()
	req := e.fetch(tok)
	req.Compress = true
	textPool()

	var before, mid, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s, err := Dial(context.Background(), cfg, req)
	require.NoError(t, err)
	defer s.Close()
	buf := make([]byte, 256<<10)
	var n int64
	var peakHeap uint64
	for {
		k, err := s.Read(buf)
		n += int64(k)
		if n%(32<<20) < int64(k) {
			runtime.ReadMemStats(&mid)
			peakHeap = max(peakHeap, mid.HeapInuse)
		}
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
	}
	require.Equal(t, int64(size), n)
	runtime.ReadMemStats(&after)
	growth := int64(peakHeap) - int64(before.HeapInuse)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("heap in use before %.1f MiB, peak during %.1f MiB (growth %.1f MiB); allocated during the stream %.1f MiB",
		mib(before.HeapInuse), mib(peakHeap), float64(growth)/(1<<20), mib(allocated))
	assert.Less(t, growth, int64(24<<20), "heap growth while streaming 256 MiB (both ends and zstd in this process)")
	assert.Less(t, allocated, uint64(32<<20), "allocation while streaming 256 MiB")
	assert.Equal(t, streamDigest(16, nasMix, size), s.Sum())
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func TestShutdownWaitsForTransfers(t *testing.T) {
	e := newEnv(t)
	tok := e.register(SessionSpec{Open: genOpen(17, random, 8<<20, nil), RateLimit: 32 << 20})
	s, err := e.open(context.Background(), e.clientCfg(dstHost), e.fetch(tok))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, _, err := drain(s)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, e.srv.Shutdown(ctx))
	require.NoError(t, <-done, "the transfer in progress completes during a graceful shutdown")
	_, _, err = e.srv.Register(SessionSpec{Job: "j", Peer: dstHost, Open: genOpen(1, random, 1, nil)})
	assert.ErrorIs(t, err, ErrServerClosed)
}

func TestRegisterValidates(t *testing.T) {
	e := newEnv(t)
	open := genOpen(1, random, 1, nil)
	for _, spec := range []SessionSpec{
		{Peer: dstHost, Open: open},
		{Job: "j", Open: open},
		{Job: "j", Peer: dstHost},
		{Job: "j", Peer: dstHost, Open: open, RateLimit: -1},
	} {
		_, _, err := e.srv.Register(spec)
		assert.Error(t, err)
	}
	tok, exp, err := e.srv.Register(SessionSpec{Job: "j", Peer: dstHost, Open: open})
	require.NoError(t, err)
	assert.Len(t, tok, 64)
	assert.WithinDuration(t, time.Now().Add(DefaultTTL), exp, time.Minute)
	tok2, _, err := e.srv.Register(SessionSpec{Job: "j", Peer: dstHost, Open: open})
	require.NoError(t, err)
	assert.NotEqual(t, tok, tok2)
}
