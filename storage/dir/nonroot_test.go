package dir

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/storagetest"
)

// TestNonRootRefusesSecurityXattrs: a stream carrying security.NTACL (a
// Samba NT ACL, made as root) received by a ferry that is not root fails as
// Unsupported naming the file, the attribute and the fix, and leaves no
// partial: a replica without its NT ACLs is never committed. The receive
// runs in this test binary re-executed as nobody (setpriv).
func TestNonRootRefusesSecurityXattrs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make the security.* attribute")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv (util-linux) to run the receive as nobody")
	}
	top := t.TempDir()
	ok(t, os.Chmod(filepath.Dir(top), 0o755))
	ok(t, os.Chmod(top, 0o777))
	ok(t, os.Mkdir(filepath.Join(top, "src"), 0o700))
	src, err := New(filepath.Join(top, "src"))
	ok(t, err)
	storagetest.WriteFile(t, filepath.Join(src.Root(), "share/acl.txt"), []byte("with an NT ACL\n"), 0o644, 1)
	storagetest.SetXattr(t, filepath.Join(src.Root(), "share/acl.txt"), "security.NTACL", storagetest.Random(1, 100))
	snap, err := src.CreateSnapshot(bg, "share", "s1")
	ok(t, err)
	var stream bytes.Buffer
	ok(t, src.Send(bg, storage.SendRequest{Dataset: "share", To: "s1"}, &stream))
	ok(t, os.WriteFile(filepath.Join(top, "stream"), stream.Bytes(), 0o644))
	ok(t, os.Mkdir(filepath.Join(top, "dst"), 0o700))
	ok(t, os.Chmod(filepath.Join(top, "dst"), 0o777))
	bin := filepath.Join(top, "dir.test")
	exe, err := os.ReadFile(os.Args[0])
	ok(t, err)
	ok(t, os.WriteFile(bin, exe, 0o755))

	cmd := exec.Command(setpriv, "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", bin, "-test.run", "^TestNonRootReceiveHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "FERRY_TEST_NONROOT_TOP="+top, "FERRY_TEST_NONROOT_GUID="+snap.GUID)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the non-root receive did not run: %v\n%s", err, out)
	}
	t.Logf("the non-root receive reports: %s", bytes.TrimSpace(out))
	for _, want := range []string{"kind=Unsupported", `"acl.txt"`, "security.NTACL", "run this host's ferry worker as root", "partials=0"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the non-root receive's report lacks %q:\n%s", want, out)
		}
	}
}

// TestNonRootReceiveHelper is TestNonRootRefusesSecurityXattrs's receive,
// run as nobody; it does nothing on its own.
func TestNonRootReceiveHelper(t *testing.T) {
	top := os.Getenv("FERRY_TEST_NONROOT_TOP")
	if top == "" {
		t.Skip("run by TestNonRootRefusesSecurityXattrs")
	}
	data, err := os.ReadFile(filepath.Join(top, "stream"))
	ok(t, err)
	dst, err := New(filepath.Join(top, "dst"))
	ok(t, err)
	_, err = dst.Receive(bg, storage.ReceiveRequest{Dataset: "replica", Name: "s1", SourceGUID: os.Getenv("FERRY_TEST_NONROOT_GUID")}, storagetest.Stream(t, data, resume.Position{}))
	ps, perr := dst.Partials(bg, "replica")
	ok(t, perr)
	fmt.Printf("kind=%v partials=%d err=%v\n", storage.KindOf(err), len(ps), err)
	os.Stdout.Sync()
}
