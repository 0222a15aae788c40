package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"

	"github.com/ferry-nas/ferry/metrics"
	"github.com/ferry-nas/ferry/workflows"
)

// TestMetricsScrapedMidStream scrapes both workers' /metrics over HTTP as
// Prometheus would (nas-a's address from its config key, nas-b's from
// --metrics-address) during a rate-limited run and after it: the received
// bytes rise between two scrapes while the stream runs, with a rate and
// bytes remaining; afterwards the counters match what the run moved, the
// target's last-success time lies within the run, the steps were timed,
// and the Temporal SDK's own metrics are on the same endpoint. A restarted
// target seeds its last-success time from the mark it holds.
func TestMetricsScrapedMidStream(t *testing.T) {
	e := newEnv(t, envOptions{ShareSize: slowShare, BWLimit: slowRate, Metrics: true})
	job := map[string]string{metrics.LabelJob: e.job}
	rx := map[string]string{metrics.LabelJob: e.job, metrics.LabelDirection: string(metrics.Received), metrics.LabelPeer: source, metrics.LabelHost: target}
	tx := map[string]string{metrics.LabelJob: e.job, metrics.LabelDirection: string(metrics.Sent), metrics.LabelPeer: target, metrics.LabelHost: source}

	e.apply()
	began := time.Now()
	st := e.start()

	// First scrape: bytes received and the first heartbeat's rate and
	// bytes remaining (set every 2 s), with the stream far from done.
	var first map[string]*dto.MetricFamily
	var got1 float64
	e.waitFor(time.Minute, "nas-b's metrics to show the receive under way", func() (bool, error) {
		first = e.scrape(target)
		got1, _ = sample(first, metrics.NameStreamBytes, rx)
		rem, ok := sample(first, metrics.NameBytesRemaining, job)
		return got1 > 0 && ok && rem > 0, nil
	})
	rate, ok := sample(first, metrics.NameStreamRate, map[string]string{metrics.LabelJob: e.job, metrics.LabelPeer: source})
	require.True(t, ok, "no %s mid-stream", metrics.NameStreamRate)
	require.Greater(t, rate, 0.0, "the receive's rate mid-stream")
	rem, _ := sample(first, metrics.NameBytesRemaining, job)
	t.Logf("first scrape: %.0f stream bytes received, %.0f B/s, %.0f bytes remaining", got1, rate, rem)
	require.Less(t, got1, float64(e.shareSize), "the first scrape came after the stream was done; the rate limit did not hold")

	// Second scrape: more bytes, the run still going.
	var got2 float64
	e.waitFor(time.Minute, "nas-b's received bytes to rise between scrapes", func() (bool, error) {
		got2, _ = sample(e.scrape(target), metrics.NameStreamBytes, rx)
		return got2 > got1, nil
	})
	t.Logf("second scrape: %.0f stream bytes received", got2)

	res := e.mustSucceed(st)
	ended := time.Now()
	dst, src := e.scrape(target), e.scrape(source)

	final, _ := sample(dst, metrics.NameStreamBytes, rx)
	require.Greater(t, final, got2, "the second scrape was mid-stream")
	require.GreaterOrEqual(t, final, float64(e.shareSize), "a full send carries the whole share")
	wire, _ := sample(dst, metrics.NameWireBytes, rx)
	require.Equal(t, float64(res.Bytes), wire, "received wire bytes are the run's byte count (one attempt)")
	sentStream, _ := sample(src, metrics.NameStreamBytes, tx)
	require.Equal(t, final, sentStream, "the source sent the stream bytes the target received (no fault)")
	sentWire, _ := sample(src, metrics.NameWireBytes, tx)
	require.Equal(t, wire, sentWire, "the source wrote the frame bytes the target read")
	for _, name := range []string{metrics.NameStreamRate, metrics.NameWireRate} {
		v, _ := sample(dst, name, job)
		require.Zero(t, v, "%s after the run", name)
	}
	rem, _ = sample(dst, metrics.NameBytesRemaining, job)
	require.Zero(t, rem, "bytes remaining after the run")

	last, ok := sample(dst, metrics.NameLastSuccess, job)
	require.True(t, ok, "%s{%s=%q} not exported by the target", metrics.NameLastSuccess, metrics.LabelJob, e.job)
	lastAt := time.Unix(0, int64(last*1e9))
	require.False(t, lastAt.Before(began), "last success %v before the run began %v", lastAt, began)
	require.False(t, lastAt.After(ended), "last success %v after the run ended %v", lastAt, ended)
	_, ok = sample(src, metrics.NameLastSuccess, job)
	require.False(t, ok, "the source does not export the job's last success")

	for _, c := range []struct {
		fams map[string]*dto.MetricFamily
		step string
	}{{src, "CreateSnapshot"}, {src, "OpenSend"}, {src, "Mark"}, {dst, "Receive"}, {dst, "Verify"}, {dst, "Mark"}} {
		n, ok := sample(c.fams, metrics.NameStepDuration, map[string]string{metrics.LabelJob: e.job, metrics.LabelStep: c.step})
		require.True(t, ok && n >= 1, "step %s not timed", c.step)
	}
	_, failed := sample(dst, metrics.NameFailures, job)
	require.False(t, failed, "no step of the run failed")
	// The run's outcome comes from the workflow, on whichever worker ran
	// its last workflow task.
	var runs float64
	for _, fams := range []map[string]*dto.MetricFamily{src, dst} {
		n, _ := sample(fams, workflows.MetricRuns, map[string]string{metrics.LabelJob: e.job, "outcome": "succeeded"})
		runs += n
		_, ok := sample(fams, workflows.MetricRuns, map[string]string{metrics.LabelJob: e.job, "outcome": "failed"})
		require.False(t, ok, "a failed run counted")
	}
	require.Equal(t, 1.0, runs, "%s{outcome=succeeded} over both workers", workflows.MetricRuns)

	// The SDK's metrics share the endpoint: the activity the target ran,
	// and the Temporal requests of both workers.
	n, ok := sample(dst, "temporal_activity_execution_latency", map[string]string{"activity_type": "Receive"})
	require.True(t, ok && n >= 1, "the SDK's activity latency of Receive is not on nas-b's /metrics")
	for host, fams := range map[string]map[string]*dto.MetricFamily{source: src, target: dst} {
		var sdk []string
		for name := range fams {
			if strings.HasPrefix(name, "temporal_") {
				sdk = append(sdk, name)
			}
		}
		require.Contains(t, sdk, "temporal_request", "the SDK's request counter on %s", host)
		t.Logf("%s serves %d temporal_ metric families", host, len(sdk))
	}

	// A restarted target has no memory of the run; it seeds the last
	// success from the received mark it holds (the snapshot's time, within
	// the run and no later than the run's own figure).
	e.kill(target)
	e.restart(target)
	seeded, ok := sample(e.scrape(target), metrics.NameLastSuccess, job)
	require.True(t, ok, "a restarted target exports the job's last success")
	require.LessOrEqual(t, seeded, last)
	require.False(t, time.Unix(0, int64(seeded*1e9)).Before(began.Add(-time.Second)), "seeded last success %v is before the run", time.Unix(0, int64(seeded*1e9)))
}

// scrape fetches host's /metrics and parses it as Prometheus does.
func (e *env) scrape(host string) map[string]*dto.MetricFamily {
	e.t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + e.metrics[host] + "/metrics")
	require.NoError(e.t, err, "scrape %s", host)
	defer resp.Body.Close()
	require.Equal(e.t, http.StatusOK, resp.StatusCode, "scrape %s", host)
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(e.t, err, "parse %s's /metrics", host)
	return fams
}

// sample sums the series of name whose labels include want (counter,
// gauge, or a histogram's count); ok is false when there is none.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) (sum float64, ok bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		ok = true
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum, ok
}
