package transfer

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// ServerConfig configures a data server.
type ServerConfig struct {
	// TLS carries the host's certificate and, as ClientCAs, the ferry CA
	// (certs.ServerConfig builds it). The server enforces TLS 1.3 and
	// checks client certificates against ClientCAs itself, after the
	// handshake, so that it can tell the client why it is refused.
	TLS *tls.Config
	// IdleTimeout bounds every wait for the client (handshake, request,
	// each write, the final acknowledgement). Default DefaultIdleTimeout.
	// While the source produces nothing the server sends keepalives every
	// IdleTimeout/3, so the client's own idle timer does not fire.
	IdleTimeout time.Duration
	// Logger receives one structured line per refusal, completed transfer,
	// and lost connection. Default: no logging.
	Logger *zap.Logger
}

// SessionSpec is one transfer the source authorises.
type SessionSpec struct {
	// Job names the replication job; sessions of the same job share one
	// rate limiter on this server.
	Job string
	// Peer is the target host's certificate name (its ferry host name).
	Peer string
	// Open regenerates the stream from byte 0. It is called once per
	// connection (the first and every resume); ctx is cancelled when the
	// connection ends, and the returned reader is closed after the last read.
	Open func(ctx context.Context) (io.ReadCloser, error)
	// Compress allows zstd frames (used when the client asks for them too).
	Compress bool
	// RateLimit caps the job's wire bytes per second on this server
	// (0 = unlimited). The latest registration of a job sets its rate.
	RateLimit int64
	// TTL is how long the token is accepted for new connections and resumes
	// (default DefaultTTL). A transfer in progress is not cut at expiry.
	TTL time.Duration
}

// SessionInfo is what the server knows about a session.
type SessionInfo struct {
	Job         string
	Peer        string
	Expires     time.Time
	State       string // waiting | streaming | complete | revoked
	Connections int    // connections accepted (first + resumes)
	Offset      int64  // stream offset reached by the latest connection
	// Digest is the SHA-256 of the whole stream, set once State is complete.
	Digest [sha256.Size]byte
}

type sessState uint8

const (
	stateWaiting sessState = iota
	stateStreaming
	stateComplete
	stateRevoked
)

// Session states as SessionInfo.State reports them.
const (
	SessionWaiting   = "waiting"
	SessionStreaming = "streaming"
	SessionComplete  = "complete"
	SessionRevoked   = "revoked"
)

func (s sessState) String() string {
	return [...]string{SessionWaiting, SessionStreaming, SessionComplete, SessionRevoked}[s]
}

// tombstone is how long a session is remembered after it expired, so that a
// late replay is reported as replayed or expired rather than unknown.
const tombstone = time.Hour

type session struct {
	id          string // short, non-secret id for logs
	spec        SessionSpec
	expires     time.Time
	state       sessState
	conn        *serverConn
	lim         *jobLimiter
	connections int
	offset      atomic.Int64
	digest      [sha256.Size]byte
}

// jobLimiter is the token bucket of one job, shared by its sessions.
type jobLimiter struct {
	lim  *rate.Limiter
	refs int
}

func newJobLimiter() *jobLimiter { return &jobLimiter{lim: rate.NewLimiter(rate.Inf, 0)} }

// set changes the rate. The burst (and the size of data frames while a
// limit is set) is a quarter of a second of traffic, between 16 KiB and one
// full frame, so that a limited stream is smooth rather than bursty.
func (j *jobLimiter) set(bps int64) {
	if bps <= 0 {
		j.lim.SetLimit(rate.Inf)
		return
	}
	j.lim.SetLimit(rate.Limit(bps))
	j.lim.SetBurst(chunkFor(bps) + headerSize)
}

func chunkFor(bps int64) int {
	return int(min(max(bps/4, 16<<10), MaxPayload))
}

// chunk is the stream bytes to put in the next data frame.
func (j *jobLimiter) chunk() int {
	l := j.lim.Limit()
	if l == rate.Inf {
		return MaxPayload
	}
	return chunkFor(int64(l))
}

