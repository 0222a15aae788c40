// Package deploy holds no code: its test checks the example Prometheus
// rules and Grafana dashboard against the metrics ferry exports.
package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/ferry-nas/ferry/metrics"
	"github.com/ferry-nas/ferry/workflows"
)

const (
	rulesFile = "prometheus/ferry-alerts.yml"
	rulesTest = "prometheus/ferry-alerts_test.yml"
	dashboard = "grafana/ferry.json"
)

// known are the metric names an expression may use: ferry's, the
// workflows' (through the SDK handler), the process collector's start
// time, Prometheus's up, and the SDK metrics the dashboard shows
// (go.temporal.io/sdk internal/common/metrics: TemporalRequestFailure).
func known() map[string]bool {
	k := map[string]bool{
		workflows.MetricRuns: true, workflows.MetricLastFailure: true,
		"process_start_time_seconds": true, "up": true,
		"temporal_request_failure": true,
	}
	for _, n := range metrics.Names {
		k[n] = true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		k[metrics.NameStepDuration+suffix] = true
	}
	return k
}

var (
	// Label lists (by, on, without, ignoring, group_left/right), strings
	// and label matchers' names are not metric names.
	labelLists = regexp.MustCompile(`\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)`)
	quoted     = regexp.MustCompile(`"[^"]*"`)
	matcher    = regexp.MustCompile(`\b[a-zA-Z_][a-zA-Z0-9_]*\s*(=~|!~|!=|=)`)
	ident      = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	// metricLike are the prefixes of names an expression may read.
	metricLike = regexp.MustCompile(`^(ferry_|temporal_|process_|go_|up$)`)
)

// metricNames returns the metric names expr reads.
func metricNames(expr string) []string {
	e := labelLists.ReplaceAllString(expr, " ")
	e = quoted.ReplaceAllString(e, " ")
	e = matcher.ReplaceAllString(e, " ")
	var names []string
	for _, id := range ident.FindAllString(e, -1) {
		if metricLike.MatchString(id) {
			names = append(names, id)
		}
	}
	sort.Strings(names)
	return names
}

func TestMetricNames(t *testing.T) {
	require.Equal(t, []string{"ferry_job_interval_seconds", "ferry_job_last_success_timestamp_seconds", "process_start_time_seconds"},
		metricNames(`max by (ferry_job) (ferry_job_interval_seconds * 0 + on (instance) group_left process_start_time_seconds) > ferry_job_last_success_timestamp_seconds{ferry_job="ferry_x"}`))
}

type rules struct {
	Groups []struct {
		Name  string
		Rules []struct {
			Alert string
			Expr  string
		}
	}
}

// TestAlertRules: the rules file parses, every expression reads only
// metrics ferry exports, and the alerts the docs promise are there; with
// promtool installed it also checks the rules and runs their unit tests.
func TestAlertRules(t *testing.T) {
	data, err := os.ReadFile(rulesFile)
	require.NoError(t, err)
	var r rules
	require.NoError(t, yaml.Unmarshal(data, &r))
	k := known()
	alerts := map[string]bool{}
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			require.NotEmpty(t, rule.Expr, "alert %s has no expr", rule.Alert)
			names := metricNames(rule.Expr)
			require.NotEmpty(t, names, "alert %s reads no metric", rule.Alert)
			for _, n := range names {
				require.True(t, k[n], "alert %s reads %s, which ferry does not export", rule.Alert, n)
			}
			alerts[rule.Alert] = true
		}
	}
	for _, a := range []string{"FerryReplicationStale", "FerryReplicationNeverSucceeded", "FerryJobFailing", "FerryStepsFailing", "FerryWorkerDown"} {
		require.True(t, alerts[a], "alert %s (docs/metrics.md) is missing", a)
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool is not installed (Debian: apt-get install prometheus): rules checked without it")
		return
	}
	out, err := exec.Command(promtool, "check", "rules", rulesFile).CombinedOutput()
	require.NoError(t, err, "promtool check rules:\n%s", out)
	cmd := exec.Command(promtool, "test", "rules", "ferry-alerts_test.yml")
	cmd.Dir = "prometheus"
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "promtool test rules:\n%s", out)
	t.Logf("promtool:\n%s", out)
}

// TestDashboard: the dashboard is JSON and every panel's queries read only
// metrics ferry exports.
func TestDashboard(t *testing.T) {
	data, err := os.ReadFile(dashboard)
	require.NoError(t, err)
	var d struct {
		Title  string
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	require.NoError(t, json.Unmarshal(data, &d))
	require.NotEmpty(t, d.Panels)
	k := known()
	used := map[string]bool{}
	for _, p := range d.Panels {
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, tg := range p.Targets {
			names := metricNames(tg.Expr)
			require.NotEmpty(t, names, "panel %q: %q reads no metric", p.Title, tg.Expr)
			for _, n := range names {
				require.True(t, k[n], "panel %q reads %s, which ferry does not export", p.Title, n)
				used[n] = true
			}
		}
	}
	for _, n := range metrics.Names {
		if n == metrics.NameStepDuration {
			n += "_bucket"
		}
		require.True(t, used[n], "no panel shows %s", n)
	}
}
