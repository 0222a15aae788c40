package metafile

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestWriteAtomicReplacesWholeFiles(t *testing.T) {
	p := filepath.Join(t.TempDir(), "meta.json")
	for _, content := range []string{"first version, rather long", "second"} {
		if err := WriteAtomic(p, []byte(content)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != content {
			t.Fatalf("got %q, %v; want %q", got, err, content)
		}
	}
	if _, err := os.Stat(p + ".tmp"); !os.IsNotExist(err) {
		t.Fatal("the temporary file was left behind")
	}
}

func TestMarks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "marks", "ds")
	marks, err := ReadMarks(dir)
	if err != nil || len(marks) != 0 {
		t.Fatalf("a missing dir: %v, %v", marks, err)
	}
	for _, m := range [][2]string{{"cursor.j", "s1"}, {"received.j", "s1"}, {"cursor.j", "s2"}} {
		if err := SetMark(dir, m[0], m[1]); err != nil {
			t.Fatal(err)
		}
	}
	// A crash mid-write leaves a .tmp that is not a mark.
	if err := os.WriteFile(filepath.Join(dir, "cursor.k.tmp"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	marks, err = ReadMarks(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"cursor.j": "s2", "received.j": "s1"}; !reflect.DeepEqual(marks, want) {
		t.Fatalf("marks %v, want %v", marks, want)
	}
}

func TestJSON(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.json")
	type rec struct {
		Name string `json:"name"`
		Seq  uint64 `json:"seq"`
	}
	var got rec
	if found, err := ReadJSON(p, &got); found || err != nil {
		t.Fatalf("missing file: %v, %v", found, err)
	}
	if err := WriteJSON(p, rec{"s1", 7}); err != nil {
		t.Fatal(err)
	}
	if found, err := ReadJSON(p, &got); !found || err != nil || got != (rec{"s1", 7}) {
		t.Fatalf("read back %+v, %v, %v", got, found, err)
	}
	if err := os.WriteFile(p, []byte("{torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadJSON(p, &got); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), p) {
		t.Fatalf("a torn file: %v", err)
	}
}
