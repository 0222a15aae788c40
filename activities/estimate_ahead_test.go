package activities

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-nas/ferry/storage"
)

// aheadBackend is a backend whose estimate is slow (storage.EstimateAhead):
// it records every estimate it is asked for.
type aheadBackend struct {
	storage.Backend
	mu    sync.Mutex
	calls []storage.SendRequest
}

func (b *aheadBackend) EstimateAhead() bool { return true }

func (b *aheadBackend) EstimateSendSize(ctx context.Context, req storage.SendRequest) (int64, error) {
	b.mu.Lock()
	b.calls = append(b.calls, req)
	b.mu.Unlock()
	return b.Backend.EstimateSendSize(ctx, req)
}

func (b *aheadBackend) estimates() []storage.SendRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]storage.SendRequest(nil), b.calls...)
}

// TestEstimateAhead: on a backend whose estimate is slow, the snapshot
// activity starts the estimate of the step from the job's cursor to the
// new snapshot, and OpenSend of that step uses it (one estimate, the same
// size as one OpenSend makes itself); OpenSend of another step estimates
// its own. Without a cursor nothing is started.
func TestEstimateAhead(t *testing.T) {
	p := newPair(t, 4<<20, 0)
	ab := &aheadBackend{Backend: p.src.Backend}
	p.src.Backend = ab
	open := func(from, to string) OpenSendResult {
		t.Helper()
		sess, err := runActivity(t, p.src.OpenSend, OpenSendInput{Job: "j", Dataset: "share", From: from, To: to, TargetHost: "nas-b", TTL: time.Hour})
		require.NoError(t, err)
		return sess
	}

	_, err := runActivity(t, p.src.CreateSnapshot, CreateSnapshotInput{Job: "j", Dataset: "share", Name: "s1"})
	require.NoError(t, err)
	require.Empty(t, ab.estimates(), "no cursor: nothing to estimate ahead")
	open("", "s1")
	require.Len(t, ab.estimates(), 1)
	_, err = runActivity(t, p.src.Mark, MarkInput{Job: "j", Dataset: "share", Mark: MarkCursor, Snapshot: "s1"})
	require.NoError(t, err)

	_, err = runActivity(t, p.src.CreateSnapshot, CreateSnapshotInput{Job: "j", Dataset: "share", Name: "s2"})
	require.NoError(t, err)
	sess := open("s1", "s2")
	require.Len(t, ab.estimates(), 2, "OpenSend of the step estimated ahead made no estimate of its own")
	require.Equal(t, storage.SendRequest{Dataset: "share", From: "s1", To: "s2", Job: "j"}, ab.estimates()[1], "the estimate started ahead")
	own, err := ab.Backend.EstimateSendSize(context.Background(), storage.SendRequest{Dataset: "share", From: "s1", To: "s2", Job: "j"})
	require.NoError(t, err)
	require.Equal(t, own, sess.Expected)

	// Another step (here: a full send of s2) is estimated by OpenSend itself;
	// the estimate ahead is used once only.
	open("", "s2")
	open("s1", "s2")
	require.Len(t, ab.estimates(), 4)
}

// TestCreateSnapshotWithInventory: asked for it, the snapshot activity
// returns the source's inventory taken after the snapshot (which lists
// it); not asked, none.
func TestCreateSnapshotWithInventory(t *testing.T) {
	p := newPair(t, 1<<20, 0)
	res, err := runActivity(t, p.src.CreateSnapshot, CreateSnapshotInput{Job: "j", Dataset: "share", Name: "s1"})
	require.NoError(t, err)
	require.Nil(t, res.Inventory)
	res, err = runActivity(t, p.src.CreateSnapshot, CreateSnapshotInput{Job: "j", Dataset: "share", Name: "s2", Inventory: true})
	require.NoError(t, err)
	require.NotNil(t, res.Inventory)
	want, err := runActivity(t, p.src.Inventory, InventoryInput{Job: "j", Dataset: "share"})
	require.NoError(t, err)
	require.Equal(t, want, *res.Inventory)
	require.Len(t, res.Inventory.Snapshots, 2)
	require.Equal(t, "s2", res.Inventory.Snapshots[1].Name)
}
