package logging

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestNewRejectsUnknownLevel(t *testing.T) {
	if _, err := New(Options{Level: "loud"}); err == nil {
		t.Fatal("an unknown level must be refused")
	}
	for _, lvl := range []string{"", "debug", "info", "warn", "error"} {
		l, err := New(Options{Level: lvl, JSON: lvl == "warn"})
		if err != nil {
			t.Fatalf("level %q: %v", lvl, err)
		}
		want := lvl
		if want == "" {
			want = "info"
		}
		if got := l.Level().String(); got != want {
			t.Fatalf("level %q: logger at %s", lvl, got)
		}
	}
}

// TestDurationsAreWrittenAsStrings: a duration reads "10s", not a bare
// number whose unit the reader must guess.
func TestDurationsAreWrittenAsStrings(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(Options{JSON: true, Output: &buf})
	if err != nil {
		t.Fatal(err)
	}
	l.Info("worker stopping", zap.Duration("stop_timeout", 10*time.Second))
	_ = l.Sync()
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("%s: %v", buf.Bytes(), err)
	}
	if line["stop_timeout"] != "10s" {
		t.Errorf("stop_timeout = %#v, want \"10s\" (%s)", line["stop_timeout"], buf.Bytes())
	}
}
