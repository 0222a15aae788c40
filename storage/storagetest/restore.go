package storagetest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
)

// RestoreDataset is where the restore cases bring the replica back to on
// the source's host: a dataset that did not exist.
const RestoreDataset = "restored/share01"

// testRestore sends the target's replica back (SendRequest.Restore) into a
// new dataset on the source's host, materialises it as a live, writable
// dataset with the source's content, and checks that the received
// snapshot stays untouched by edits to it.
func testRestore(t *testing.T, h *Harness) {
	if h.RootDir == nil {
		t.Skip("the harness does not expose its roots")
	}
	source(t, h)
	s1 := snapshot(t, h, "snap1")
	receive(t, h, sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap1"}), s1, "", "")
	replica := findSnapshot(t, h.Target, TargetDataset, "snap1")

	must(t, h.Source.CheckNewDataset(ctx, RestoreDataset))
	data := sendBytes(t, h.Target, storage.SendRequest{Dataset: TargetDataset, To: "snap1", Restore: true})
	got, err := h.Source.Receive(ctx, storage.ReceiveRequest{Dataset: RestoreDataset, Name: "snap1", SourceGUID: storage.SentGUID(h.Target.Kind(), replica)},
		Stream(t, data, resume.Position{}))
	must(t, err)
	if got.ReceivedGUID != storage.SentGUID(h.Target.Kind(), replica) {
		t.Fatalf("restored snapshot %+v: received guid %s, want the stream's %s", got, got.ReceivedGUID, storage.SentGUID(h.Target.Kind(), replica))
	}
	want := digestOf(t, h.Source, SourceDataset, "snap1")
	if d := digestOf(t, h.Source, RestoreDataset, "snap1"); d != want {
		t.Fatalf("restored snapshot's content digest %s, the source's %s", d, want)
	}

	live, err := h.Source.Materialize(ctx, RestoreDataset, "snap1")
	must(t, err)
	if wantLive := filepath.Join(h.RootDir(Source), filepath.FromSlash(RestoreDataset)); live != wantLive {
		t.Fatalf("materialised at %s, want %s", live, wantLive)
	}
	if d, err := storage.TreeDigest(live, nil); err != nil || d != want {
		t.Fatalf("restored live tree digest %s (%v), the source's %s", d, err, want)
	}
	if again, err := h.Source.Materialize(ctx, RestoreDataset, "snap1"); err != nil || again != live {
		t.Fatalf("materialise again: %s, %v; want %s and no error", again, err, live)
	}
	// Writable, and edits stay out of the snapshot it came from.
	must(t, os.WriteFile(filepath.Join(live, "after-restore.txt"), []byte("new\n"), 0o644))
	MutateTree(t, live, 1)
	if d := digestOf(t, h.Source, RestoreDataset, "snap1"); d != want {
		t.Fatalf("editing the restored dataset changed its snapshot: digest %s, want %s", d, want)
	}
	// It is a dataset like any other: it can be snapshotted.
	if _, err := h.Source.CreateSnapshot(ctx, RestoreDataset, "after"); err != nil {
		t.Fatalf("snapshot of the restored dataset: %v", err)
	}
	// Now it exists: a second restore into it is refused.
	err = h.Source.CheckNewDataset(ctx, RestoreDataset)
	kindIs(t, err, storage.KindConflict)
	if !strings.Contains(err.Error(), live) {
		t.Fatalf("refusal does not name %s: %v", live, err)
	}
}

// testRestoreRefusesExisting: a dataset that exists in any form (live,
// a replica's view) is refused by CheckNewDataset and by Materialize,
// and nothing changes.
func testRestoreRefusesExisting(t *testing.T, h *Harness) {
	if h.RootDir == nil {
		t.Skip("the harness does not expose its roots")
	}
	live := source(t, h)
	s1 := snapshot(t, h, "snap1")
	receive(t, h, sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, To: "snap1"}), s1, "", "")

	for _, c := range []struct {
		side Side
		ds   string
	}{{Source, SourceDataset}, {Target, TargetDataset}} {
		err := h.Backend(c.side).CheckNewDataset(ctx, c.ds)
		kindIs(t, err, storage.KindConflict)
		if !strings.Contains(err.Error(), filepath.Join(h.RootDir(c.side), filepath.FromSlash(c.ds))) {
			t.Fatalf("refusal of %s does not name its path: %v", c.ds, err)
		}
	}
	before, liveBefore := footprint(t, h, Source), Footprint(t, live)
	_, err := h.Source.Materialize(ctx, SourceDataset, "snap1")
	kindIs(t, err, storage.KindConflict)
	if after := footprint(t, h, Source); !slices.Equal(before, after) {
		t.Fatalf("a refused materialise changed the root:\nbefore %q\nafter  %q", before, after)
	}
	if after := Footprint(t, live); !slices.Equal(liveBefore, after) {
		t.Fatalf("a refused materialise changed the live dataset")
	}
	// A dataset nothing holds is new.
	must(t, h.Source.CheckNewDataset(ctx, "fresh"))
}

func findSnapshot(t testing.TB, b storage.Backend, ds, name string) storage.Snapshot {
	t.Helper()
	list, err := b.ListSnapshots(ctx, ds)
	must(t, err)
	for _, s := range list {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("snapshot %s of %s not listed", name, ds)
	return storage.Snapshot{}
}
