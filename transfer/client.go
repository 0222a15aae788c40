package transfer

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/metrics"
	"github.com/ferry-nas/ferry/resume"
)

// Client defaults.
const (
	DefaultMaxRetries = 10
	DefaultBackoff    = 250 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
)

// ClientConfig configures the target side.
type ClientConfig struct {
	// TLS carries this host's certificate and, as RootCAs, the ferry CA
	// (certs.ClientConfig builds it). ServerName is set per request.
	TLS *tls.Config
	// IdleTimeout: a connection on which nothing arrives (not even a
	// keepalive) for this long is dropped and resumed. Default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxRetries is how many consecutive connection attempts may fail
	// without any data arriving before the stream gives up; the count
	// restarts whenever data arrives. 0 means DefaultMaxRetries, negative
	// means no retries at all.
	MaxRetries int
	// Backoff is the wait before the first retry; it doubles up to
	// MaxBackoff (with ±20% jitter). Defaults DefaultBackoff, DefaultMaxBackoff.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Logger receives a line per lost connection and reconnect.
	Logger *zap.Logger
	// Metrics counts received stream and wire bytes and reconnects per
	// job and source; nil counts nothing.
	Metrics *metrics.Metrics
}

// FetchRequest is one stream to pull.
type FetchRequest struct {
	// Address is the source's data server, host:port.
	Address string
	// ServerName is the source's ferry host name; its certificate must be
	// issued for this name (not for the network address).
	ServerName string
	// Token is the session token the source registered (64 hex digits).
	Token string
	// From is where to start: the zero Position for a new transfer, or a
	// Position saved from an earlier Stream to resume.
	From resume.Position
	// Compress asks for zstd frames (the session must allow them too).
	Compress bool
	// Job names the replication job, for the metrics' labels.
	Job string
}

// Stats counts a stream's traffic.
type Stats struct {
	PayloadBytes int64 // stream bytes delivered by Read (From not included)
	WireBytes    int64 // frame bytes received, headers included (TLS overhead not included)
	Reconnects   int   // connections re-established after a fault
}

// Client opens streams.
type Client struct {
	cfg ClientConfig
	tls *tls.Config
	log *zap.Logger
}

// NewClient checks cfg.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.TLS == nil {
		return nil, errors.New("transfer: ClientConfig.TLS is nil: build it with certs.ClientConfig")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = DefaultMaxRetries
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	t := cfg.TLS.Clone()
	t.MinVersion = tls.VersionTLS13
	t.NextProtos = []string{alpn}
	return &Client{cfg: cfg, tls: t, log: log.Named("dataplane")}, nil
}

// Dial is NewClient(cfg) then Open(ctx, req).
func Dial(ctx context.Context, cfg ClientConfig, req FetchRequest) (*Stream, error) {
	c, err := NewClient(cfg)
	if err != nil {
		return nil, err
	}
	return c.Open(ctx, req)
}

var errStreamClosed = errors.New("transfer: stream closed")

// Stream is the target's end of one transfer. It implements resume.Stream:
// Position is the offset and digest state of exactly the bytes Read has
// delivered. It reconnects by itself after transient faults, resuming from
// Position. A Stream is read by one goroutine; Close and Stats may be called
// from any.
type Stream struct {
	c      *Client
	req    FetchRequest
	token  [32]byte
	tls    *tls.Config
	log    *zap.Logger
	ctx    context.Context
	cancel context.CancelFunc
	stop   func() bool

	fr *frameReader
	dr deadlineReader

	// hmu guards the digest and offset against Position and Close from
	// other goroutines (the activity's heartbeat reads Position).
	hmu sync.Mutex
	h   hash.Hash // digest of the bytes Read delivered, fed by hp
	alg string    // h's algorithm: From's (resume.Position.Algorithm)
	hp  *hashPipe
	// slotTicket is, per frame-reader slot, the hash ticket of the last
	// bytes delivered from it: the slot is reused only once they are hashed.
	slotTicket [2]int64

	mu     sync.Mutex // guards raw, tc, closed against Close
	raw    net.Conn
	tc     *tls.Conn
	closed bool

	pending   []byte
	offset    int64 // offset of the next byte Read delivers (written under hmu)
	err       error // sticky: io.EOF or the final error
	connected bool  // a connection was accepted at least once
	failures  int   // consecutive failed attempts without data
	lastFault error // why the current connection was lost
	sum       [resume.DigestSize]byte

	payload    atomic.Int64
	wire       atomic.Int64
	reconnects atomic.Int64

	flow         *metrics.Flow      // nil without metrics
	reconnectCtr prometheus.Counter // nil without metrics
}

