// Package metrics holds a worker's Prometheus metrics: ferry's own (bytes
// moved, rates, step durations, failures by error type, resumes and
// reconnects, per-job freshness) and, on the same registry, the Temporal
// SDK's (see SDKHandler). The data plane and the activities update them
// where the bytes and steps happen; nothing here computes them apart.
//
// Every method is safe on a nil *Metrics and does nothing: a worker without
// --metrics-address runs the same code paths with metrics off.
//
// Labels stay few and bounded: the ferry job, the peer host, the direction,
// the step (an activity name) and the error type. Snapshot names, offsets
// and tokens are never labels.
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// Label names. The job label is ferry_job, not job: Prometheus sets job on
// every scraped series to the scrape job's name, and a target's own job
// label would be renamed exported_job (or overwrite it with honor_labels).
const (
	LabelJob       = "ferry_job"
	LabelPeer      = "peer"
	LabelDirection = "direction"
	LabelStep      = "step"
	LabelErrorType = "error_type"
	// LabelHost is on every ferry_ series: the worker's ferry host name.
	LabelHost = "host"
)

// Direction is which way a stream's bytes go, seen from this worker.
type Direction string

// Directions.
const (
	Received Direction = "received"
	Sent     Direction = "sent"
)

// Metric names, as exported (docs/metrics.md describes each).
const (
	NameStreamBytes    = "ferry_stream_bytes_total"
	NameWireBytes      = "ferry_wire_bytes_total"
	NameStreamRate     = "ferry_receive_stream_rate_bytes_per_second"
	NameWireRate       = "ferry_receive_wire_rate_bytes_per_second"
	NameBytesRemaining = "ferry_receive_bytes_remaining"
	NameStepDuration   = "ferry_step_duration_seconds"
	NameFailures       = "ferry_step_failures_total"
	NameResumes        = "ferry_resumes_total"
	NameRestarts       = "ferry_resume_restarts_total"
	NameReconnects     = "ferry_reconnects_total"
	NameLastSuccess    = "ferry_job_last_success_timestamp_seconds"
	NameInterval       = "ferry_job_interval_seconds"
)

// Names lists every metric the worker itself exports (the workflows add
// theirs through the SDK handler: workflows.MetricRuns, MetricLastFailure).
var Names = []string{
	NameStreamBytes, NameWireBytes, NameStreamRate, NameWireRate, NameBytesRemaining, NameStepDuration,
	NameFailures, NameResumes, NameRestarts, NameReconnects, NameLastSuccess, NameInterval,
}

// Metrics is one worker's registry and ferry's metrics on it.
type Metrics struct {
	reg *prometheus.Registry

	streamBytes, wireBytes *prometheus.CounterVec
	streamRate, wireRate   *prometheus.GaugeVec
	remaining              *prometheus.GaugeVec
	stepDuration           *prometheus.HistogramVec
	failures               *prometheus.CounterVec
	resumes, restarts      *prometheus.CounterVec
	reconnects             *prometheus.CounterVec
	lastSuccess, interval  *prometheus.GaugeVec

	successMu sync.Mutex // orders Succeeded and SucceededAtLeast

	sdkOnce sync.Once
	sdk     *sdkCollector
}

// StepBuckets are the step-duration histogram's buckets, in seconds: from
// a tenth of a second (a mark) to about seven hours (a first full send).
var StepBuckets = prometheus.ExponentialBuckets(0.1, 4, 10)

// New makes the registry of the worker of host, with ferry's metrics, the
// Go runtime's and the process's (so process_start_time_seconds tells a
// restarted worker).
func New(host string) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := prometheus.WrapRegistererWith(prometheus.Labels{LabelHost: host}, reg)
	flow := []string{LabelDirection, LabelJob, LabelPeer}
	rx := []string{LabelJob, LabelPeer}
	m := &Metrics{
		reg: reg,
		streamBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: NameStreamBytes,
			Help: "Stream bytes (the backend's send stream, before compression and framing) received from or sent to a peer."}, flow),
		wireBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: NameWireBytes,
			Help: "Data-plane frame bytes (after compression, headers included, TLS not included) received from or sent to a peer; stream.bwlimit limits these."}, flow),
		streamRate: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: NameStreamRate,
			Help: "Stream bytes per second of the receive in progress over the last heartbeat interval; 0 when none runs."}, rx),
		wireRate: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: NameWireRate,
			Help: "Wire bytes per second of the receive in progress over the last heartbeat interval; 0 when none runs."}, rx),
		remaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: NameBytesRemaining,
			Help: "Stream bytes left of the step being received (the source's size estimate minus the bytes received); 0 once the step is received."}, []string{LabelJob}),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: NameStepDuration,
			Help: "Duration of each step (activity) this worker ran, successful or not.", Buckets: StepBuckets}, []string{LabelJob, LabelStep}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: NameFailures,
			Help: "Steps (activities) that failed on this worker, by error type (NoSpace, NotFound, Conflict, Unsupported, Invalid, Temporary, ...); Temporary ones are retried."},
			[]string{LabelJob, LabelStep, LabelErrorType}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: NameResumes,
			Help: "Receives that continued a partial receive instead of starting at byte 0."}, rx),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: NameRestarts,
			Help: "Resumes the source refused (its stream no longer matched the partial), so the receive started over from byte 0."}, rx),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: NameReconnects,
			Help: "Data-plane connections re-established within a receive after a fault."}, rx),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: NameLastSuccess,
			Help: "Unix time of the job's last successful replication, set by the job's target worker when the run marks what it received."}, []string{LabelJob}),
		interval: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: NameInterval,
			Help: "The job's schedule interval in seconds from the config (for cron, the gap between its next two times); exported by the target worker of scheduled jobs."}, []string{LabelJob}),
	}
	f.MustRegister(m.streamBytes, m.wireBytes, m.streamRate, m.wireRate, m.remaining, m.stepDuration,
		m.failures, m.resumes, m.restarts, m.reconnects, m.lastSuccess, m.interval)
	return m
}

