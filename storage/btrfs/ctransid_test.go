package btrfs

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/storage/storagetest"
)

// TestCtransidTracksEveryChange measures what modification detection
// relies on: every kind of change an administrator can make to a snapshot
// made writable with the raw ioctl (received_uuid kept) moves its ctransid,
// already before the transaction commits, while the read-only round trip
// alone does not (TestSendIsDeterministic shows a balance does not either,
// though it moves the generation, which is why ferry does not compare it).
func TestCtransidTracksEveryChange(t *testing.T) {
	need(t)
	b := newBackend(t, imageSize)
	live := createDataset(t, b, "ds")
	storagetest.MakeTree(t, live)
	changes := []struct {
		name   string
		change func(t *testing.T, sub string)
		moves  bool
	}{
		{"read-only flag cleared and set again, nothing else", func(t *testing.T, sub string) {}, false},
		{"file added", func(t *testing.T, sub string) {
			os.WriteFile(filepath.Join(sub, "injected.txt"), []byte("injected"), 0o644)
		}, true},
		{"byte overwritten in place, mtime set back", func(t *testing.T, sub string) { flipFirstByte(t, sub) }, true},
		{"file removed", func(t *testing.T, sub string) { must(t, os.Remove(firstFile(t, sub))) }, true},
		{"mode changed", func(t *testing.T, sub string) { must(t, os.Chmod(firstFile(t, sub), 0o600)) }, true},
		{"xattr set", func(t *testing.T, sub string) {
			must(t, unix.Lsetxattr(firstFile(t, sub), "user.injected", []byte("x"), 0))
		}, true},
		{"file renamed", func(t *testing.T, sub string) {
			f := firstFile(t, sub)
			must(t, os.Rename(f, f+".renamed"))
		}, true},
		{"file truncated", func(t *testing.T, sub string) { must(t, os.Truncate(firstFile(t, sub), 1)) }, true},
		{"mtime changed", func(t *testing.T, sub string) {
			must(t, unix.UtimesNano(firstFile(t, sub), []unix.Timespec{{Sec: 1}, {Sec: 1}}))
		}, true},
	}
	for i, c := range changes {
		name := "s" + string(rune('a'+i))
		if _, err := b.CreateSnapshot(ctx, "ds", name); err != nil {
			t.Fatal(err)
		}
		sub := b.subvolPath("ds", name)
		before, err := b.show(ctx, sub)
		if err != nil {
			t.Fatal(err)
		}
		setReadOnly(t, sub, false)
		c.change(t, sub)
		setReadOnly(t, sub, true)
		// Seen before the transaction commits: greet needs no syncfs.
		unsynced, err := b.show(ctx, sub)
		if err != nil {
			t.Fatal(err)
		}
		if moved := unsynced.Ctransid != before.Ctransid; moved != c.moves {
			t.Errorf("%s: before a commit, ctransid moved %v, want %v", c.name, moved, c.moves)
		}
		if err := syncFS(sub); err != nil {
			t.Fatal(err)
		}
		after, err := b.show(ctx, sub)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-45s ctransid %d -> %d, generation %d -> %d", c.name, before.Ctransid, after.Ctransid, before.Generation, after.Generation)
		if moved := after.Ctransid != before.Ctransid; moved != c.moves {
			t.Errorf("%s: ctransid moved %v, want %v", c.name, moved, c.moves)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// firstFile is the first regular file under root, in walk order.
func firstFile(t testing.TB, root string) string {
	t.Helper()
	var found string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && found == "" && d.Type().IsRegular() {
			found = p
		}
		return err
	})
	if found == "" {
		t.Fatalf("no regular file under %s", root)
	}
	return found
}
