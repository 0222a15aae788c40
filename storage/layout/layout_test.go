package layout

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
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
	if err := os.Mkdir(filepath.Join(l.Root, storage.MetaDir), 0o700); err != nil {
		t.Fatal(err)
	}
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

// A root whose filesystem went away under a running worker (unmounted) is
// refused, and neither it nor .ferry is created again on the disk beneath.
func TestMkdirAllNeverRecreatesTheRoot(t *testing.T) {
	mnt := t.TempDir()
	l := Layout{Root: filepath.Join(mnt, "backup")}
	if err := os.MkdirAll(filepath.Join(l.Root, storage.MetaDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := l.MkdirAll(l.SnapshotsDir("share")); err != nil {
		t.Fatalf("under an existing .ferry: %v", err)
	}
	if err := os.RemoveAll(l.Root); err != nil { // the disk is unmounted
		t.Fatal(err)
	}
	err := l.MkdirAll(l.SnapshotsDir("share"))
	if storage.KindOf(err) != storage.KindNotFound {
		t.Fatalf("kind of %v, want NotFound", err)
	}
	for _, want := range []string{filepath.Join(l.Root, storage.MetaDir) + " is gone", "unmounted", "mount the filesystem"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if err := l.SetMark("share", "cursor.j", "s1", func() error { return nil }); storage.KindOf(err) != storage.KindNotFound {
		t.Errorf("SetMark on a gone root: %v", err)
	}
	if _, err := os.Stat(l.Root); !os.IsNotExist(err) {
		t.Fatalf("the root was created again: %v", err)
	}
}
