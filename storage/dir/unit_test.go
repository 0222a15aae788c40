package dir

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/metafile"
	"github.com/ferry-nas/ferry/storage/storagetest"
)

var bg = context.Background()

func ok(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantKind(t testing.TB, err error, k storage.Kind) {
	t.Helper()
	if err == nil || storage.KindOf(err) != k {
		t.Fatalf("want a %v error, got %v", k, err)
	}
}

func ino(t testing.TB, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	ok(t, err)
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestUnchangedFilesAreHardLinked(t *testing.T) {
	b := newTestBackend(t)
	live := b.live("ds")
	storagetest.WriteFile(t, filepath.Join(live, "same"), []byte("unchanged"), 0o644, 1)
	storagetest.WriteFile(t, filepath.Join(live, "changed"), []byte("version 1"), 0o644, 2)
	storagetest.WriteFile(t, filepath.Join(live, "sneaky"), []byte("aaaa"), 0o644, 3)
	storagetest.WriteFile(t, filepath.Join(live, "chmodded"), []byte("mode"), 0o644, 4)
	storagetest.WriteFile(t, filepath.Join(live, "relinked"), []byte("same bytes"), 0o644, 5)
	_, err := b.CreateSnapshot(bg, "ds", "s1")
	ok(t, err)
	d1, err := b.ContentDigest(bg, "ds", "s1")
	ok(t, err)

	storagetest.WriteFile(t, filepath.Join(live, "changed"), []byte("version 2"), 0o644, 2)
	// Same size, same mtime, new content: only the ctime changes.
	storagetest.WriteFile(t, filepath.Join(live, "sneaky"), []byte("bbbb"), 0o644, 3)
	ok(t, os.Chmod(filepath.Join(live, "chmodded"), 0o600))
	// A hard link made and removed elsewhere (cp -al, a backup tool): only
	// the ctime changes, the content is re-read and found the same.
	other := filepath.Join(t.TempDir(), "link")
	ok(t, os.Link(filepath.Join(live, "relinked"), other))
	ok(t, os.Remove(other))
	s2, err := b.CreateSnapshot(bg, "ds", "s2")
	ok(t, err)

	t1, t2 := b.snapTree("ds", "s1"), b.snapTree("ds", "s2")
	for _, n := range []string{"same", "relinked"} {
		if ino(t, filepath.Join(t1, n)) != ino(t, filepath.Join(t2, n)) {
			t.Errorf("unchanged file %q was copied instead of hard-linked", n)
		}
	}
	for _, n := range []string{"changed", "sneaky", "chmodded"} {
		if ino(t, filepath.Join(t1, n)) == ino(t, filepath.Join(t2, n)) {
			t.Errorf("changed file %q was hard-linked to the previous snapshot", n)
		}
	}
	m, _, err := b.loadMeta("ds", "s2")
	ok(t, err)
	if m.Linked != 2 || m.Copied != 3 || m.Rehashed != 3 {
		t.Errorf("linked %d copied %d rehashed %d, want 2, 3 and 3 (same size and mtime: changed, sneaky, relinked)", m.Linked, m.Copied, m.Rehashed)
	}
	if d, err := b.ContentDigest(bg, "ds", "s1"); err != nil || d != d1 {
		t.Fatalf("s1 changed by s2: %v", err)
	}
	if live, _ := storage.TreeDigest(live, nil); live != mustDigest(t, b, "ds", "s2") {
		t.Fatal("s2 differs from the live tree")
	}
	// A hard-linked file survives the destruction of the snapshot it came from.
	ok(t, b.DestroySnapshot(bg, "ds", "s1"))
	if _, err := b.Verify(bg, storage.VerifyRequest{Dataset: "ds", Name: "s2", Digest: s2.Digest}); err != nil {
		t.Fatal(err)
	}
}

func mustDigest(t testing.TB, b *Backend, ds, name string) string {
	t.Helper()
	d, err := b.ContentDigest(bg, ds, name)
	ok(t, err)
	return d
}

func TestReadOnlySnapshotKeepsTrueModes(t *testing.T) {
	b := newTestBackend(t)
	live := b.live("ds")
	storagetest.MakeTree(t, live)
	_, err := b.CreateSnapshot(bg, "ds", "s1")
	ok(t, err)
	tree := b.snapTree("ds", "s1")
	ok(t, filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		ok(t, err)
		fi, err := d.Info()
		ok(t, err)
		if fi.Mode().Type() != fs.ModeSymlink && fi.Mode().Perm()&0o222 != 0 {
			t.Errorf("%s is writable in the snapshot: %v", p, fi.Mode())
		}
		return nil
	}))
	want, err := storage.TreeDigest(live, nil)
	ok(t, err)
	if got := mustDigest(t, b, "ds", "s1"); got != want {
		t.Fatal("content digest does not report the true modes")
	}
	// Giving a file its write bit back is tampering.
	ok(t, os.Chmod(filepath.Join(tree, "exec.sh"), 0o755))
	_, err = b.ContentDigest(bg, "ds", "s1")
	wantKind(t, err, storage.KindConflict)
	_, err = b.Verify(bg, storage.VerifyRequest{Dataset: "ds", Name: "s1"})
	wantKind(t, err, storage.KindConflict)
	// Sending a tampered snapshot fails rather than shipping it.
	ok(t, os.Chmod(filepath.Join(tree, "exec.sh"), 0o555))
	tamper(t, tree)
	wantKind(t, b.Send(bg, storage.SendRequest{Dataset: "ds", To: "s1"}, io.Discard), storage.KindConflict)
}