// Registry is where other collectors (the SDK's) register.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Handler serves the registry in the Prometheus text format. A collector
// that fails does not fail the scrape: the rest is still served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Flow counts one stream's bytes in one direction. Resolve it once per
// stream (Metrics.Flow) and add from the hot path.
type Flow struct {
	stream, wire prometheus.Counter
}

// Flow returns the counters of job's stream with peer in direction dir.
func (m *Metrics) Flow(dir Direction, job, peer string) *Flow {
	if m == nil {
		return nil
	}
	return &Flow{
		stream: m.streamBytes.WithLabelValues(string(dir), job, peer),
		wire:   m.wireBytes.WithLabelValues(string(dir), job, peer),
	}
}

// AddStream counts n stream bytes.
func (f *Flow) AddStream(n int64) {
	if f != nil && n > 0 {
		f.stream.Add(float64(n))
	}
}

// AddWire counts n wire bytes.
func (f *Flow) AddWire(n int64) {
	if f != nil && n > 0 {
		f.wire.Add(float64(n))
	}
}

// ReceiveProgress sets the rates and the bytes remaining of job's receive
// from peer. remaining below zero (an estimate exceeded) is shown as 0.
func (m *Metrics) ReceiveProgress(job, peer string, streamRate, wireRate float64, remaining int64) {
	if m == nil {
		return
	}
	m.streamRate.WithLabelValues(job, peer).Set(streamRate)
	m.wireRate.WithLabelValues(job, peer).Set(wireRate)
	m.remaining.WithLabelValues(job).Set(float64(max(remaining, 0)))
}

// ReceiveEnded zeroes the rates of job's receive from peer; received says
// the step's stream is complete, so nothing remains of it. A receive that
// failed keeps its last bytes-remaining figure: the step is still to do.
func (m *Metrics) ReceiveEnded(job, peer string, received bool) {
	if m == nil {
		return
	}
	m.streamRate.WithLabelValues(job, peer).Set(0)
	m.wireRate.WithLabelValues(job, peer).Set(0)
	if received {
		m.remaining.WithLabelValues(job).Set(0)
	}
}

// ReceiveStarted makes the resume, restart and reconnect counters of job's
// receives from peer exist at 0, so that increase() and alerts over them see
// a series before the first interruption rather than none.
func (m *Metrics) ReceiveStarted(job, peer string) {
	if m != nil {
		m.resumes.WithLabelValues(job, peer)
		m.restarts.WithLabelValues(job, peer)
		m.reconnects.WithLabelValues(job, peer)
	}
}

// Resumed counts a receive of job from peer that continued a partial.
func (m *Metrics) Resumed(job, peer string) {
	if m != nil {
		m.resumes.WithLabelValues(job, peer).Inc()
	}
}

// Restarted counts a resume of job from peer that the source refused.
func (m *Metrics) Restarted(job, peer string) {
	if m != nil {
		m.restarts.WithLabelValues(job, peer).Inc()
	}
}

// Reconnects returns the reconnect counter of job's receive from peer.
func (m *Metrics) Reconnects(job, peer string) prometheus.Counter {
	if m == nil {
		return nil
	}
	return m.reconnects.WithLabelValues(job, peer)
}

// Step records one step (activity) of job that took d; errType is the
// failure's error type, "" when it succeeded.
func (m *Metrics) Step(job, step string, d time.Duration, errType string) {
	if m == nil {
		return
	}
	m.stepDuration.WithLabelValues(job, step).Observe(d.Seconds())
	if errType != "" {
		m.failures.WithLabelValues(job, step, errType).Inc()
	}
}

// Succeeded records that job's replication succeeded at t.
func (m *Metrics) Succeeded(job string, t time.Time) {
	if m == nil {
		return
	}
	m.successMu.Lock()
	defer m.successMu.Unlock()
	m.lastSuccess.WithLabelValues(job).Set(float64(t.UnixNano()) / 1e9)
}

// SucceededAtLeast records t as job's last success unless a later one is
// known: a worker that starts seeds it from what its storage holds, which
// must not hide a success recorded meanwhile.
func (m *Metrics) SucceededAtLeast(job string, t time.Time) {
	if m == nil {
		return
	}
	m.successMu.Lock()
	defer m.successMu.Unlock()
	g := m.lastSuccess.WithLabelValues(job)
	v := float64(t.UnixNano()) / 1e9
	var cur dto.Metric
	if err := g.Write(&cur); err == nil && cur.GetGauge().GetValue() >= v {
		return
	}
	g.Set(v)
}

// Interval exports job's schedule interval.
func (m *Metrics) Interval(job string, every time.Duration) {
	if m != nil && every > 0 {
		m.interval.WithLabelValues(job).Set(every.Seconds())
	}
}
