package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestFerryPackagesInBinaryDoNotImportTesting keeps test helpers out of the
// ferry binary: no package of this module that the binary links may import
// package testing (internal/loopfs once did for its New helper). The
// Temporal SDK links testing itself (go.temporal.io/sdk/internal's workflow
// test suite), so `go list -deps ./cmd/ferry` cannot be free of it; this
// checks the part ferry owns.
func TestFerryPackagesInBinaryDoNotImportTesting(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is not on PATH: %v", err)
	}
	const format = `{{if .Module}}{{if eq .Module.Path "github.com/ferry-nas/ferry"}}{{.ImportPath}} {{join .Imports " "}}{{end}}{{end}}`
	out, err := exec.Command(goTool, "list", "-deps", "-f", format, ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	var ours int
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		ours++
		for _, imp := range fields[1:] {
			if imp == "testing" {
				t.Errorf("%s imports package testing and is linked into the ferry binary: move the helper that needs it into a _test.go file or take an interface", fields[0])
			}
		}
	}
	if ours < 5 {
		t.Fatalf("go list found only %d ferry packages in the binary's dependencies; the template no longer matches:\n%s", ours, out)
	}
}