func (j *jobLimiter) wait(ctx context.Context, n int) error {
	for n > 0 {
		if j.lim.Limit() == rate.Inf {
			return nil
		}
		k := min(n, max(j.lim.Burst(), 1))
		if err := j.lim.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// Server is a data server: it streams registered sessions to the hosts they
// are for.
type Server struct {
	tls  *tls.Config
	idle time.Duration
	log  *zap.Logger

	ctx    context.Context // cancelled by Close: aborts sources
	cancel context.CancelFunc

	mu        sync.Mutex
	sessions  map[[32]byte]*session
	jobs      map[string]*jobLimiter
	listeners map[net.Listener]struct{}
	addr      net.Addr
	conns     map[*serverConn]struct{}
	closing   bool
	connWG    sync.WaitGroup

	// Test hooks.
	now func() time.Time
	// corrupt, when set, may change a data frame's payload after its CRC
	// was computed (seq counts data frames of one connection from 0).
	corrupt func(job string, seq int64, payload []byte)
}

// NewServer checks cfg and returns a server that serves nothing until Serve.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.TLS == nil {
		return nil, errors.New("transfer: ServerConfig.TLS is nil: build it with certs.ServerConfig")
	}
	if cfg.TLS.ClientCAs == nil {
		return nil, errors.New("transfer: ServerConfig.TLS has no ClientCAs: the server must know the ferry CA to check client certificates (certs.ServerConfig sets it)")
	}
	if len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil {
		return nil, errors.New("transfer: ServerConfig.TLS has no certificate: build it with certs.ServerConfig")
	}
	t := cfg.TLS.Clone()
	t.MinVersion = tls.VersionTLS13
	// Verified after the handshake (verifyClient) so that a refusal can be
	// explained to the client instead of being a bare TLS alert.
	t.ClientAuth = tls.RequestClientCert
	t.NextProtos = []string{alpn}
	idle := cfg.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		tls:       t,
		idle:      idle,
		log:       log.Named("dataplane"),
		ctx:       ctx,
		cancel:    cancel,
		sessions:  make(map[[32]byte]*session),
		jobs:      make(map[string]*jobLimiter),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*serverConn]struct{}),
		now:       time.Now,
	}, nil
}

// Register authorises one transfer and returns its token (64 hex digits,
// 256 random bits) and when it expires.
func (s *Server) Register(spec SessionSpec) (token string, expires time.Time, err error) {
	switch {
	case spec.Job == "":
		return "", time.Time{}, errors.New("transfer: session has no Job")
	case spec.Peer == "":
		return "", time.Time{}, errors.New("transfer: session has no Peer (the target host's certificate name)")
	case spec.Open == nil:
		return "", time.Time{}, errors.New("transfer: session has no Open function")
	case spec.RateLimit < 0:
		return "", time.Time{}, fmt.Errorf("transfer: negative rate limit %d", spec.RateLimit)
	case spec.TTL < 0:
		return "", time.Time{}, fmt.Errorf("transfer: negative TTL %v", spec.TTL)
	}
	var tok [32]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("transfer: generate token: %w", err)
	}
	ttl := spec.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return "", time.Time{}, ErrServerClosed
	}
	now := s.now()
	s.sweepLocked(now)
	jl := s.jobs[spec.Job]
	if jl == nil {
		jl = newJobLimiter()
		s.jobs[spec.Job] = jl
	}
	jl.set(spec.RateLimit)
	jl.refs++
	sess := &session{id: sessionID(tok), spec: spec, expires: now.Add(ttl), lim: jl}
	s.sessions[tok] = sess
	s.mu.Unlock()
	s.log.Info("session registered", zap.String("job", spec.Job), zap.String("peer", spec.Peer),
		zap.String("session", sess.id), zap.Time("expires", sess.expires),
		zap.Bool("compress", spec.Compress), zap.Int64("rate_limit", spec.RateLimit))
	return hex.EncodeToString(tok[:]), sess.expires, nil
}