// Open connects to the source and returns once it accepted the request (or
// refused it: a *RefusedError). Transient faults while connecting are retried
// as in Read. ctx bounds the whole life of the stream.
func (c *Client) Open(ctx context.Context, req FetchRequest) (*Stream, error) {
	if req.Address == "" {
		return nil, errors.New("transfer: FetchRequest has no Address")
	}
	if req.ServerName == "" {
		return nil, errors.New("transfer: FetchRequest has no ServerName (the source host's name)")
	}
	tok, err := parseToken(req.Token)
	if err != nil {
		return nil, fmt.Errorf("transfer: %w", err)
	}
	t := c.tls.Clone()
	t.ServerName = req.ServerName
	s := &Stream{
		c: c, req: req, token: tok, tls: t,
		log:    c.log.With(zap.String("source", req.ServerName), zap.String("address", req.Address)),
		fr:     newFrameReader(nil, MaxPayload),
		offset: req.From.Offset,
		flow:   c.cfg.Metrics.Flow(metrics.Received, req.Job, req.ServerName),
	}
	s.reconnectCtr = c.cfg.Metrics.Reconnects(req.Job, req.ServerName)
	s.h, err = req.From.Hasher()
	if err != nil {
		return nil, fmt.Errorf("transfer: %w", err)
	}
	s.alg = req.From.Algorithm()
	s.hp = newHashPipe(s.h)
	s.dr.idle = c.cfg.IdleTimeout
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.stop = context.AfterFunc(s.ctx, s.abortConn)
	if err := s.connect(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Read delivers stream bytes. It returns io.EOF only after the source's
// trailer matched the length and digest of everything delivered, From
// included.
func (s *Stream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return s.readPayload(p)
}

// Source is the source host's name (FetchRequest.ServerName).
func (s *Stream) Source() string { return s.req.ServerName }

// Position is the offset and hash state after the last byte Read delivered.
// It may be called from any goroutine.
func (s *Stream) Position() resume.Position {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	s.hp.wait(0)
	return resume.At(s.offset, s.h)
}

// Offset is Position's offset, without waiting for the digest or copying
// its state. It may be called from any goroutine.
func (s *Stream) Offset() int64 {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	return s.offset
}

// digest is the digest of every byte delivered, From's prefix included.
func (s *Stream) digest() [resume.DigestSize]byte {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	s.hp.wait(0)
	var d [resume.DigestSize]byte
	s.h.Sum(d[:0])
	return d
}

// stopHashing ends the hash goroutine; the digest stays exact.
func (s *Stream) stopHashing() {
	s.hmu.Lock()
	s.hp.stop()
	s.hmu.Unlock()
}

// Sum is the digest of the whole stream, valid once Read returned io.EOF;
// its algorithm is Algorithm's.
func (s *Stream) Sum() [resume.DigestSize]byte { return s.sum }

// Algorithm is the stream digest algorithm (resume.BLAKE3 for a new stream,
// the algorithm of From for a resumed one).
func (s *Stream) Algorithm() string { return s.alg }

// Stats returns the traffic so far.
func (s *Stream) Stats() Stats {
	return Stats{PayloadBytes: s.payload.Load(), WireBytes: s.wire.Load(), Reconnects: int(s.reconnects.Load())}
}

// Close ends the stream. An unfinished transfer stays resumable on the
// source (with the same token) from Position.
func (s *Stream) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.stop()
	s.abortConn()
	s.stopHashing()
	return nil
}

func (s *Stream) abortConn() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.raw != nil {
		s.raw.Close()
		s.raw, s.tc = nil, nil
	}
}

