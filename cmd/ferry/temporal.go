package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/logging"
)

// dialTimeout bounds the first contact with the Temporal frontend, so a
// command against a server that is not running fails in seconds.
const dialTimeout = 10 * time.Second

// dialTemporal connects to the Temporal frontend named in cfg (address,
// namespace and, when temporal.tls is present, TLS or mutual TLS). The SDK
// logs through logger at warn level or above unless logger is at debug, so a
// command's own output stays readable. When nothing answers, the error names
// the address and says what to do about it. Each tweak adjusts the client
// options before dialling (the worker's metrics handler).
func dialTemporal(ctx context.Context, cfg *config.Config, logger *zap.Logger, tweaks ...func(*client.Options)) (client.Client, error) {
	addr, ns := temporalAddress(cfg), cfg.Temporal.Namespace
	if ns == "" {
		ns = config.DefaultNamespace
	}
	opts := client.Options{
		HostPort:  addr,
		Namespace: ns,
		Logger:    sdkLogger(logger),
	}
	if t := cfg.Temporal.TLS; t != nil {
		tc, err := clientTLS(t)
		if err != nil {
			return nil, fmt.Errorf("temporal.tls: %w", err)
		}
		opts.ConnectionOptions.TLS = tc
	}
	for _, t := range tweaks {
		t(&opts)
	}

	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	c, err := client.DialContext(dctx, opts)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		where := "temporal.address"
		if cfg.Temporal.TLS != nil {
			where = "temporal.address or temporal.tls"
		}
		if cfg.File != "" {
			where += " in " + cfg.File
		}
		return nil, fmt.Errorf("cannot reach Temporal at %s (namespace %s): %w\n"+
			"start the embedded server with `ferry server` on that host, or fix %s", addr, ns, err, where)
	}
	return c, nil
}

// temporalAddress is the frontend address cfg names, or the default.
func temporalAddress(cfg *config.Config) string {
	if cfg.Temporal.Address == "" {
		return config.DefaultTemporalAddress
	}
	return cfg.Temporal.Address
}

// clientTLS builds the TLS configuration of the Temporal client: the given
// CA (or the system roots), the client certificate for mutual TLS when one is
// configured, and an optional server name override.
func clientTLS(t *config.ClientTLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("reading the CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", t.CA)
		}
		tc.RootCAs = pool
	}
	if t.Cert != "" || t.Key != "" {
		if t.Cert == "" || t.Key == "" {
			return nil, errors.New("cert and key must be given together")
		}
		pair, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("loading the client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

// sdkLogger adapts logger to the SDK's key-value logger. The SDK is chatty
// at info level (worker start and stop, every retry), so below debug only
// its warnings and errors get through.
func sdkLogger(logger *zap.Logger) sdklog.Logger {
	if logger == nil {
		logger = zap.NewNop()
	}
	if !logger.Core().Enabled(zapcore.DebugLevel) {
		logger = logger.WithOptions(zap.IncreaseLevel(zapcore.WarnLevel))
	}
	return logging.Temporal(logger.Named("temporal"))
}

// configAndClient loads the config at path and dials the Temporal it names,
// for the commands that talk to Temporal and nothing else (apply, run,
// status). The caller closes the client and syncs the logger.
func configAndClient(ctx context.Context, path string) (*config.Config, client.Client, *zap.Logger, error) {
	logger, err := newLogger()
	if err != nil {
		return nil, nil, nil, err
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return nil, nil, logger, err
	}
	c, err := dialTemporal(ctx, cfg, logger)
	if err != nil {
		return nil, nil, logger, err
	}
	return cfg, c, logger, nil
}

// loadConfig loads the config at path; a missing file says how to name
// the right one.
func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	var nf *config.NotFoundError
	if errors.As(err, &nf) {
		return nil, fmt.Errorf("%w: pass the config file with --config FILE (without it ferry reads ferry.yaml in the current directory); deploy/ferry.example.yaml is an example", err)
	}
	return cfg, err
}

// webUIURL is where the run's page is in the web UI: under the job's
// notify.ui_url when the config names the UI there, else in the UI of
// `ferry server` (port 8233 on the Temporal host), the likely place.
func webUIURL(cfg *config.Config, job config.Job, workflowID, runID string) string {
	base := job.Notify.UIURL
	if base == "" {
		host := "127.0.0.1"
		if h, _, err := net.SplitHostPort(cfg.Temporal.Address); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
			host = h
		}
		base = "http://" + net.JoinHostPort(host, "8233")
	}
	ns := cfg.Temporal.Namespace
	if ns == "" {
		ns = config.DefaultNamespace
	}
	return fmt.Sprintf("%s/namespaces/%s/workflows/%s/%s/history",
		strings.TrimRight(base, "/"), url.PathEscape(ns), url.PathEscape(workflowID), url.PathEscape(runID))
}

// localTime renders t for people: local time, to the minute, with the zone.
func localTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04 MST")
}
