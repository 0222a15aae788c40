package config

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hooksConfig has nas-a declare two hooks, and job j1 (nas-a -> nas-b) the
// given extra job fields.
func hooksConfig(top, hostHooks, jobExtra string) string {
	return top + `tls: {ca: ca.pem}
hosts:
  nas-a:
    data_address: 10.0.0.1:7400
    backend: dir
    root: /srv/a
    hooks:
` + hostHooks + `
  nas-b: {data_address: 10.0.0.2:7400, backend: dir, root: /srv/b}
jobs:
  j1:
    source: nas-a:s
    target: nas-b:r/s
` + jobExtra + "\n"
}

const twoHooks = `      freeze: {command: [/usr/local/bin/db-freeze, --wait], timeout: 2m}
      thaw: {command: ["/bin/sh", "-c", "echo thawed"]}`

func TestHooksAndNotifyAccepted(t *testing.T) {
	cfg := mustParse(t, hooksConfig("notify: {webhook: \"https://hooks.example.com/x?token=s3cret\", ui_url: \"http://ui.lan:8233/\"}\n",
		twoHooks, `    hooks: {pre_snapshot: freeze, post_snapshot: thaw}
  j2:
    source: nas-a:t
    target: nas-b:r/t
    notify: {webhook: http://10.0.0.5:9000/ferry}`))
	assert.Equal(t, map[string]Hook{
		"freeze": {Name: "freeze", Command: []string{"/usr/local/bin/db-freeze", "--wait"}, Timeout: 2 * time.Minute},
		"thaw":   {Name: "thaw", Command: []string{"/bin/sh", "-c", "echo thawed"}, Timeout: DefaultHookTimeout},
	}, cfg.Hosts["nas-a"].Hooks)
	assert.Nil(t, cfg.Hosts["nas-b"].Hooks)
	assert.Equal(t, JobHooks{PreSnapshot: "freeze", PostSnapshot: "thaw"}, cfg.Jobs["j1"].Hooks)
	// j1 takes the top-level notify; j2's own replaces it.
	top := Notify{Webhook: "https://hooks.example.com/x?token=s3cret", UIURL: "http://ui.lan:8233"}
	assert.Equal(t, top, cfg.Notify)
	assert.Equal(t, top, cfg.Jobs["j1"].Notify)
	assert.Equal(t, Notify{Webhook: "http://10.0.0.5:9000/ferry"}, cfg.Jobs["j2"].Notify)
	assert.Equal(t, JobHooks{}, cfg.Jobs["j2"].Hooks)

	// No notify anywhere: nothing to notify.
	assert.True(t, mustParse(t, withJob("")).Jobs["j1"].Notify.IsZero())
}

func TestHooksAndNotifyRules(t *testing.T) {
	cases := []struct {
		name        string
		top, hooks  string
		job         string
		key, reason string
	}{
		{"unknown pre hook", "", twoHooks, "    hooks: {pre_snapshot: freez}", "jobs.j1.hooks.pre_snapshot",
			`hook "freez" is not declared by the source host nas-a (declared: freeze, thaw)`},
		{"hook of another host", "", twoHooks, "    hooks: {post_snapshot: flush}", "jobs.j1.hooks.post_snapshot",
			`hook "flush" is not declared by the source host nas-a`},
		{"unknown hooks key", "", twoHooks, "    hooks: {pre: freeze}", "jobs.j1.hooks.pre", "unknown key"},
		{"command as a string", "", "      freeze: {command: /usr/local/bin/db-freeze}", "", "hosts.nas-a.hooks.freeze.command",
			"expected a list, found the value"},
		{"command missing", "", "      freeze: {timeout: 10s}", "", "hosts.nas-a.hooks.freeze.command", "is required"},
		{"relative program", "", "      freeze: {command: [db-freeze]}", "", "hosts.nas-a.hooks.freeze.command",
			`program "db-freeze" is not an absolute path`},
		{"bad timeout", "", "      freeze: {command: [/bin/true], timeout: soon}", "", "hosts.nas-a.hooks.freeze.timeout", "is not a duration"},
		{"short timeout", "", "      freeze: {command: [/bin/true], timeout: 10ms}", "", "hosts.nas-a.hooks.freeze.timeout", "shorter than the minimum 1s"},
		{"hook name", "", "      \"fr eeze\": {command: [/bin/true]}", "", "hosts.nas-a.hooks.fr eeze", "is not valid"},
		{"hook longer than timeouts.host", "", "      freeze: {command: [/bin/true], timeout: 1m}",
			"    timeouts: {host: 30s}\n    hooks: {pre_snapshot: freeze}", "jobs.j1.hooks.pre_snapshot", "not shorter than the job's timeouts.host (30s)"},
		{"webhook missing", "", twoHooks, "    notify: {}", "jobs.j1.notify.webhook", "is required"},
		{"webhook not http", "", twoHooks, "    notify: {webhook: \"ftp://x/y?token=s3cret\"}", "jobs.j1.notify.webhook",
			`URL "ftp://x/REDACTED?REDACTED" is not http or https`},
		{"webhook without host", "notify: {webhook: \"https:///x\"}\n", twoHooks, "", "notify.webhook", "has no host"},
		{"ui_url not a URL", "notify: {webhook: \"https://h\", ui_url: \"ui.lan:8233\"}\n", twoHooks, "", "notify.ui_url", "is not http or https"},
		{"notify unknown key", "notify: {url: \"https://h\"}\n", twoHooks, "", "notify.url", "unknown key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ps := problems(t, hooksConfig(tc.top, tc.hooks, tc.job))
			var found bool
			for _, p := range ps {
				if p.Key == tc.key && strings.Contains(p.Reason, tc.reason) {
					found = true
					assert.NotEmpty(t, p.Fix)
					assert.NotContains(t, p.String(), "s3cret", "a problem shows the webhook's secret")
				}
			}
			require.True(t, found, "no problem at %s containing %q in:\n%v", tc.key, tc.reason, ps)
		})
	}
}
