package config

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/ferry-nas/ferry/internal/redact"
)

// Hook is a command a host's worker runs around a job's snapshot
// (hosts.<h>.hooks.<name>). Only its name travels in workflow input: the
// worker looks the command up in its own config when it runs it, so nobody
// who can edit a schedule's input can make a worker run a command.
type Hook struct {
	Name string
	// Command is the program (an absolute path) and its arguments, run
	// without a shell.
	Command []string
	// Timeout bounds one run of the command.
	Timeout time.Duration
}

// JobHooks name the source host's hooks a job runs (jobs.<j>.hooks); empty
// names run nothing.
type JobHooks struct {
	// PreSnapshot runs before the snapshot; its failure fails the run
	// before the snapshot is taken.
	PreSnapshot string
	// PostSnapshot runs after the snapshot step, once PreSnapshot ran
	// (whatever came of it and of the snapshot); its failure is reported,
	// not the run's failure.
	PostSnapshot string
}

// Notify is where a job's failures and recoveries are reported.
type Notify struct {
	// Webhook is the http or https URL a JSON document is POSTed to.
	Webhook string
	// UIURL is the Temporal web UI's base URL (http://host:8233); when set
	// the document links to the run there.
	UIURL string
}

// IsZero reports whether nothing is to be notified.
func (n Notify) IsZero() bool { return n.Webhook == "" }

// Hook limits.
const (
	// DefaultHookTimeout is a hook's timeout when it names none.
	DefaultHookTimeout = 30 * time.Second
	// MinHookTimeout is the shortest hook timeout.
	MinHookTimeout = time.Second
	// defaultHostTimeout is the workflow's timeouts.host default (the
	// workflows package's DefaultHostTimeout, which config cannot import);
	// a hook runs in an activity bounded by it.
	defaultHostTimeout = 10 * time.Minute
)

var hookNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

type rawHook struct {
	Command []string `yaml:"command"`
	Timeout string   `yaml:"timeout"`
}

type rawJobHooks struct {
	PreSnapshot  string `yaml:"pre_snapshot"`
	PostSnapshot string `yaml:"post_snapshot"`
}

type rawNotify struct {
	Webhook string `yaml:"webhook"`
	UIURL   string `yaml:"ui_url"`
}

// hooks validates a host's hook declarations.
func (p *parser) hooks(hostKey string, raw map[string]*rawHook) map[string]Hook {
	if len(raw) == 0 {
		return nil
	}
	out := map[string]Hook{}
	for _, name := range sortedKeys(raw) {
		key := hostKey + ".hooks." + name
		rh := raw[name]
		if rh == nil {
			rh = &rawHook{}
		}
		if !hookNameRE.MatchString(name) {
			p.add(key, "use 1-64 letters, digits, '_' and '-', starting with a letter or digit", "hook name %q is not valid", name)
		}
		h := Hook{Name: name, Command: rh.Command, Timeout: DefaultHookTimeout}
		const cmdFix = "write the program's absolute path and its arguments as a list, e.g. command: [/usr/local/bin/db-freeze, --wait]; it runs without a shell (for one, write [/bin/sh, -c, \"...\"])"
		switch {
		case len(rh.Command) == 0:
			p.add(key+".command", cmdFix, "is required")
		case !path.IsAbs(rh.Command[0]):
			p.add(key+".command", cmdFix, "program %q is not an absolute path (the worker does not search PATH)", rh.Command[0])
		}
		if rh.Timeout != "" {
			d, err := ParseDuration(rh.Timeout)
			switch {
			case err != nil:
				p.addErr(key+".timeout", durationFix, err)
			case d < MinHookTimeout:
				p.add(key+".timeout", "use 1s or longer", "timeout %s is shorter than the minimum 1s", rh.Timeout)
			default:
				h.Timeout = d
			}
		}
		out[name] = h
	}
	return out
}

// jobHooks checks that the hooks a job names are declared by its source
// host and end within the job's timeouts.host (the activity they run in).
func (p *parser) jobHooks(key string, rj *rawJobHooks, j Job, hosts map[string]Host, srcOK bool) JobHooks {
	if rj == nil {
		return JobHooks{}
	}
	jh := JobHooks{PreSnapshot: rj.PreSnapshot, PostSnapshot: rj.PostSnapshot}
	src, ok := hosts[j.Source.Host]
	if !srcOK || !ok {
		return jh // the source is already reported
	}
	hostTimeout := j.Timeouts.Host
	if hostTimeout == 0 {
		hostTimeout = defaultHostTimeout
	}
	for _, h := range []struct{ key, name string }{{"pre_snapshot", rj.PreSnapshot}, {"post_snapshot", rj.PostSnapshot}} {
		if h.name == "" {
			continue
		}
		decl, ok := src.Hooks[h.name]
		if !ok {
			declared := "it declares none"
			if len(src.Hooks) > 0 {
				declared = "declared: " + strings.Join(sortedKeys(src.Hooks), ", ")
			}
			p.add(key+".hooks."+h.key, fmt.Sprintf("declare it under hosts.%s.hooks.%s (hooks run on the job's source host), or fix the name", src.Name, h.name),
				"hook %q is not declared by the source host %s (%s)", h.name, src.Name, declared)
			continue
		}
		if decl.Timeout >= hostTimeout {
			p.add(key+".hooks."+h.key, fmt.Sprintf("make hosts.%s.hooks.%s.timeout shorter than the job's timeouts.host, or raise timeouts.host", src.Name, h.name),
				"hook %q has timeout %s, not shorter than the job's timeouts.host (%s) that bounds the step running it", h.name, decl.Timeout, hostTimeout)
		}
	}
	return jh
}

// notify validates a notify mapping (top-level or a job's).
func (p *parser) notify(key string, rn *rawNotify) Notify {
	if rn == nil {
		return Notify{}
	}
	n := Notify{Webhook: rn.Webhook, UIURL: strings.TrimRight(rn.UIURL, "/")}
	if rn.Webhook == "" {
		p.add(key+".webhook", "set the http(s) URL to POST failures and recoveries to, or remove notify", "is required")
	} else if err := checkHTTPURL(rn.Webhook); err != "" {
		p.add(key+".webhook", "write an http:// or https:// URL with a host, e.g. https://hooks.example.com/ferry", "%s", err)
	}
	if rn.UIURL != "" {
		if err := checkHTTPURL(rn.UIURL); err != "" {
			p.add(key+".ui_url", "write the web UI's base URL, e.g. http://temporal.lan:8233", "%s", err)
		}
	}
	return n
}

// checkHTTPURL says what is wrong with s as an http(s) URL, or "". The URL
// is shown redacted: a webhook's query or user info may hold its secret.
func checkHTTPURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Sprintf("%q is not a URL", redact.URL(s))
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("URL %q is not http or https", redact.URL(s))
	case u.Host == "":
		return fmt.Sprintf("URL %q has no host", redact.URL(s))
	}
	return ""
}
