package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionNamesFerryAndTemporal(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/ferry-nas/ferry", Version: "(devel)"},
		Deps: []*debug.Module{
			{Path: "go.temporal.io/sdk", Version: "v1.50.0"},
			{Path: "go.temporal.io/server", Version: "v1.32.0"},
			{Path: "github.com/temporalio/ui-server/v2", Version: "v2.55.0"},
		},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef"}, {Key: "vcs.modified", Value: "true"}}}
	var b strings.Builder
	old := version
	defer func() { version = old }()
	version = "v0.3.0"
	printVersion(&b, bi)
	for _, want := range []string{"ferry v0.3.0 (commit 0123456789ab, modified), go", "Temporal Go SDK:", "v1.50.0", "Temporal server (ferry server):  v1.32.0", "v2.55.0"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("version output lacks %q:\n%s", want, b.String())
		}
	}
	version = ""
	b.Reset()
	printVersion(&b, bi)
	if !strings.HasPrefix(b.String(), "ferry devel (commit") {
		t.Errorf("without -X main.version:\n%s", b.String())
	}
}
