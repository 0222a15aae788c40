package dir

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"testing/iotest"
)

// oneByteReader returns at most one byte per Read: copyHashing must still
// fill its chunks and copy everything in order.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

func TestCopyHashingCopiesAndHashesEverything(t *testing.T) {
	data := make([]byte, 3<<20+12345)
	rand.Read(data)
	for _, n := range []int{0, 1, 1000, 512 << 10, 1 << 20, 1<<20 + 1, len(data)} {
		for _, slow := range []bool{false, true} {
			if slow && n > 1<<20 {
				continue
			}
			var r io.Reader = bytes.NewReader(data[:n])
			if slow {
				r = oneByteReader{r}
			}
			var out bytes.Buffer
			h := sha256.New()
			got, err := copyHashing(&out, r, h, make([]byte, 1<<20))
			if err != nil {
				t.Fatalf("%d bytes: %v", n, err)
			}
			if got != int64(n) || !bytes.Equal(out.Bytes(), data[:n]) {
				t.Fatalf("%d bytes (slow %v): copied %d, content equal %v", n, slow, got, bytes.Equal(out.Bytes(), data[:n]))
			}
			if want := sha256.Sum256(data[:n]); !bytes.Equal(h.Sum(nil), want[:]) {
				t.Fatalf("%d bytes (slow %v): hash differs from the content's", n, slow)
			}
		}
	}
}

// failWriter accepts limit bytes, then fails.
type failWriter struct{ limit int }

var errWriteFailed = errors.New("write failed")

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.limit {
		n := f.limit
		f.limit = 0
		return n, errWriteFailed
	}
	f.limit -= len(p)
	return len(p), nil
}

func TestCopyHashingReturnsErrors(t *testing.T) {
	data := make([]byte, 4<<20)
	n, err := copyHashing(&failWriter{limit: 1<<20 + 7}, bytes.NewReader(data), sha256.New(), make([]byte, 1<<20))
	if !errors.Is(err, errWriteFailed) || n != 1<<20+7 {
		t.Fatalf("write failure: got %d, %v; want %d, %v", n, err, 1<<20+7, errWriteFailed)
	}
	readErr := errors.New("read failed")
	n, err = copyHashing(io.Discard, io.MultiReader(bytes.NewReader(data[:1000]), iotest.ErrReader(readErr)), sha256.New(), make([]byte, 1<<20))
	if !errors.Is(err, readErr) || n != 1000 {
		t.Fatalf("read failure: got %d, %v; want 1000, %v", n, err, readErr)
	}
}

func TestSyncPathsSyncsAllAndReportsFailures(t *testing.T) {
	dir := t.TempDir()
	var ps []string
	for i := range 100 {
		p := filepath.Join(dir, fmt.Sprintf("f%03d", i))
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	// A vanished entry is skipped, as syncPath does.
	ps = append(ps, dir, filepath.Join(dir, "gone"))
	if err := syncPaths(ps); err != nil {
		t.Fatalf("syncPaths: %v", err)
	}
	// A path under a regular file cannot be opened: the error comes back.
	bad := filepath.Join(ps[50], "child")
	if err := syncPaths(append(ps[:10:10], bad)); !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("syncPaths with %s: got %v, want ENOTDIR", bad, err)
	}
}
