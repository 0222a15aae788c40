package transfer

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/resume"
)

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
	// Digest is the digest of the whole stream in DigestAlgorithm
	// (resume.BLAKE3 or resume.SHA256), set once State is complete.
	Digest          [resume.DigestSize]byte
	DigestAlgorithm string
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
	digest      [resume.DigestSize]byte
	digestAlg   string
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
		Offset: sess.offset.Load(), Digest: sess.digest, DigestAlgorithm: sess.digestAlg,
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

func (s *Server) complete(sess *session, c *serverConn, alg string, digest [resume.DigestSize]byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess.conn != c || sess.state != stateStreaming {
		return false // revoked meanwhile
	}
	sess.state = stateComplete
	sess.digest, sess.digestAlg = digest, alg
	return true
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