func TestReflinkFallback(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       error
		stillTry  bool
		wantFails bool
	}{
		{"unsupported", unix.EOPNOTSUPP, false, false},
		{"cross-device", unix.EXDEV, true, false},
		{"invalid", unix.EINVAL, true, false},
		{"io error", unix.EIO, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newTestBackend(t)
			calls := 0
			b.clone = func(dst, src *os.File) error { calls++; return tc.err }
			live := b.live("ds")
			storagetest.WriteFile(t, filepath.Join(live, "a"), []byte("aaa"), 0o644, 1)
			storagetest.WriteFile(t, filepath.Join(live, "b"), storagetest.Random(1, 100000), 0o644, 2)
			_, err := b.CreateSnapshot(bg, "ds", "s1")
			if tc.wantFails {
				if err == nil {
					t.Fatal("an unexpected clone error was ignored")
				}
				if ps, _ := b.Partials(bg, "ds"); len(ps) != 0 {
					t.Fatalf("failed snapshot left %+v", ps)
				}
				return
			}
			ok(t, err)
			if b.reflink.Load() != tc.stillTry {
				t.Fatalf("reflink still tried: %v, want %v", b.reflink.Load(), tc.stillTry)
			}
			if want := map[bool]int{false: 1, true: 2}[tc.stillTry]; calls != want {
				t.Fatalf("clone called %d times, want %d", calls, want)
			}
			want, _ := storage.TreeDigest(live, nil)
			if got := mustDigest(t, b, "ds", "s1"); got != want {
				t.Fatal("fallback copy differs")
			}
		})
	}
	// A clone that works: the snapshot's hash comes from the clone.
	b := newTestBackend(t)
	b.clone = func(dst, src *os.File) error { _, err := io.Copy(dst, src); return err }
	live := b.live("ds")
	storagetest.WriteFile(t, filepath.Join(live, "a"), storagetest.Random(2, 5000), 0o644, 1)
	_, err := b.CreateSnapshot(bg, "ds", "s1")
	ok(t, err)
	want, _ := storage.TreeDigest(live, nil)
	if got := mustDigest(t, b, "ds", "s1"); got != want {
		t.Fatal("cloned snapshot differs")
	}
}

// TestCheckpointPaddingBoundary receives a stream of files around the tar
// block size with a checkpoint after every entry, then cuts the stream at
// every durable position (and inside the padding after it) and resumes.
func TestCheckpointPaddingBoundary(t *testing.T) {
	src := newTestBackend(t)
	live := src.live("ds")
	for i, n := range []int{0, 1, 511, 512, 513, 1024, 1500} {
		storagetest.WriteFile(t, filepath.Join(live, "f"+string(rune('a'+i))), storagetest.Random(uint64(n), n), 0o644, i)
	}
	s1, err := src.CreateSnapshot(bg, "ds", "s1")
	ok(t, err)
	var buf bytes.Buffer
	ok(t, src.Send(bg, storage.SendRequest{Dataset: "ds", To: "s1"}, &buf))
	data := buf.Bytes()

	dst := newTestBackend(t, WithCheckpointEvery(1, 0))
	var durable []resume.Position
	req := storage.ReceiveRequest{Dataset: "ds", Name: "s1", SourceGUID: s1.GUID, Durable: func(p resume.Position) { durable = append(durable, p) }}
	_, err = dst.Receive(bg, req, storagetest.Stream(t, data, resume.Position{}))
	ok(t, err)
	if len(durable) < 8 {
		t.Fatalf("%d checkpoints for 8 entries", len(durable))
	}
	ok(t, dst.DestroySnapshot(bg, "ds", "s1"))
	req.Durable = nil
	for _, p := range durable {
		for _, cut := range []int64{p.Offset, p.Offset + 1, (p.Offset + 511) &^ 511} {
			if cut > int64(len(data)) {
				continue
			}
			_, err := dst.Receive(bg, req, storagetest.CutStream(t, data, resume.Position{}, cut, errors.New("cut")))
			if err == nil {
				t.Fatalf("cut at %d succeeded", cut)
			}
			ps, err := dst.Partials(bg, "ds")
			ok(t, err)
			if len(ps) != 1 || ps[0].Resume == nil {
				t.Fatalf("cut at %d: partials %+v", cut, ps)
			}
			pos := *ps[0].Resume
			var ck checkpoint
			_, err = metafile.ReadJSON(filepath.Join(dst.stagingDir("ds"), "s1", stCheckpoint), &ck)
			ok(t, err)
			if pos.Offset > cut || (pos.Offset+ck.Pad)%512 != 0 || ck.Pad < 0 || ck.Pad >= 512 {
				t.Fatalf("cut at %d: checkpoint at %d with padding %d", cut, pos.Offset, ck.Pad)
			}
			if pos.Offset != p.Offset && cut == p.Offset {
				t.Fatalf("cut at durable %d: resume at %d", p.Offset, pos.Offset)
			}
			r := req
			r.Resume = true
			// A stream starting anywhere else is refused and the partial kept.
			_, err = dst.Receive(bg, r, storagetest.Stream(t, data, resume.Position{}))
			if pos.Offset != 0 {
				wantKind(t, err, storage.KindInvalid)
			} else {
				ok(t, err)
				ok(t, dst.DestroySnapshot(bg, "ds", "s1"))
				continue
			}
			_, err = dst.Receive(bg, r, storagetest.Stream(t, data, pos))
			ok(t, err)
			if mustDigest(t, dst, "ds", "s1") != mustDigest(t, src, "ds", "s1") {
				t.Fatalf("resumed at %d: content differs", pos.Offset)
			}
			ok(t, dst.DestroySnapshot(bg, "ds", "s1"))
		}
	}
}

