package layout

import (
	"errors"
	"reflect"
	"testing"

	"github.com/ferry-nas/ferry/storage"
)

func TestPaths(t *testing.T) {
	l := Layout{Root: "/srv/nas"}
	for got, want := range map[string]string{
		l.SnapshotsDir("a/b"):  "/srv/nas/.ferry/snapshots/a%2Fb",
		l.StagingDir("a%b"):    "/srv/nas/.ferry/staging/a%25b",
		l.MarksDir("share"):    "/srv/nas/.ferry/marks/share",
		l.TmpDir("a"):          "/srv/nas/.ferry/tmp/a",
		l.DatasetRecord("a/b"): "/srv/nas/.ferry/datasets/a%2Fb.json",
	} {
		if got != want {
			t.Errorf("%s, want %s", got, want)
		}
	}
	if got := l.Rel("/srv/nas/.ferry/staging/a/s1"); got != ".ferry/staging/a/s1" {
		t.Errorf("Rel: %s", got)
	}
}

func TestMarks(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	exists := func() error { return nil }
	if err := l.SetMark("ds", "cursor.j", "s1", exists); err != nil {
		t.Fatal(err)
	}
	missing := storage.Errorf(storage.KindNotFound, "set mark", "ds", "s9", "", "no snapshot")
	if err := l.SetMark("ds", "cursor.j", "s9", func() error { return missing }); !errors.Is(err, missing) {
		t.Fatalf("a mark on a missing snapshot: %v", err)
	}
	for _, bad := range [][3]string{{"../x", "m", "s1"}, {"ds", "a/b", "s1"}, {"ds", "m", "../s1"}} {
		if err := l.SetMark(bad[0], bad[1], bad[2], exists); storage.KindOf(err) != storage.KindInvalid {
			t.Errorf("SetMark%q: %v", bad, err)
		}
	}
	marks, err := l.ReadMarks("ds")
	if err != nil || !reflect.DeepEqual(marks, map[string]string{"cursor.j": "s1"}) {
		t.Fatalf("marks %v, %v", marks, err)
	}
}
