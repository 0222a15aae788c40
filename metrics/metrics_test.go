package metrics

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"
)

// scrape fetches m's handler over HTTP and parses the text format.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

// value returns the value of the series of name whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	t.Helper()
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func TestNilMetricsDoNothing(t *testing.T) {
	var m *Metrics
	m.Flow(Received, "j", "p").AddStream(5)
	m.Flow(Sent, "j", "p").AddWire(5)
	m.ReceiveProgress("j", "p", 1, 1, 1)
	m.ReceiveEnded("j", "p", true)
	m.Resumed("j", "p")
	m.Restarted("j", "p")
	m.ReceiveStarted("j", "p")
	m.Step("j", "Receive", time.Second, "Temporary")
	m.Succeeded("j", time.Now())
	m.SucceededAtLeast("j", time.Now())
	m.Interval("j", time.Hour)
	require.Nil(t, m.Reconnects("j", "p"))
	require.NotNil(t, m.SDKHandler())
	m.SDKHandler().WithTags(map[string]string{"a": "b"}).Counter("temporal_x").Inc(1)
}

func TestFerryMetricsAreScraped(t *testing.T) {
	m := New("nas-b")
	rx := m.Flow(Received, "share", "nas-a")
	rx.AddStream(100)
	rx.AddWire(120)
	rx.AddStream(-3) // ignored: counters only grow
	m.Flow(Sent, "share", "nas-c").AddWire(7)
	m.ReceiveProgress("share", "nas-a", 50, 60, 900)
	m.Resumed("share", "nas-a")
	m.Reconnects("share", "nas-a").Inc()
	m.Step("share", "Receive", 3*time.Second, "")
	m.Step("share", "Receive", time.Second, "NoSpace")
	at := time.Unix(1_700_000_000, 500_000_000)
	m.Succeeded("share", at)
	m.SucceededAtLeast("share", at.Add(-time.Hour)) // older: ignored
	m.SucceededAtLeast("other", at.Add(-time.Hour))
	m.Interval("share", 15*time.Minute)

	fams := scrape(t, m)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{NameStreamBytes, map[string]string{LabelDirection: "received", LabelJob: "share", LabelPeer: "nas-a", LabelHost: "nas-b"}, 100},
		{NameWireBytes, map[string]string{LabelDirection: "received", LabelJob: "share", LabelPeer: "nas-a"}, 120},
		{NameWireBytes, map[string]string{LabelDirection: "sent", LabelJob: "share", LabelPeer: "nas-c"}, 7},
		{NameStreamRate, map[string]string{LabelJob: "share", LabelPeer: "nas-a"}, 50},
		{NameWireRate, map[string]string{LabelJob: "share", LabelPeer: "nas-a"}, 60},
		{NameBytesRemaining, map[string]string{LabelJob: "share"}, 900},
		{NameResumes, map[string]string{LabelJob: "share", LabelPeer: "nas-a"}, 1},
		{NameReconnects, map[string]string{LabelJob: "share", LabelPeer: "nas-a"}, 1},
		{NameStepDuration, map[string]string{LabelJob: "share", LabelStep: "Receive"}, 2},
		{NameFailures, map[string]string{LabelJob: "share", LabelStep: "Receive", LabelErrorType: "NoSpace"}, 1},
		{NameLastSuccess, map[string]string{LabelJob: "share"}, 1_700_000_000.5},
		{NameLastSuccess, map[string]string{LabelJob: "other"}, 1_699_996_400.5},
		{NameInterval, map[string]string{LabelJob: "share"}, 900},
	} {
		got, ok := value(t, fams, c.name, c.labels)
		require.True(t, ok, "%s%v not scraped", c.name, c.labels)
		require.Equal(t, c.want, got, "%s%v", c.name, c.labels)
	}
	_, ok := value(t, fams, NameFailures, map[string]string{LabelErrorType: ""})
	require.False(t, ok, "a successful step is not a failure")
	require.Contains(t, fams, "process_start_time_seconds")
	require.Contains(t, fams, "go_goroutines")

	m.ReceiveEnded("share", "nas-a", true)
	fams = scrape(t, m)
	for _, name := range []string{NameStreamRate, NameWireRate, NameBytesRemaining} {
		got, _ := value(t, fams, name, map[string]string{LabelJob: "share"})
		require.Zero(t, got, name)
	}
}

// TestReceiveStartedMakesCountersExist: a receive that was never
// interrupted still shows its resume, restart and reconnect counters, at 0.
func TestReceiveStartedMakesCountersExist(t *testing.T) {
	m := New("nas-b")
	m.ReceiveStarted("share", "nas-a")
	fams := scrape(t, m)
	for _, name := range []string{NameResumes, NameRestarts, NameReconnects} {
		got, ok := value(t, fams, name, map[string]string{LabelJob: "share", LabelPeer: "nas-a", LabelHost: "nas-b"})
		require.True(t, ok, "%s not scraped after a receive started", name)
		require.Zero(t, got, name)
	}
}

// TestSDKHandler: the SDK's counters, gauges and timers land on the same
// registry under their names, tags as labels, even when one name comes
// with different tag sets; a name reused as another kind is dropped rather
// than failing the scrape.
func TestSDKHandler(t *testing.T) {
	m := New("nas-a")
	h := m.SDKHandler().WithTags(map[string]string{"namespace": "default"})
	h.Counter("temporal_request").Inc(2)
	h.WithTags(map[string]string{"operation": "PollActivityTaskQueue"}).Counter("temporal_request").Inc(3)
	h.Gauge("temporal_num_pollers").Update(4)
	h.Timer("temporal_request_latency").Record(1500 * time.Millisecond)
	h.Gauge("temporal_request").Update(9) // wrong kind: ignored
	h.WithTags(map[string]string{"worker-type": "x"}).Counter("temporal.odd name").Inc(1)

	fams := scrape(t, m)
	got, ok := value(t, fams, "temporal_request", map[string]string{"namespace": "default", "operation": ""})
	require.True(t, ok)
	require.Equal(t, 2.0, got)
	got, _ = value(t, fams, "temporal_request", map[string]string{"namespace": "default", "operation": "PollActivityTaskQueue"})
	require.Equal(t, 3.0, got)
	got, _ = value(t, fams, "temporal_num_pollers", nil)
	require.Equal(t, 4.0, got)
	lat := fams["temporal_request_latency"].GetMetric()[0].GetHistogram()
	require.Equal(t, uint64(1), lat.GetSampleCount())
	require.InDelta(t, 1.5, lat.GetSampleSum(), 1e-9)
	got, _ = value(t, fams, "temporal_odd_name", map[string]string{"worker_type": "x"})
	require.Equal(t, 1.0, got)
}
