package transfer

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/metrics"
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
	// Metrics counts sent stream and wire bytes per job and peer; nil
	// counts nothing.
	Metrics *metrics.Metrics
}

// Server is a data server: it streams registered sessions to the hosts they
// are for.
type Server struct {
	tls  *tls.Config
	idle time.Duration
	log  *zap.Logger
	mtr  *metrics.Metrics

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
		mtr:       cfg.Metrics,
		ctx:       ctx,
		cancel:    cancel,
		sessions:  make(map[[32]byte]*session),
		jobs:      make(map[string]*jobLimiter),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*serverConn]struct{}),
		now:       time.Now,
	}, nil
}
