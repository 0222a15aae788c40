package prereq

import (
	"errors"
	"testing"
)

func TestRequired(t *testing.T) {
	for _, c := range []struct {
		env  string
		want bool
	}{
		{"", false}, {"zfs", false}, {"btrfs", true}, {"zfs,btrfs", true}, {" btrfs , zfs", true}, {"BTRFS", true}, {"btrfsx", false},
	} {
		t.Setenv(Env, c.env)
		if got := Required("btrfs"); got != c.want {
			t.Errorf("FERRY_REQUIRE=%q: Required(btrfs) = %v, want %v", c.env, got, c.want)
		}
	}
}

// fakeTB records what Need does without ending the real test.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper()                          {}
func (f *fakeTB) Skipf(format string, args ...any) { f.skipped = format }
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = format
}

func TestNeed(t *testing.T) {
	bad := func() error { return errors.New("no btrfs here") }
	t.Setenv(Env, "")
	f := &fakeTB{TB: t}
	Need(f, "btrfs", bad)
	if f.skipped == "" || f.failed != "" {
		t.Fatalf("without FERRY_REQUIRE a failed check must skip: %+v", f)
	}
	t.Setenv(Env, "zfs,btrfs")
	f = &fakeTB{TB: t}
	Need(f, "btrfs", bad)
	if f.failed == "" || f.skipped != "" {
		t.Fatalf("with FERRY_REQUIRE=btrfs a failed check must fail: %+v", f)
	}
	f = &fakeTB{TB: t}
	Need(f, "btrfs", func() error { return nil })
	if f.failed != "" || f.skipped != "" {
		t.Fatalf("a passing check must do nothing: %+v", f)
	}
	if err := All(func() error { return nil }, bad)(); err == nil {
		t.Fatal("All must report the failing check")
	}
}
