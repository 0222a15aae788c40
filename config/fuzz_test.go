package config

import (
	"errors"
	"os"
	"testing"
)

// FuzzParse checks that Parse never panics and either returns a config or
// an *Error whose every problem names the file and says how to fix it.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(""))
	f.Add([]byte("jobs: {a: &x {<<: *x}}"))
	f.Add([]byte("hosts: {a: {<<: [{root: /x}, {root: /y}], backend: dir}}"))
	f.Add([]byte(withJob(`retention: {source: "1x1m|2x1w"}, cron: "@every 1h"`)))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "f.yaml")
		if err == nil {
			if cfg == nil || len(cfg.Hosts) == 0 {
				t.Fatalf("accepted config without hosts: %q", data)
			}
			return
		}
		var ce *Error
		if !errors.As(err, &ce) {
			t.Fatalf("error %T: %v", err, err)
		}
		for _, p := range ce.Problems {
			if p.File != "f.yaml" || p.Reason == "" || p.Fix == "" {
				t.Fatalf("incomplete problem %+v", p)
			}
		}
	})
}
