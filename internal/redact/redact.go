// Package redact hides the secrets a URL may carry before it is logged or
// put in an error: webhook URLs often hold a token in their query or user
// info.
package redact

import (
	"net/url"
	"strings"
)

// URL returns s without its user info, path, query and fragment, each
// replaced by "REDACTED" so that a reader sees something was there: the
// scheme and host say which service it is. The path goes too because
// services such as Slack put the token there. A string that is not a URL
// loses everything from the first '?' or '#', and everything up to an '@'.
func URL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if i := strings.IndexAny(s, "?#"); i >= 0 {
			s = s[:i] + "?REDACTED"
		}
		if i := strings.LastIndexByte(s, '@'); i >= 0 {
			s = "REDACTED@" + s[i+1:]
		}
		return s
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	if u.Path != "" && u.Path != "/" {
		u.Path, u.RawPath = "/REDACTED", ""
	}
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = "REDACTED", false
	}
	if u.Fragment != "" {
		u.Fragment, u.RawFragment = "REDACTED", ""
	}
	return u.String()
}
