package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// The YAML syntax errors people meet most say what caused them.
func TestSyntaxErrorsNameTheirCause(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"tab", "hosts:\n  a:\n\tb: 1\n", "(the line holds a tab: YAML indents with spaces only); replace the tab with spaces"},
		{"star", "jobs:\n  x:\n    exclude: *.tmp\n", `an unquoted * starts a YAML alias); quote the value, e.g. "*.tmp"`},
		{"star in a list", "jobs:\n  x:\n    exclude: [*.jpg]\n", "an unquoted * starts a YAML alias"},
		{"star naming", "jobs:\n  x:\n    exclude: *tmp\n", "an unquoted * starts a YAML alias"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.text), "ferry.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "ferry.yaml:3") {
				t.Errorf("error %v\nwant it to name line 3 and contain %q", err, tc.want)
			}
		})
	}
	// Other syntax errors keep yaml.v3's words alone.
	_, err := Parse([]byte("jobs: [\n"), "ferry.yaml")
	if err == nil || strings.Contains(err.Error(), "tab") || strings.Contains(err.Error(), "alias") {
		t.Errorf("error %v", err)
	}
}

func TestMissingFileIsNotFoundError(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "ferry.yaml"))
	var nf *NotFoundError
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), "no config file at") {
		t.Errorf("error %v, want a *NotFoundError", err)
	}
}
