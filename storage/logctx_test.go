package storage

import (
	"context"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestLoggerFromContext: a backend logs with the activity's logger when the
// context carries one, with its own otherwise.
func TestLoggerFromContext(t *testing.T) {
	core, seen := observer.New(zap.InfoLevel)
	act := zap.New(core).With(zap.String("job", "j1"), zap.String("step", "stream"))
	own := zap.NewNop()
	if Logger(context.Background(), own) != own {
		t.Fatal("without a logger in the context the backend's own is not used")
	}
	Logger(WithLogger(context.Background(), act), own).Info("receive")
	if seen.Len() != 1 || seen.All()[0].ContextMap()["job"] != "j1" || seen.All()[0].ContextMap()["step"] != "stream" {
		t.Fatalf("the backend's line does not carry the activity's fields: %+v", seen.All())
	}
}