// Revoke burns a token now and cuts its connection, if any (a cancelled
// run's compensation). It reports whether the token was known.
func (s *Server) Revoke(token string) bool {
	tok, err := parseToken(token)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[tok]
	if sess == nil {
		return false
	}
	if sess.state != stateComplete {
		sess.state = stateRevoked
	}
	if sess.conn != nil {
		sess.conn.abort()
	}
	s.log.Info("session revoked", zap.String("job", sess.spec.Job), zap.String("peer", sess.spec.Peer), zap.String("session", sess.id))
	return true
}

// Session returns what the server knows about token.
func (s *Server) Session(token string) (SessionInfo, bool) {
	tok, err := parseToken(token)
	if err != nil {
		return SessionInfo{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[tok]
	if sess == nil {
		return SessionInfo{}, false
	}
	return SessionInfo{
		Job: sess.spec.Job, Peer: sess.spec.Peer, Expires: sess.expires,
		State: sess.state.String(), Connections: sess.connections,
		Offset: sess.offset.Load(), Digest: sess.digest,
	}, true
}

// sweepLocked forgets sessions long expired and not streaming.
func (s *Server) sweepLocked(now time.Time) {
	for tok, sess := range s.sessions {
		if sess.state != stateStreaming && now.After(sess.expires.Add(tombstone)) {
			delete(s.sessions, tok)
			sess.lim.refs--
			if sess.lim.refs <= 0 && s.jobs[sess.spec.Job] == sess.lim {
				delete(s.jobs, sess.spec.Job)
			}
		}
	}
}

// ListenAndServe listens on addr (host:port) and serves until Close.
func (s *Server) ListenAndServe(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("transfer: listen on %s: %w", addr, err)
	}
	return s.Serve(l)
}

// Addr is the address of the listener Serve was last given, or nil.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Serve accepts connections on l until Close or Shutdown, then returns
// ErrServerClosed. l is closed when Serve returns.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.addr = l.Addr()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	var delay time.Duration
	for {
		raw, err := l.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// EMFILE and friends: back off and keep serving.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", zap.Error(err), zap.Duration("retry_in", delay))
			select {
			case <-time.After(delay):
			case <-s.ctx.Done():
				return ErrServerClosed
			}
			continue
		}
		delay = 0
		c := s.newConn(raw)
		if c == nil {
			raw.Close()
			continue
		}
		go s.handle(c)
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *Server) closeListenersLocked() {
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
}

// Close stops accepting, cuts every connection (their sessions stay
// resumable until they expire) and waits for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closeListenersLocked()
	for c := range s.conns {
		c.abort()
	}
	s.mu.Unlock()
	s.cancel()
	s.connWG.Wait()
	return nil
}

// Shutdown stops accepting and waits for the transfers in progress to end;
// when ctx is done first it cuts them like Close and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closeListenersLocked()
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

// serverConn is one client connection.
type serverConn struct {
	s      *Server
	raw    net.Conn
	tc     *tls.Conn
	remote string
	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc

	wmu       sync.Mutex // serialises writes (stream and keepalives)
	werr      error
	lastWrite time.Time
	ctrl      []byte
	wire      int64
}

func (s *Server) newConn(raw net.Conn) *serverConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil
	}
	ctx, cancel := context.WithCancel(s.ctx)
	c := &serverConn{s: s, raw: raw, tc: tls.Server(raw, s.tls), remote: raw.RemoteAddr().String(), ctx: ctx, cancel: cancel}
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	return c
}

func (c *serverConn) abort() {
	c.cancel()
	c.raw.Close()
}

// outcome is how a stream ended when it did not end well.
type outcome struct {
	code      Code   // refusal to send
	msg       string // refusal message
	sourceErr string // source failure to send in an error frame
}