func TestSpecialFilesSkipped(t *testing.T) {
	b := newTestBackend(t)
	live := b.live("ds")
	storagetest.WriteFile(t, filepath.Join(live, "file"), []byte("x"), 0o644, 1)
	ok(t, unix.Mkfifo(filepath.Join(live, "fifo"), 0o644))
	s, err := b.CreateSnapshot(bg, "ds", "s1")
	ok(t, err)
	m, _, err := b.loadMeta("ds", "s1")
	ok(t, err)
	if m.SkippedCount != 1 || len(m.Skipped) != 1 || m.Skipped[0] != `"fifo"` {
		t.Fatalf("skipped %d %q", m.SkippedCount, m.Skipped)
	}
	if _, err := os.Lstat(filepath.Join(b.snapTree("ds", "s1"), "fifo")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("fifo copied into the snapshot")
	}
	if _, err := b.Verify(bg, storage.VerifyRequest{Dataset: "ds", Name: "s1", Digest: s.Digest}); err != nil {
		t.Fatal(err)
	}
}

func TestDatasetRules(t *testing.T) {
	b := newTestBackend(t)
	for _, ds := range []string{".ferry", ".ferry/x", "../x", "/etc"} {
		_, err := b.CreateSnapshot(bg, ds, "s")
		wantKind(t, err, storage.KindInvalid)
	}
	// A dataset reached through a symlink could lead out of the root.
	outside := t.TempDir()
	ok(t, os.Symlink(outside, filepath.Join(b.root, "link")))
	_, err := b.CreateSnapshot(bg, "link", "s")
	wantKind(t, err, storage.KindInvalid)
	ok(t, os.MkdirAll(filepath.Join(outside, "sub"), 0o755))
	_, err = b.CreateSnapshot(bg, "link/sub", "s")
	wantKind(t, err, storage.KindInvalid)
	// Nested datasets do not collide in .ferry.
	storagetest.WriteFile(t, filepath.Join(b.live("a"), "f"), []byte("a"), 0o644, 1)
	storagetest.WriteFile(t, filepath.Join(b.live("a/s"), "g"), []byte("as"), 0o644, 1)
	_, err = b.CreateSnapshot(bg, "a", "s")
	ok(t, err)
	_, err = b.CreateSnapshot(bg, "a/s", "s")
	ok(t, err)
	for _, ds := range []string{"a", "a/s"} {
		if l, err := b.ListSnapshots(bg, ds); err != nil || len(l) != 1 {
			t.Fatalf("%s: %v %v", ds, l, err)
		}
	}
}

