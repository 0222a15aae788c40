package dir

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/storagetest"
)

// TestNewRefusesMissingRoot: the backend never creates its root (a missing
// root is most often a disk not mounted); the error names the path and the fix.
func TestNewRefusesMissingRoot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "backup")
	_, err := New(root)
	if err == nil {
		t.Fatal("a missing root was accepted")
	}
	for _, want := range []string{"root " + root + " does not exist", "mount the filesystem that holds it", "ferry never creates a root"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if k := storage.KindOf(err); k != storage.KindNotFound {
		t.Errorf("kind %v, want NotFound", k)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Fatalf("the root was created: %v", err)
	}
}

// A target root unmounted under a running worker is never recreated by a
// later receive: it fails NotFound and the mount point stays empty.
func TestRootGoneUnderARunningBackendIsNotRecreated(t *testing.T) {
	bg := context.Background()
	src, err := New(t.TempDir())
	ok(t, err)
	storagetest.MakeTree(t, src.live("ds"))
	s1, err := src.CreateSnapshot(bg, "ds", "s1")
	ok(t, err)
	var buf bytes.Buffer
	ok(t, src.Send(bg, storage.SendRequest{Dataset: "ds", To: "s1"}, &buf))

	mnt := t.TempDir()
	root := filepath.Join(mnt, "backup")
	ok(t, os.Mkdir(root, 0o755))
	dst, err := New(root)
	ok(t, err)
	ok(t, os.RemoveAll(root)) // the disk is unmounted
	_, err = dst.Receive(bg, storage.ReceiveRequest{Dataset: "replica", Name: "s1", SourceGUID: s1.GUID}, storagetest.Stream(t, buf.Bytes(), resume.Position{}))
	wantKind(t, err, storage.KindNotFound)
	if !strings.Contains(err.Error(), "unmounted") {
		t.Errorf("the refusal does not say what probably happened: %v", err)
	}
	if entries, _ := os.ReadDir(mnt); len(entries) != 0 {
		t.Fatalf("the mount point is no longer empty: %v", entries)
	}
}
