package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/robfig/cron/v3"
	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/logging"
	"github.com/ferry-nas/ferry/metrics"
	"github.com/ferry-nas/ferry/storage"
)

// MetricsAddress is where host's worker serves /metrics: the flag when
// given, else hosts.<h>.metrics_address; empty means metrics are off.
func MetricsAddress(h config.Host, flag string) string {
	if flag != "" {
		return flag
	}
	return h.MetricsAddress
}

// listenMetrics opens the metrics listener, the refusal naming the host,
// the address and where it came from.
func listenMetrics(h config.Host, addr, flag string, listen func(network, address string) (net.Listener, error)) (net.Listener, error) {
	where := "hosts." + h.Name + ".metrics_address"
	if flag != "" {
		where = "--metrics-address"
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("host %s: metrics address %q from %s is not host:port (%v); write e.g. 127.0.0.1:9400", h.Name, addr, where, err)
	}
	ln, err := listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("host %s: metrics server cannot listen on %s (%w); free the port or change %s", h.Name, addr, err, where)
	}
	return ln, nil
}

// serveMetrics serves /metrics on ln until stop is called. It is plain
// HTTP: the docs say to bind it to localhost or a management network.
func serveMetrics(ln net.Listener, m *metrics.Metrics, log *zap.Logger) (stop func()) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			// Replication goes on; the scrape's `up` shows the loss.
			log.Error("metrics server stopped; replication continues without /metrics", zap.Error(err))
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}
}

// exportJobs publishes, for every scheduled job this host is the target
// of, the schedule interval and, when the target holds the job's received
// mark, the creation time of the snapshot it names as the last success
// until the run that marks next sets the real one: a restarted worker
// must not leave a freshness alert without data.
func exportJobs(ctx context.Context, cfg *config.Config, host string, backend storage.Backend, m *metrics.Metrics, log *zap.Logger) {
	if m == nil {
		return
	}
	now := time.Now()
	for _, name := range cfg.JobNames() {
		j := cfg.Jobs[name]
		if j.Target.Host != host {
			continue
		}
		m.Interval(name, jobInterval(j, now))
		marks, err := backend.Marks(ctx, j.Target.Dataset)
		if err != nil {
			log.Warn("cannot read the job's marks for its last-success metric", logging.Job(name), zap.Error(err))
			continue
		}
		snap, ok := marks[activities.MarkName(activities.MarkReceived, name)]
		if !ok {
			continue
		}
		snaps, err := backend.ListSnapshots(ctx, j.Target.Dataset)
		if err != nil {
			log.Warn("cannot list the job's snapshots for its last-success metric", logging.Job(name), zap.Error(err))
			continue
		}
		for _, s := range snaps {
			if s.Name == snap && !s.CreatedAt.IsZero() {
				m.SucceededAtLeast(name, s.CreatedAt)
			}
		}
	}
}

// jobInterval is a scheduled job's interval: every, or for cron the gap
// between its next two times after now; 0 for a manual job.
func jobInterval(j config.Job, now time.Time) time.Duration {
	if j.Every > 0 {
		return j.Every
	}
	if j.Cron == "" {
		return 0
	}
	s, err := cron.ParseStandard(j.Cron) // validated with the config
	if err != nil {
		return 0
	}
	next := s.Next(now)
	return s.Next(next).Sub(next)
}