func TestInterruptedSnapshotIsReportedAndRedone(t *testing.T) {
	b := newTestBackend(t)
	storagetest.WriteFile(t, filepath.Join(b.live("ds"), "f"), []byte("x"), 0o644, 1)
	// What a crash in the middle of CreateSnapshot leaves behind.
	ok(t, os.MkdirAll(filepath.Join(b.tmpDir("ds"), "s1", "tree"), 0o700))
	// A commit renames the manifest into place before the tree.
	ok(t, os.MkdirAll(b.snapTree("ds", "s2"), 0o700))
	ok(t, os.WriteFile(b.manifestPath("ds", "s2"), []byte(manifestHeader+"\n"), 0o600))
	ps, err := b.Partials(bg, "ds")
	ok(t, err)
	if len(ps) != 2 {
		t.Fatalf("partials %+v", ps)
	}
	ok(t, b.DiscardPartial(bg, ps[1]))
	_, err = b.CreateSnapshot(bg, "ds", "s1") // cleans its own leftover
	ok(t, err)
	if ps, _ := b.Partials(bg, "ds"); len(ps) != 0 {
		t.Fatalf("partials left: %+v", ps)
	}
	// DiscardPartial never removes a complete snapshot or anything else.
	wantKind(t, b.DiscardPartial(bg, storage.Partial{Dataset: "ds", ID: ".ferry/snapshots/ds/s1"}), storage.KindConflict)
	wantKind(t, b.DiscardPartial(bg, storage.Partial{Dataset: "ds", ID: "ds"}), storage.KindInvalid)
	wantKind(t, b.DiscardPartial(bg, storage.Partial{Dataset: "ds", ID: "../../etc"}), storage.KindInvalid)
	if _, err := b.Verify(bg, storage.VerifyRequest{Dataset: "ds", Name: "s1"}); err != nil {
		t.Fatal(err)
	}
}

func TestCheckpointFileIsJSON(t *testing.T) {
	// The checkpoint survives a round trip with its hash state.
	ck := checkpoint{Position: resume.Position{Offset: 5, HashState: []byte{1, 2, 3}}, Pad: 7, Entries: 2, LastPath: `"a\nb"`, At: time.Now().UTC()}
	data, err := json.Marshal(ck)
	ok(t, err)
	var back checkpoint
	ok(t, json.Unmarshal(data, &back))
	if back.Position.Offset != 5 || !bytes.Equal(back.Position.HashState, []byte{1, 2, 3}) || back.Pad != 7 {
		t.Fatalf("%+v", back)
	}
}

func TestEstimateSendSize(t *testing.T) {
	b := newTestBackend(t)
	live := b.live("ds")
	storagetest.MakeTree(t, live)
	_, err := b.CreateSnapshot(bg, "ds", "s1")
	ok(t, err)
	storagetest.MutateTree(t, live, 1)
	_, err = b.CreateSnapshot(bg, "ds", "s2")
	ok(t, err)
	for _, req := range []storage.SendRequest{{Dataset: "ds", To: "s1"}, {Dataset: "ds", From: "s1", To: "s2"}} {
		est, err := b.EstimateSendSize(bg, req)
		ok(t, err)
		var buf bytes.Buffer
		ok(t, b.Send(bg, req, &buf))
		if n := int64(buf.Len()); est < n*8/10 || est > n*12/10 {
			t.Errorf("%+v: estimate %d, actual %d", req, est, n)
		}
	}
}

// TestDeferredLinkFailureCopies: the unchanged files are linked after the
// snapshot's walk; when a link fails there (the previous snapshot's copy
// is gone), the snapshot is made again linking as it walks, which copies
// that file: it succeeds with the live content, the other files linked.
func TestDeferredLinkFailureCopies(t *testing.T) {
	b := newTestBackend(t)
	live := b.live("ds")
	for i := range 3 {
		storagetest.WriteFile(t, filepath.Join(live, "d", fmt.Sprintf("f%d", i)), []byte(fmt.Sprint("content ", i)), 0o644, i+1)
	}
	_, err := b.CreateSnapshot(bg, "ds", "s1")
	ok(t, err)
	gone := filepath.Join(b.snapTree("ds", "s1"), "d", "f1")
	ok(t, os.Chmod(filepath.Dir(gone), 0o755))
	ok(t, os.Remove(gone))
	s2, err := b.CreateSnapshot(bg, "ds", "s2")
	ok(t, err)
	m, _, err := b.loadMeta("ds", "s2")
	ok(t, err)
	if m.Linked != 2 || m.Copied != 1 {
		t.Errorf("linked %d copied %d, want 2 and 1 (the copy that was gone)", m.Linked, m.Copied)
	}
	if d, _ := storage.TreeDigest(live, nil); d != mustDigest(t, b, "ds", "s2") {
		t.Fatal("s2 differs from the live tree")
	}
	if _, err := b.Verify(bg, storage.VerifyRequest{Dataset: "ds", Name: "s2", Digest: s2.Digest}); err != nil {
		t.Fatal(err)
	}
	if ino(t, filepath.Join(b.snapTree("ds", "s1"), "d", "f0")) != ino(t, filepath.Join(b.snapTree("ds", "s2"), "d", "f0")) {
		t.Error("an unchanged file was copied instead of linked")
	}
}
