package storage

import "testing"

func TestCheckDataset(t *testing.T) {
	for _, ok := range []string{"share01", "replicas/share01", "a/b.c/d-e_f"} {
		if err := CheckDataset("op", ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "/abs", "a/../b", "..", "a//b", "./a", "a/.", ".ferry", ".ferry/x", "a\x00b", "a\nb"} {
		if KindOf(CheckDataset("op", bad)) != KindInvalid {
			t.Errorf("%q was not refused as invalid", bad)
		}
	}
}

func TestCheckSnapshotName(t *testing.T) {
	for _, ok := range []string{"ferry_share01_20261121T081512.035Z", "snap1", "a:b@c+d=e"} {
		if err := CheckSnapshotName("op", "ds", ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".hidden", "a/b", "x.json", "x.tmp", "x.spool", "x.manifest", "a b"} {
		if KindOf(CheckSnapshotName("op", "ds", bad)) != KindInvalid {
			t.Errorf("%q was not refused as invalid", bad)
		}
	}
}

func TestEscapeDatasetKeepsNestedDatasetsApart(t *testing.T) {
	seen := map[string]string{}
	for _, ds := range []string{"a", "a/s", "a%2Fs", "a%s", "a/s/t"} {
		e := EscapeDataset(ds)
		if prev, dup := seen[e]; dup {
			t.Fatalf("%q and %q escape to the same %q", prev, ds, e)
		}
		seen[e] = ds
	}
}

func TestDatasetLocks(t *testing.T) {
	var l DatasetLocks
	unlock, err := l.Lock("receive", "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Lock("snapshot", "a"); KindOf(err) != KindTemporary {
		t.Fatalf("a second operation on a busy dataset: %v, want KindTemporary", err)
	}
	unlockB, err := l.Lock("receive", "b")
	if err != nil {
		t.Fatalf("another dataset is independent: %v", err)
	}
	unlock()
	unlockB()
	if _, err := l.Lock("snapshot", "a"); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
}

func TestLockSnapshotChecksBeforeLocking(t *testing.T) {
	var l DatasetLocks
	for _, c := range []struct{ ds, name, parent string }{
		{"../x", "s1", ""}, {"a", "", ""}, {"a", ".bad", ""}, {"a", "s1", "x.tmp"},
	} {
		if _, err := l.LockSnapshot("receive", c.ds, c.name, c.parent); KindOf(err) != KindInvalid {
			t.Errorf("%+v: %v, want KindInvalid", c, err)
		}
	}
	unlock, err := l.LockSnapshot("receive", "a", "s1", "")
	if err != nil {
		t.Fatalf("no parent is fine: %v", err)
	}
	if _, err := l.LockSnapshot("snapshot", "a", "s2"); KindOf(err) != KindTemporary {
		t.Fatalf("refused checks took no lock, a real one does: %v", err)
	}
	unlock()
}
