package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	sdklog "go.temporal.io/sdk/log"
	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/internal/logcheck"
)

// TestJSONLinesHaveEachKeyOnce layers fields the way ferry does (command,
// worker, activity, a call's own fields, the Temporal adapter) and checks
// the real JSON output: valid JSON, each key once, the innermost value kept.
func TestJSONLinesHaveEachKeyOnce(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(Options{JSON: true, Output: &buf})
	if err != nil {
		t.Fatal(err)
	}
	cmd := l.With(Host("nas-a"))
	worker := cmd.With(Host("nas-a"), zap.String("backend", "dir"))
	act := worker.With(Host("nas-a"), Job("j1"), Step("receive")).Named("dataplane")
	act.Info("streaming", Job("j1"), Snapshot("ferry_1"), zap.Error(errors.New("boom")), zap.Error(errors.New("second")))
	act.With(zap.Namespace("detail"), zap.Int("n", 1)).Info("nested", zap.Int("n", 2))
	sdk := Temporal(worker).(sdklog.WithLogger).With("host", "nas-a", "WorkflowID", "w1")
	sdk.Info("from the SDK", "host", "nas-a", "Attempt", 1)
	worker.Sugar().Infow("sugared", "job", "j2", "job", "j3")
	_ = l.Sync()

	out := buf.Bytes()
	if err := logcheck.Lines(out); err != nil {
		t.Fatalf("JSON log output:\n%s\n%v", out, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 lines, got %d:\n%s", len(lines), out)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"host": "nas-a", "backend": "dir", "job": "j1", "step": "receive",
		"snapshot": "ferry_1", "error": "second", "logger": "dataplane", "msg": "streaming"} {
		if first[k] != want {
			t.Errorf("line 1: %s = %v, want %v (%s)", k, first[k], want, lines[0])
		}
	}
	// Keys inside a zap.Namespace are a nested object, not merged upwards.
	var nested struct {
		Detail map[string]any `json:"detail"`
	}
	if err := json.Unmarshal([]byte(lines[1]), &nested); err != nil {
		t.Fatal(err)
	}
	if nested.Detail == nil {
		t.Errorf("line 2 lost its namespace: %s", lines[1])
	}
	var last map[string]any
	if err := json.Unmarshal([]byte(lines[3]), &last); err != nil {
		t.Fatal(err)
	}
	if last["job"] != "j3" {
		t.Errorf("line 4: job = %v, want the last value j3 (%s)", last["job"], lines[3])
	}
}
