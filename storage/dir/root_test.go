package dir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-nas/ferry/storage"
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
