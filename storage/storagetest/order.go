package storagetest

import (
	"encoding/json"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
)

// receiveFrom receives src (incremental on parent if set) naming the
// source's dataset, as the replication activity does.
func receiveFrom(t testing.TB, h *Harness, src storage.Snapshot, parent string, srcParentGUID string) storage.Snapshot {
	t.Helper()
	// The suite names a target parent like its source snapshot.
	data := sendBytes(t, h.Source, storage.SendRequest{Dataset: SourceDataset, From: parent, To: src.Name})
	got, err := h.Target.Receive(ctx, storage.ReceiveRequest{Dataset: TargetDataset, Name: src.Name, SourceGUID: src.GUID,
		SourceDatasetGUID: src.DatasetGUID, Parent: parent}, Stream(t, data, resume.Position{}))
	must(t, err)
	checkReceived(t, h, got, src, srcParentGUID)
	return got
}

func names(list []storage.Snapshot) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = s.Name
	}
	return out
}

// requireOrder checks that side lists want in that order, with Seq growing.
func requireOrder(t testing.TB, h *Harness, side Side, ds string, want []string) []storage.Snapshot {
	t.Helper()
	list, err := h.Backend(side).ListSnapshots(ctx, ds)
	must(t, err)
	if got := names(list); !slices.Equal(got, want) {
		t.Fatalf("%s lists %q, want %q (oldest first by the filesystem, not the clock)", side, got, want)
	}
	for i, s := range list {
		if s.Seq == 0 || (i > 0 && s.Seq <= list[i-1].Seq) {
			t.Fatalf("%s: %s has Seq %d after %d: Seq must grow with every snapshot", side, s.Name, s.Seq, list[max(i-1, 0)].Seq)
		}
	}
	return list
}

// testOrder: snapshots are listed in the order they were made (source) or
// committed (target), even when the clock stepped back in between so that
// their recorded creation times say otherwise.
func testOrder(t *testing.T, h *Harness) {
	live := source(t, h)
	var snaps []storage.Snapshot
	for i, n := range []string{"ord1", "ord2", "ord3"} {
		if i > 0 {
			MutateTree(t, live, i) // steps 1 and 2
		}
		snaps = append(snaps, snapshot(t, h, n))
	}
	// The target commits them in another order: ord2 in full, ord1 in full
	// beside it, then ord3 on ord2. A linear target (ZFS) takes ord2 in
	// full, then ord3 on it: ord1 predates its replica.
	targetOrder := []string{"ord2", "ord1", "ord3"}
	receiveFrom(t, h, snaps[1], "", "")
	if h.LinearReceives {
		targetOrder = []string{"ord2", "ord3"}
	} else {
		receiveFrom(t, h, snaps[0], "", "")
	}
	receiveFrom(t, h, snaps[2], "ord2", snaps[1].GUID)

	if h.Backdate != nil {
		// The clock went back an hour before each snapshot and each commit.
		now := time.Now().UTC().Truncate(time.Second)
		for i, n := range []string{"ord1", "ord2", "ord3"} {
			h.Backdate(t, Source, SourceDataset, n, now.Add(-time.Duration(i)*time.Hour))
		}
		for i, n := range targetOrder {
			h.Backdate(t, Target, TargetDataset, n, now.Add(-time.Duration(i)*time.Hour))
		}
	}
	src := requireOrder(t, h, Source, SourceDataset, []string{"ord1", "ord2", "ord3"})
	tgt := requireOrder(t, h, Target, TargetDataset, targetOrder)
	if h.Backdate != nil {
		for _, list := range [][]storage.Snapshot{src, tgt} {
			if last := len(list) - 1; !list[0].CreatedAt.After(list[last].CreatedAt) {
				t.Fatalf("the backdated creation times did not take: %s %v, %s %v", list[0].Name, list[0].CreatedAt, list[last].Name, list[last].CreatedAt)
			}
		}
	}
	// A snapshot made after the clock stepped back is still the newest.
	MutateTree(t, live, 3)
	snapshot(t, h, "ord4")
	requireOrder(t, h, Source, SourceDataset, []string{"ord1", "ord2", "ord3", "ord4"})
}

// testSourceDataset: every snapshot of a dataset names the dataset's
// identity, another dataset has another one, and a received snapshot keeps
// the source dataset's identity the receive request named — also after
// the source deleted the snapshot.
func testSourceDataset(t *testing.T, h *Harness) {
	live := source(t, h)
	s1 := snapshot(t, h, "ds1")
	MutateTree(t, live, 1)
	s2 := snapshot(t, h, "ds2")
	if s1.DatasetGUID == "" || s2.DatasetGUID != s1.DatasetGUID {
		t.Fatalf("snapshots of one dataset name dataset identities %q and %q: want one, not empty", s1.DatasetGUID, s2.DatasetGUID)
	}
	const other = "share02"
	h.CreateDataset(t, Source, other)
	MakeTree(t, h.LivePath(Source, other))
	o, err := h.Source.CreateSnapshot(ctx, other, "ds1")
	must(t, err)
	if o.DatasetGUID == "" || o.DatasetGUID == s1.DatasetGUID {
		t.Fatalf("dataset %s has identity %q, %s has %q: want two different ones", other, o.DatasetGUID, SourceDataset, s1.DatasetGUID)
	}

	got := receiveFrom(t, h, s1, "", "")
	if got.DatasetGUID != s1.DatasetGUID {
		t.Fatalf("received %s records source dataset %q, want %q", got.Name, got.DatasetGUID, s1.DatasetGUID)
	}
	must(t, h.Source.DestroySnapshot(ctx, SourceDataset, "ds1"))
	list := requireOrder(t, h, Target, TargetDataset, []string{"ds1"})
	if list[0].DatasetGUID != s1.DatasetGUID {
		t.Fatalf("listed %s records source dataset %q, want %q", list[0].Name, list[0].DatasetGUID, s1.DatasetGUID)
	}
}

// BackdateMetaFile rewrites the "created_at" of a JSON metadata file, as a
// backend's Backdate hook does.
func BackdateMetaFile(t testing.TB, path string, at time.Time) {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	var m map[string]any
	must(t, json.Unmarshal(data, &m))
	if _, ok := m["created_at"]; !ok {
		t.Fatalf("%s has no created_at", path)
	}
	m["created_at"] = at.UTC().Format(time.RFC3339Nano)
	data, err = json.Marshal(m)
	must(t, err)
	must(t, os.WriteFile(path, data, 0o600))
}