func (s *Stream) readPayload(p []byte) (int, error) {
	for {
		if len(s.pending) > 0 {
			n := copy(p, s.pending)
			// Hash the frame buffer's copy, not p, which the caller may
			// reuse as soon as Read returns.
			s.hmu.Lock()
			s.slotTicket[s.fr.slot] = s.hp.write(s.pending[:n])
			s.offset += int64(n)
			s.hmu.Unlock()
			s.pending = s.pending[n:]
			s.payload.Add(int64(n))
			s.flow.AddStream(int64(n))
			return n, nil
		}
		if s.err != nil {
			return 0, s.err
		}
		if s.current() == nil {
			if err := s.connect(); err != nil {
				s.fail(err)
				continue
			}
		}
		t, payload, err := s.nextFrame()
		if err != nil {
			s.fault(err)
			continue
		}
		switch t {
		case frameData:
			s.pending = payload
			s.failures = 0
		case frameKeepalive:
		case frameTrailer:
			s.finish(payload)
		case frameError:
			s.fail(parseSourceError(payload))
		default:
			s.fault(frameErr(t, "unexpected in the stream"))
		}
	}
}

// nextFrame reads a frame into the frame reader's other slot, once the
// bytes delivered from that slot are hashed.
func (s *Stream) nextFrame() (frameType, []byte, error) {
	s.hmu.Lock()
	s.hp.waitFor(s.slotTicket[s.fr.nextSlot()])
	s.hmu.Unlock()
	t, p, err := s.fr.next()
	s.countWire()
	return t, p, err
}

// countWire publishes the frame reader's byte count (it counts across
// reconnects) to Stats and the metrics.
func (s *Stream) countWire() {
	n := s.fr.n
	s.flow.AddWire(n - s.wire.Swap(n))
}

func (s *Stream) current() *tls.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tc
}

// fault handles the loss of the current connection.
func (s *Stream) fault(err error) {
	s.abortConn()
	err = s.classify(err)
	if !retryable(err) {
		s.fail(err)
		return
	}
	s.lastFault = err
}

func (s *Stream) fail(err error) {
	s.abortConn()
	if s.err == nil {
		s.err = err
	}
	s.fr.close()
	s.stopHashing()
}

// connect (re)establishes a connection at the current offset, retrying
// transient failures with backoff.
func (s *Stream) connect() error {
	for {
		if s.lastFault != nil {
			s.failures++
			max := s.c.cfg.MaxRetries
			if max < 0 || s.failures > max {
				return fmt.Errorf("transfer from %s (%s) at byte %d: giving up after %d failed attempts: %w",
					s.req.ServerName, s.req.Address, s.offset, s.failures, s.lastFault)
			}
			delay := s.backoff(s.failures)
			s.log.Warn("data-plane connection failed; retrying", zap.Int64("offset", s.offset),
				zap.Int("attempt", s.failures), zap.Duration("in", delay), zap.Error(s.lastFault))
			select {
			case <-time.After(delay):
			case <-s.ctx.Done():
				return s.classify(s.ctx.Err())
			}
		}
		err := s.dial()
		if err == nil {
			if s.connected {
				s.reconnects.Add(1)
				if s.reconnectCtr != nil {
					s.reconnectCtr.Inc()
				}
				s.log.Info("data-plane connection resumed", zap.Int64("offset", s.offset))
			}
			s.connected = true
			s.lastFault = nil
			return nil
		}
		s.abortConn()
		err = s.classify(err)
		if !retryable(err) {
			return err
		}
		s.lastFault = err
	}
}

func (s *Stream) backoff(attempt int) time.Duration {
	d := s.c.cfg.Backoff
	for i := 1; i < attempt && d < s.c.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.c.cfg.MaxBackoff)
	jitter := 0.8 + 0.4*rand.Float64()
	return time.Duration(float64(d) * jitter)
}

