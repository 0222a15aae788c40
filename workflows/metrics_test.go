package workflows

import (
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/client"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/metrics"
)

// withMetrics gives the test a fresh environment whose workflow metrics go
// to a registry, and returns a reader of its series.
func (s *replicateSuite) withMetrics() func(name string, labels map[string]string) (float64, bool) {
	m := metrics.New("test")
	s.SetMetricsHandler(m.SDKHandler())
	s.T().Cleanup(func() { s.SetMetricsHandler(client.MetricsNopHandler) })
	s.SetupTest()
	return func(name string, want map[string]string) (float64, bool) {
		fams, err := m.Registry().Gather()
		s.Require().NoError(err)
		for _, f := range fams {
			if f.GetName() != name {
				continue
			}
		next:
			for _, mt := range f.GetMetric() {
				got := map[string]string{}
				for _, l := range mt.GetLabel() {
					got[l.GetName()] = l.GetValue()
				}
				for k, v := range want {
					if got[k] != v {
						continue next
					}
				}
				if mt.Counter != nil {
					return mt.GetCounter().GetValue(), true
				}
				return mt.GetGauge().GetValue(), true
			}
		}
		return 0, false
	}
}

func (s *replicateSuite) TestSuccessfulRunIsCounted() {
	read := s.withMetrics()
	s.happyPath()
	s.expectReceiveOK()
	s.expectVerifyOK()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	s.result()
	n, ok := read(MetricRuns, map[string]string{metrics.LabelJob: "share01", "outcome": "succeeded"})
	s.True(ok)
	s.Equal(1.0, n)
	_, ok = read(MetricRuns, map[string]string{"outcome": "failed"})
	s.False(ok)
	_, ok = read(MetricLastFailure, nil)
	s.False(ok)
}

func (s *replicateSuite) TestFailedRunIsCountedWithItsErrorType() {
	read := s.withMetrics()
	s.happyPath()
	s.env.OnActivity(act.Receive, mock.Anything, mock.Anything).Return(activities.ReceiveResult{}, appErr(activities.ErrNoSpace, true)).Once()
	s.expectCompensation()
	s.env.ExecuteWorkflow(ReplicateWorkflow, testInput)
	s.requireFailure(activities.ErrNoSpace)
	n, ok := read(MetricRuns, map[string]string{metrics.LabelJob: "share01", "outcome": "failed", metrics.LabelErrorType: activities.ErrNoSpace})
	s.True(ok)
	s.Equal(1.0, n)
	at, ok := read(MetricLastFailure, map[string]string{metrics.LabelJob: "share01"})
	s.True(ok)
	s.GreaterOrEqual(at, float64(testStart.Unix()), "the workflow's time of the failure")
}
