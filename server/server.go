// Package server runs ferry's embedded Temporal server: one process with the
// frontend, history, matching and worker services, SQLite (pure Go) as the
// only store, and the Temporal web UI.
//
// The database is a file (default ./ferry-data/temporal.db) or, with
// Options.Ephemeral, an in-memory database that is gone when the process
// ends. The namespace is created when missing and ferry's search attributes
// are registered on every start; both steps are idempotent, so a server
// restarted on the same file finds its workflows where it left them.
//
// Addresses: the frontend listens on Options.Address (an IP:port, default
// 127.0.0.1:7233); the other services listen on free loopback ports. The web
// UI listens on 127.0.0.1:8233 by default, reachable from this host only; to
// reach it from the LAN, set UIAddress to "0.0.0.0:8233" (`ferry server
// --ui-address 0.0.0.0:8233`) - the UI has no authentication, so do that only
// on a trusted network.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/server/temporal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ferry-nas/ferry/visibility"
)

// Defaults for Options.
const (
	DefaultAddress   = "127.0.0.1:7233"
	DefaultUIAddress = "127.0.0.1:8233"
	DefaultNamespace = "default"
	DefaultDBPath    = "ferry-data/temporal.db"
)

// UIOff as Options.UIAddress disables the web UI (as does "").
const UIOff = "off"

// Options configures Start. The zero value is not the default for every
// field: see each one.
type Options struct {
	// DBPath is the SQLite file; its directory is created. Default
	// ./ferry-data/temporal.db. Must be empty when Ephemeral is set.
	DBPath string
	// Ephemeral keeps everything in memory: nothing is written to disk and
	// nothing survives the process.
	Ephemeral bool
	// Address is the frontend's gRPC listen address, IP:port (not a name).
	// Default 127.0.0.1:7233; port 0 picks a free port (see FrontendAddress).
	Address string
	// UIAddress is the web UI's listen address, HOST:PORT; port 0 picks a
	// free port. "" or "off" disables the UI, so the zero value has none;
	// `ferry server` passes DefaultUIAddress, 127.0.0.1:8233 (this host
	// only; "0.0.0.0:8233" exposes it).
	UIAddress string
	// Namespace is created if missing. Default "default".
	Namespace string
	// Logger receives the server's logs (named "temporal"); nil discards them.
	Logger *zap.Logger
	// TemporalLogLevel is the lowest level of the Temporal server's own logs
	// that reach Logger: debug, info, warn or error. Default warn.
	TemporalLogLevel string
}

