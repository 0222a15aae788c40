package transfer

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-nas/ferry/metrics"
)

// counter sums the series of name on m whose labels include want.
func counter(t *testing.T, m *metrics.Metrics, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	require.NoError(t, err)
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, s := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range s.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue next
				}
			}
			sum += s.GetCounter().GetValue()
		}
	}
	return sum
}

// TestMetricsCountWhatMoves: across a cut connection and its resume, the
// target's received counters are the stream's own Stats (stream bytes the
// stream's size, wire bytes what the frame reader read, reconnects), and
// the source counted at least as much sent (frames in flight at the cut
// are sent and never received).
func TestMetricsCountWhatMoves(t *testing.T) {
	const size = 8 << 20
	srcM, dstM := metrics.New(srcHost), metrics.New(dstHost)
	e := newEnv(t, func(c *ServerConfig) { c.Metrics = srcM })
	tok := e.register(SessionSpec{Job: "share01", Open: genOpen(3, nasMix, size, nil), Compress: true})
	r := newRelay(t, e.addr, func(i int) relayPlan {
		if i == 0 {
			return relayPlan{cutAfter: 1 << 20}
		}
		return relayPlan{}
	})
	req := e.fetch(tok)
	req.Address, req.Compress, req.Job = r.addr(), true, "share01"
	cfg := e.clientCfg(dstHost)
	cfg.Metrics = dstM
	s, err := e.open(context.Background(), cfg, req)
	require.NoError(t, err)
	_, n, err := drain(s)
	require.NoError(t, err)
	require.Equal(t, int64(size), n)
	st := s.Stats()
	require.GreaterOrEqual(t, st.Reconnects, 1)

	rx := map[string]string{metrics.LabelDirection: "received", metrics.LabelJob: "share01", metrics.LabelPeer: srcHost}
	assert.Equal(t, float64(size), counter(t, dstM, metrics.NameStreamBytes, rx))
	assert.Equal(t, float64(st.WireBytes), counter(t, dstM, metrics.NameWireBytes, rx))
	assert.Equal(t, float64(st.Reconnects), counter(t, dstM, metrics.NameReconnects, map[string]string{metrics.LabelJob: "share01"}))

	tx := map[string]string{metrics.LabelDirection: "sent", metrics.LabelJob: "share01", metrics.LabelPeer: dstHost}
	assert.GreaterOrEqual(t, counter(t, srcM, metrics.NameStreamBytes, tx), float64(size))
	assert.GreaterOrEqual(t, counter(t, srcM, metrics.NameWireBytes, tx), float64(st.WireBytes))
	assert.Less(t, counter(t, srcM, metrics.NameWireBytes, tx), float64(size), "zstd: fewer wire bytes than stream bytes")
}
