package logging

import "testing"

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