// withDefaults fills in defaults. UIAddress is left as given ("" is off).
func (o Options) withDefaults() Options {
	if o.Address == "" {
		o.Address = DefaultAddress
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if !o.Ephemeral && o.DBPath == "" {
		o.DBPath = DefaultDBPath
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o
}

// Server is a running embedded Temporal server. Stop it with Stop.
type Server struct {
	temporal  temporal.Server
	ui        *uiserver.Server
	lock      *os.File
	frontend  string
	uiURL     string
	namespace string
	dbPath    string
	log       *zap.Logger
	logLevel  zap.AtomicLevel
	stopOnce  sync.Once
	stopErr   error
}

// FrontendAddress is the host:port a client on this host dials (an
// unspecified listen IP such as 0.0.0.0 is given as loopback).
func (s *Server) FrontendAddress() string { return s.frontend }

// UIURL is the web UI's URL, or "" when the UI is off.
func (s *Server) UIURL() string { return s.uiURL }

// Namespace is the namespace that was created or found.
func (s *Server) Namespace() string { return s.namespace }

// DBPath is the absolute path of the database file, or "" when ephemeral.
func (s *Server) DBPath() string { return s.dbPath }

var namespaceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$`)

// startTimeout bounds the wait for the services, the UI and the search
// attribute registration when ctx has no deadline of its own.
const startTimeout = time.Minute

// Start starts the server and returns once the frontend answers, the
// namespace exists with ferry's search attributes and the UI (if enabled)
// serves pages. On error nothing is left running.
func Start(ctx context.Context, opts Options) (_ *Server, err error) {
	if opts.Ephemeral && opts.DBPath != "" {
		return nil, errors.New("a database file and ephemeral mode are mutually exclusive (--db or --ephemeral, not both)")
	}
	opts = opts.withDefaults()
	if !namespaceRE.MatchString(opts.Namespace) {
		return nil, fmt.Errorf("namespace %q: use 2-255 letters, digits, '.', '-' or '_', starting with a letter or digit (--namespace)", opts.Namespace)
	}
	level, err := parseLevel(opts.TemporalLogLevel)
	if err != nil {
		return nil, err
	}
	ip, port, err := parseFrontendAddress(opts.Address)
	if err != nil {
		return nil, err
	}
	uiEnabled := opts.UIAddress != "" && opts.UIAddress != UIOff
	var uiHost string
	var uiPort int
	if uiEnabled {
		if uiHost, uiPort, err = parseUIAddress(opts.UIAddress); err != nil {
			return nil, err
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}

	s := &Server{namespace: opts.Namespace, log: opts.Logger, logLevel: zap.NewAtomicLevelAt(level)}
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()

	// Ports first: a busy port must be an error naming the option, and both
	// the Temporal server and the UI server end the process on listen errors.
	var held listeners
	defer held.closeAll()
	l, port, err := reserve("frontend", ip.String(), port, "--address")
	if err != nil {
		return nil, err
	}
	held.add(l)
	frontendHost := dialHost(ip.String())
	s.frontend = net.JoinHostPort(frontendHost, strconv.Itoa(port))
	if uiEnabled {
		l, uiPort, err = reserve("UI", uiHost, uiPort, "--ui-address (or --ui-address off)")
		if err != nil {
			return nil, err
		}
		held.add(l)
		s.uiURL = "http://" + net.JoinHostPort(dialHost(uiHost), strconv.Itoa(uiPort))
	}
	internal := map[string]int{}
	for _, svc := range []string{"history", "matching", "worker"} {
		l, p, err := reserve("internal "+svc, loopback, 0, "--address")
		if err != nil {
			return nil, err
		}
		held.add(l)
		internal[svc] = p
	}

	// Store.
	var store = sqlConfig("")
	if !opts.Ephemeral {
		if s.dbPath, err = filepath.Abs(opts.DBPath); err != nil {
			return nil, fmt.Errorf("database file %s: %w", opts.DBPath, err)
		}
		if err = os.MkdirAll(filepath.Dir(s.dbPath), 0o750); err != nil {
			return nil, fmt.Errorf("database file %s: create directory: %w", s.dbPath, err)
		}
		if fi, statErr := os.Stat(s.dbPath); statErr == nil && fi.IsDir() {
			return nil, fmt.Errorf("database file %s is a directory; give a file path such as %s", s.dbPath, filepath.Join(s.dbPath, "temporal.db"))
		}
		if s.lock, err = lockDB(s.dbPath); err != nil {
			return nil, err
		}
		if err = prepareFile(s.dbPath); err != nil {
			return nil, err
		}
		store = sqlConfig(s.dbPath)
	}
	if err = createNamespace(store, clusterName, opts.Namespace); err != nil {
		return nil, err
	}

	// Temporal.
	cfg := serverConfig(store, ip.String(), port, s.frontend, internal)
	srvOpts, err := serverOptions(cfg, temporalLogger(opts.Logger.Named("temporal"), s.logLevel), s.frontend, internal)
	if err != nil {
		return nil, err
	}
	held.closeAll() // hand the ports over: NewServer already opens listeners
	srv, err := temporal.NewServer(srvOpts...)
	if err != nil {
		return nil, fmt.Errorf("create the Temporal server: %w", err)
	}
	if err = srv.Start(); err != nil {
		return nil, fmt.Errorf("start the Temporal server: %w", err)
	}
	s.temporal = srv

	// UI.
	if uiEnabled {
		s.ui = newUI(uiHost, uiPort, s.frontend, opts.Namespace)
		go func() {
			// Start blocks until Stop; on a listen error it ends the process
			// itself (hence the reservation above).
			_ = s.ui.Start()
		}()
		if err = waitHTTP(ctx, s.uiURL+"/healthz"); err != nil {
			return nil, fmt.Errorf("web UI on %s did not come up: %w", s.uiURL, err)
		}
	}

	// Search attributes, once the frontend answers for the namespace.
	if err = s.register(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) register(ctx context.Context) error {
	c, err := client.DialContext(ctx, client.Options{
		HostPort:  s.frontend,
		Namespace: s.namespace,
		Logger:    newSDKLogger(s.log.Named("temporal-client"), s.logLevel),
	})
	if err != nil {
		return fmt.Errorf("connect to the frontend at %s: %w", s.frontend, err)
	}
	defer c.Close()
	for {
		err = visibility.Register(ctx, c, s.namespace)
		var unavailable *serviceerror.Unavailable
		var notFound *serviceerror.NamespaceNotFound
		if err == nil || !(errors.As(err, &unavailable) || errors.As(err, &notFound)) {
			break
		}
		select { // the namespace registry may not have loaded the namespace yet
		case <-ctx.Done():
			return fmt.Errorf("register search attributes: %w (%v)", err, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("register search attributes: %w", err)
	}
	return nil
}

// Stop stops the UI, then the Temporal server, and releases the database
// file. It is safe to call more than once.
//
// The SQLite plugin keeps its connections for the life of the process (an
// upstream choice), so a stopped server's database stays open, and an
// ephemeral one stays in memory, until the process exits; starting again on
// the same file in the same process reuses that connection.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		// While the services stop one by one, the ones still running log
		// warnings and errors about the ones already gone ("task queue
		// closed", failed polls). A failed stop is returned below.
		if s.logLevel.Level() < zapcore.DPanicLevel {
			s.logLevel.SetLevel(zapcore.DPanicLevel)
		}
		if s.ui != nil {
			s.ui.Stop()
		}
		if s.temporal != nil {
			if err := s.temporal.Stop(); err != nil {
				s.stopErr = fmt.Errorf("stop the Temporal server: %w", err)
			}
		}
		unlockDB(s.lock)
	})
	return s.stopErr
}

// waitHTTP polls url until it answers 200.
func waitHTTP(ctx context.Context, url string) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