// dial makes one connection attempt and reads the server's status.
func (s *Stream) dial() error {
	pos := s.Position()
	digest, err := pos.PrefixDigest()
	if err != nil {
		return permanent{err}
	}
	algFlags, err := digestID(s.alg)
	if err != nil {
		return permanent{err}
	}
	d := net.Dialer{Timeout: s.c.cfg.IdleTimeout, KeepAlive: 15 * time.Second}
	raw, err := d.DialContext(s.ctx, "tcp", s.req.Address)
	if err != nil {
		return err
	}
	tc := tls.Client(raw, s.tls)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		raw.Close()
		return errStreamClosed
	}
	s.raw, s.tc = raw, tc
	s.mu.Unlock()

	raw.SetDeadline(time.Now().Add(s.c.cfg.IdleTimeout))
	if err := tc.HandshakeContext(s.ctx); err != nil {
		return err
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != alpn {
		return permanent{fmt.Errorf("%s at %s is not a ferry data server (TLS application protocol %q)", s.req.ServerName, s.req.Address, p)}
	}
	flags := algFlags
	if s.req.Compress {
		flags |= flagCompress
	}
	r := request{version: ProtocolVersion, flags: flags, token: s.token, offset: pos.Offset, digest: digest}
	if _, err := tc.Write(r.marshal()); err != nil {
		return err
	}
	raw.SetDeadline(time.Time{})
	s.dr.reset(raw, tc)
	s.fr.reset(&s.dr)
	for {
		t, p, err := s.nextFrame()
		if err != nil {
			return err
		}
		switch t {
		case frameKeepalive:
			continue
		case frameOK:
			if off := int64(binary.BigEndian.Uint64(p[0:8])); off != pos.Offset {
				return frameErr(t, "server resumes at %d, asked for %d", off, pos.Offset)
			}
			return nil
		case frameRefused:
			return &RefusedError{Code: Code(binary.BigEndian.Uint16(p[0:2])), Message: string(p[2:])}
		case frameError:
			return parseSourceError(p)
		default:
			return frameErr(t, "unexpected before the server's status")
		}
	}
}

// finish checks the trailer, acknowledges it and ends the stream.
func (s *Stream) finish(p []byte) {
	total, want := parseTrailer(p)
	got := s.digest()
	if total != s.offset || want != got {
		s.fail(fmt.Errorf("%w: received %d bytes with %s %x, the source sent %d bytes with %s %x: discard the received data and start over",
			ErrDigestMismatch, s.offset, s.alg, got, total, s.alg, want))
		return
	}
	s.sum = got
	// Acknowledge, and wait for the source to record it, so that the token
	// is burned when Read returns io.EOF. Failing here loses nothing: the
	// data is verified; the session then merely lives until it expires.
	s.mu.Lock()
	raw, tc := s.raw, s.tc
	s.mu.Unlock()
	if tc != nil {
		raw.SetWriteDeadline(time.Now().Add(s.c.cfg.IdleTimeout))
		_, err := tc.Write(appendFrame(nil, frameAck, p))
		if err == nil {
			var t frameType
			t, _, err = s.nextFrame()
			if err == nil && t != frameBye {
				err = fmt.Errorf("expected bye, got %s frame", t)
			}
		}
		if err != nil {
			s.log.Warn("trailer verified but the acknowledgement was not confirmed; the source keeps the session until it expires", zap.Error(err))
		}
	}
	s.fail(io.EOF)
}

// permanent marks an error that no retry can fix.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

func (s *Stream) classify(err error) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return errStreamClosed
	}
	if s.ctx.Err() != nil {
		return fmt.Errorf("transfer from %s: %w", s.req.ServerName, context.Cause(s.ctx))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w: nothing from %s (%s) for %v", ErrIdleTimeout, s.req.ServerName, s.req.Address, s.c.cfg.IdleTimeout)
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return permanent{fmt.Errorf("the certificate of %s at %s is not accepted (%v): it must be issued by the ferry CA for the name %q (`ferry certs issue %s`)",
			s.req.ServerName, s.req.Address, cve.Err, s.req.ServerName, s.req.ServerName)}
	}
	return err
}

func retryable(err error) bool {
	var re *RefusedError
	if errors.As(err, &re) {
		// The server may not have noticed yet that our previous
		// connection is gone; it will within its idle timeout.
		return re.Code == CodeInUse
	}
	var se *SourceError
	var p permanent
	switch {
	case errors.As(err, &se), errors.As(err, &p),
		errors.Is(err, ErrDigestMismatch), errors.Is(err, errStreamClosed),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	}
	return true
}

// deadlineReader pushes the read deadline forward as data arrives, so that
// the idle timeout measures silence rather than the time a frame takes.
type deadlineReader struct {
	raw       net.Conn
	r         io.Reader
	idle      time.Duration
	refreshAt time.Time
}

func (d *deadlineReader) reset(raw net.Conn, r io.Reader) {
	d.raw, d.r, d.refreshAt = raw, r, time.Time{}
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	now := time.Now()
	if now.After(d.refreshAt) {
		d.raw.SetReadDeadline(now.Add(d.idle))
		d.refreshAt = now.Add(d.idle / 8)
	}
	return d.r.Read(p)
}