func (s *Server) handle(c *serverConn) {
	defer func() {
		c.abort()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.connWG.Done()
	}()
	c.raw.SetDeadline(time.Now().Add(s.idle))
	if err := c.tc.HandshakeContext(c.ctx); err != nil {
		s.log.Info("data-plane handshake failed", zap.String("remote", c.remote), zap.Error(err))
		return
	}
	var buf [requestSize]byte
	if _, err := io.ReadFull(c.tc, buf[:]); err != nil {
		s.log.Info("data-plane client sent no request", zap.String("remote", c.remote), zap.Error(err))
		return
	}
	c.raw.SetDeadline(time.Time{})
	st := c.tc.ConnectionState()
	req, ok := unmarshalRequest(buf[:])
	if !ok || st.NegotiatedProtocol != alpn {
		c.refuse(nil, "", CodeBadVersion, "not a ferry data-plane request")
		return
	}
	presented, code, msg := s.verifyClient(st)
	if code != 0 {
		c.refuse(nil, presented, code, msg)
		return
	}
	if req.version != ProtocolVersion {
		c.refuse(nil, presented, CodeBadVersion, fmt.Sprintf("this source speaks data-plane protocol %d, the client %d: run the same ferry version on both hosts", ProtocolVersion, req.version))
		return
	}
	if req.offset < 0 {
		c.refuse(nil, presented, CodeResumeMismatch, fmt.Sprintf("resume offset %d is negative", req.offset))
		return
	}
	sess, code, msg := s.acquire(req.token, presented, c)
	if code != 0 {
		c.refuse(sess, presented, code, msg)
		return
	}
	out := c.stream(sess, req)
	// Release before answering, so that a client that restarts at once
	// (after a resume mismatch, say) does not find the session in use.
	s.release(sess, c)
	switch {
	case out.code != 0:
		c.refuse(sess, presented, out.code, out.msg)
	case out.sourceErr != "":
		s.log.Warn("source stream failed", zap.String("job", sess.spec.Job), zap.String("peer", sess.spec.Peer),
			zap.String("session", sess.id), zap.String("remote", c.remote), zap.String("error", out.sourceErr))
		c.writeControl(frameError, []byte(truncate(out.sourceErr, maxControl)))
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// verifyClient checks the client certificate against the CA, as
// tls.RequireAndVerifyClientCert would, and returns its name.
func (s *Server) verifyClient(st tls.ConnectionState) (name string, code Code, msg string) {
	if len(st.PeerCertificates) == 0 {
		return "", CodeNoCertificate, "the client presented no certificate: give its worker the host certificate made by `ferry certs issue HOST`"
	}
	leaf := st.PeerCertificates[0]
	name = leaf.Subject.CommonName
	inter := x509.NewCertPool()
	for _, c := range st.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         s.tls.ClientCAs,
		Intermediates: inter,
		CurrentTime:   s.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return name, CodeUntrustedCertificate, fmt.Sprintf("client certificate %q is not accepted by this source's CA (%v): issue it with the same CA (`ferry certs issue %s`)", name, err, name)
	}
	return name, 0, ""
}

// acquire checks the token against the presented certificate name and, when
// everything is in order, marks the session streaming on c.
func (s *Server) acquire(tok [32]byte, presented string, c *serverConn) (*session, Code, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.sweepLocked(now)
	sess := s.sessions[tok]
	switch {
	case sess == nil:
		return nil, CodeUnknownToken, "this source has no session with that token (never registered, or the worker restarted): the workflow registers a new one"
	case presented != sess.spec.Peer:
		return sess, CodeWrongPeer, fmt.Sprintf("the session is for host %q, the client certificate is %q", sess.spec.Peer, presented)
	case sess.state == stateComplete:
		return sess, CodeReplayed, "this transfer was completed and acknowledged; its token is burned"
	case sess.state == stateRevoked:
		return sess, CodeExpired, "the source revoked this session"
	case now.After(sess.expires):
		return sess, CodeExpired, fmt.Sprintf("the session expired at %s", sess.expires.UTC().Format(time.RFC3339))
	case sess.state == stateStreaming:
		from := ""
		if sess.conn != nil {
			from = " (from " + sess.conn.remote + ")"
		}
		return sess, CodeInUse, "another connection" + from + " is streaming this session"
	}
	sess.state = stateStreaming
	sess.conn = c
	sess.connections++
	return sess, 0, ""
}

func (s *Server) release(sess *session, c *serverConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess.conn == c {
		sess.conn = nil
		if sess.state == stateStreaming {
			sess.state = stateWaiting
		}
	}
}

func (s *Server) complete(sess *session, c *serverConn, digest [sha256.Size]byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess.conn != c || sess.state != stateStreaming {
		return false // revoked meanwhile
	}
	sess.state = stateComplete
	sess.digest = digest
	return true
}

func (c *serverConn) refuse(sess *session, presented string, code Code, msg string) {
	fields := []zap.Field{zap.String("remote", c.remote), zap.String("reason", code.String()), zap.String("message", msg)}
	if sess != nil {
		fields = append(fields, zap.String("job", sess.spec.Job), zap.String("peer", sess.spec.Peer), zap.String("session", sess.id))
	}
	if presented != "" {
		fields = append(fields, zap.String("client", presented))
	}
	c.s.log.Warn("data-plane connection refused", fields...)
	c.writeControl(frameRefused, refusalPayload(code, msg))
}

// writeChunk bounds each Write so that the idle deadline measures silence,
// not the time a whole frame takes on a slow link.
const writeChunk = 64 << 10

func (c *serverConn) writeLocked(b []byte) error {
	if c.werr != nil {
		return c.werr
	}
	for len(b) > 0 {
		k := min(len(b), writeChunk)
		c.raw.SetWriteDeadline(time.Now().Add(c.s.idle))
		n, err := c.tc.Write(b[:k])
		c.wire += int64(n)
		if err != nil {
			c.werr = err
			c.cancel()
			return err
		}
		b = b[k:]
	}
	c.lastWrite = time.Now()
	return nil
}

func (c *serverConn) write(frame []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(frame)
}

func (c *serverConn) writeControl(t frameType, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ctrl = appendFrame(c.ctrl[:0], t, payload)
	return c.writeLocked(c.ctrl)
}

// startKeepalive sends a keepalive whenever nothing was written for a third
// of the idle timeout: while Open or the source is slow, while the stream is
// rate-limited, while the prefix is skipped for a resume.
func (c *serverConn) startKeepalive() (stop func()) {
	interval := max(c.s.idle/3, 5*time.Millisecond)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	c.wmu.Lock()
	c.lastWrite = time.Now()
	c.wmu.Unlock()
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-c.ctx.Done():
				return
			case <-t.C:
			}
			if !c.wmu.TryLock() {
				continue // a write is in progress: that is activity enough
			}
			if time.Since(c.lastWrite) >= interval {
				c.ctrl = appendFrame(c.ctrl[:0], frameKeepalive, nil)
				c.writeLocked(c.ctrl)
			}
			c.wmu.Unlock()
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// stream serves one accepted connection: regenerate, check the prefix,
// stream the rest in frames, send the trailer and wait for the client's
// acknowledgement, which burns the token.
func (c *serverConn) stream(sess *session, req request) outcome {
	s := c.s
	log := s.log.With(zap.String("job", sess.spec.Job), zap.String("peer", sess.spec.Peer),
		zap.String("session", sess.id), zap.String("remote", c.remote))
	start := time.Now()
	compress := sess.spec.Compress && req.flags&flagCompress != 0
	stopKeepalive := c.startKeepalive()
	defer stopKeepalive()

	src, err := sess.spec.Open(c.ctx)
	if err != nil {
		if c.ctx.Err() != nil {
			return outcome{}
		}
		return outcome{sourceErr: "open the source stream: " + err.Error()}
	}
	defer src.Close()
	framer, err := newDataFramer(compress)
	if err != nil {
		return outcome{code: CodeInternal, msg: err.Error()}
	}
	defer framer.close()
	buf := framer.Payload()
	h := sha256.New()

	// Regenerate and hash the prefix the client already has.
	var off int64
	for off < req.offset {
		n, err := io.ReadFull(src, buf[:min(req.offset-off, MaxPayload)])
		h.Write(buf[:n])
		off += int64(n)
		sess.offset.Store(off)
		if c.ctx.Err() != nil {
			log.Info("connection lost while skipping to the resume offset", zap.Int64("offset", off))
			return outcome{}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return outcome{code: CodeResumeMismatch, msg: fmt.Sprintf("the regenerated stream ends at byte %d, before the resume offset %d: discard the partial receive and start over from byte 0", off, req.offset)}
		}
		if err != nil {
			if c.ctx.Err() != nil {
				return outcome{}
			}
			return outcome{sourceErr: fmt.Sprintf("read the source stream at byte %d (skipping to the resume offset): %v", off, err)}
		}
	}
	if !bytes.Equal(h.Sum(nil), req.digest[:]) {
		return outcome{code: CodeResumeMismatch, msg: fmt.Sprintf("bytes [0, %d) of the regenerated stream differ from the client's: discard the partial receive and start over from byte 0", req.offset)}
	}
	var ok [9]byte
	binary.BigEndian.PutUint64(ok[0:8], uint64(req.offset))
	if compress {
		ok[8] = 1
	}
	if err := c.writeControl(frameOK, ok[:]); err != nil {
		log.Info("connection lost before streaming", zap.Error(err))
		return outcome{}
	}
	if req.offset > 0 {
		log.Info("resuming", zap.Int64("offset", req.offset), zap.Bool("compress", compress))
	} else {
		log.Info("streaming", zap.Bool("compress", compress))
	}

	var seq int64
	for {
		n, rerr := io.ReadFull(src, buf[:sess.lim.chunk()])
		if n > 0 {
			h.Write(buf[:n])
			frame := framer.Seal(n)
			if s.corrupt != nil {
				s.corrupt(sess.spec.Job, seq, frame[headerSize:])
			}
			if err := sess.lim.wait(c.ctx, len(frame)); err != nil {
				log.Info("connection lost", zap.Int64("offset", off), zap.Error(err))
				return outcome{}
			}
			if err := c.write(frame); err != nil {
				log.Info("connection lost", zap.Int64("offset", off), zap.Error(err))
				return outcome{}
			}
			off += int64(n)
			seq++
			sess.offset.Store(off)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			if c.ctx.Err() != nil {
				log.Info("connection lost", zap.Int64("offset", off), zap.Error(c.ctx.Err()))
				return outcome{}
			}
			return outcome{sourceErr: fmt.Sprintf("read the source stream at byte %d: %v", off, rerr)}
		}
	}

	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	trailer := trailerPayload(off, sum)
	if err := c.writeControl(frameTrailer, trailer); err != nil {
		log.Info("connection lost before the trailer", zap.Int64("offset", off), zap.Error(err))
		return outcome{}
	}
	c.raw.SetReadDeadline(time.Now().Add(s.idle))
	rd := newFrameReader(c.tc, maxControl)
	t, p, err := rd.next()
	if err != nil {
		log.Info("no acknowledgement from the client; the session stays open for a resume", zap.Int64("offset", off), zap.Error(err))
		return outcome{}
	}
	if t != frameAck || !bytes.Equal(p, trailer) {
		log.Warn("bad acknowledgement from the client", zap.Stringer("frame", t))
		return outcome{}
	}
	if !s.complete(sess, c, sum) {
		return outcome{}
	}
	c.writeControl(frameBye, nil)
	c.wmu.Lock()
	wire := c.wire
	c.wmu.Unlock()
	log.Info("transfer complete", zap.Int64("bytes", off), zap.Int64("resumed_from", req.offset),
		zap.Int64("wire_bytes", wire), zap.Duration("duration", time.Since(start)),
		zap.String("sha256", hex.EncodeToString(sum[:])))
	return outcome{}
}

func parseToken(token string) ([32]byte, error) {
	var tok [32]byte
	if len(token) != 64 {
		return tok, fmt.Errorf("token must be 64 hex digits, got %d characters", len(token))
	}
	if _, err := hex.Decode(tok[:], []byte(token)); err != nil {
		return tok, fmt.Errorf("token is not hex: %v", err)
	}
	return tok, nil
}

// sessionID names a session in logs without revealing its token.
func sessionID(tok [32]byte) string {
	sum := sha256.Sum256(tok[:])
	return hex.EncodeToString(sum[:4])
}
