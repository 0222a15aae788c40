package metrics

import (
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
)

// SDKBuckets are the buckets of the SDK's timers, in seconds: from a
// millisecond (a poll answered at once) to the SDK's long polls (a minute)
// and beyond.
var SDKBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// SDKHandler returns the Temporal SDK metrics handler that puts the SDK's
// metrics (temporal_*: requests, polls, task latencies, activity and
// workflow outcomes) on this registry, for client.Options.MetricsHandler.
// Counters and gauges keep the SDK's names; a timer is a histogram in
// seconds under the SDK's name. Tags become labels. A nil Metrics gives the
// SDK's no-op handler.
func (m *Metrics) SDKHandler() client.MetricsHandler {
	if m == nil {
		return client.MetricsNopHandler
	}
	m.sdkOnce.Do(func() {
		m.sdk = &sdkCollector{kinds: map[string]sdkKind{}, series: map[string]prometheus.Collector{}}
		// Unchecked (it describes nothing): the SDK emits one name with
		// differing tag sets, which the registry's checks would refuse.
		m.reg.MustRegister(m.sdk)
	})
	return sdkHandler{c: m.sdk}
}

type sdkKind int

const (
	sdkCounter sdkKind = iota + 1
	sdkGauge
	sdkTimer
)

// sdkCollector holds one prometheus metric per SDK name and tag set,
// created on first use.
type sdkCollector struct {
	mu     sync.Mutex
	kinds  map[string]sdkKind              // name -> the kind it was first used as
	series map[string]prometheus.Collector // name + tags -> metric
}

func (c *sdkCollector) Describe(chan<- *prometheus.Desc) {}

func (c *sdkCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	all := make([]prometheus.Collector, 0, len(c.series))
	for _, s := range c.series {
		all = append(all, s)
	}
	c.mu.Unlock()
	for _, s := range all {
		s.Collect(ch)
	}
}

// get returns the metric of name and tags, making it with mk. A name used
// as another kind than first (the SDK does not) gets nil: a scrape must not
// fail over one metric.
func (c *sdkCollector) get(kind sdkKind, name string, tags map[string]string, mk func(prometheus.Opts) prometheus.Collector) prometheus.Collector {
	name = sanitize(name)
	labels := make(prometheus.Labels, len(tags))
	keys := make([]string, 0, len(tags))
	for k, v := range tags {
		k = sanitize(k)
		labels[k] = v
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var id strings.Builder
	id.WriteString(name)
	for _, k := range keys {
		id.WriteString("\xff" + k + "\xfe" + labels[k])
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.kinds[name]; ok && k != kind {
		return nil
	}
	c.kinds[name] = kind
	s, ok := c.series[id.String()]
	if !ok {
		s = mk(prometheus.Opts{Name: name, Help: "Temporal SDK metric " + name + ".", ConstLabels: labels})
		c.series[id.String()] = s
	}
	return s
}

// sanitize makes s a valid Prometheus metric or label name.
func sanitize(s string) string {
	b := []byte(s)
	for i, r := range b {
		ok := r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}

type sdkHandler struct {
	c    *sdkCollector
	tags map[string]string
}

func (h sdkHandler) WithTags(tags map[string]string) client.MetricsHandler {
	merged := make(map[string]string, len(h.tags)+len(tags))
	for k, v := range h.tags {
		merged[k] = v
	}
	for k, v := range tags {
		merged[k] = v
	}
	return sdkHandler{c: h.c, tags: merged}
}

type counterFunc func(int64)

func (f counterFunc) Inc(d int64) { f(d) }

type gaugeFunc func(float64)

func (f gaugeFunc) Update(v float64) { f(v) }

type timerFunc func(time.Duration)

func (f timerFunc) Record(d time.Duration) { f(d) }

func (h sdkHandler) Counter(name string) client.MetricsCounter {
	s := h.c.get(sdkCounter, name, h.tags, func(o prometheus.Opts) prometheus.Collector {
		return prometheus.NewCounter(prometheus.CounterOpts(o))
	})
	c, ok := s.(prometheus.Counter)
	if !ok {
		return counterFunc(func(int64) {})
	}
	return counterFunc(func(d int64) {
		if d > 0 {
			c.Add(float64(d))
		}
	})
}

func (h sdkHandler) Gauge(name string) client.MetricsGauge {
	s := h.c.get(sdkGauge, name, h.tags, func(o prometheus.Opts) prometheus.Collector {
		return prometheus.NewGauge(prometheus.GaugeOpts(o))
	})
	g, ok := s.(prometheus.Gauge)
	if !ok {
		return gaugeFunc(func(float64) {})
	}
	return gaugeFunc(g.Set)
}

func (h sdkHandler) Timer(name string) client.MetricsTimer {
	s := h.c.get(sdkTimer, name, h.tags, func(o prometheus.Opts) prometheus.Collector {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: o.Name, Help: o.Help + " In seconds.", ConstLabels: o.ConstLabels, Buckets: SDKBuckets})
	})
	hist, ok := s.(prometheus.Histogram)
	if !ok {
		return timerFunc(func(time.Duration) {})
	}
	return timerFunc(func(d time.Duration) { hist.Observe(d.Seconds()) })
}
