package activities

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/storage"
)

// Compensation after a transient failure: DiscardPartials{All,
// KeepResumable} keeps the receive that can be resumed and removes the
// rest; without KeepResumable it removes everything.
func TestDiscardPartialsKeepsOnlyResumableOnes(t *testing.T) {
	p := newPair(t, 24<<20, -1)
	sess := p.snapshotAndOpen(t, "s1")
	p.relay.CutAfter(12 << 20)
	_, err := runActivity(t, p.tgt.Receive, ReceiveInput{Job: "j", Dataset: "replica", Name: "s1", SourceGUID: sess.SourceGUID, Session: sess})
	requireType(t, err, "Temporary")
	// An interrupted snapshot creation on the target: never resumable.
	tgtRoot := p.tgt.Backend.(interface{ Root() string }).Root()
	require.NoError(t, os.MkdirAll(filepath.Join(tgtRoot, ".ferry", "tmp", "replica", "half-made"), 0o755))

	before, err := p.tgt.Backend.Partials(context.Background(), "replica")
	require.NoError(t, err)
	require.Len(t, before, 2)

	res, err := runActivity(t, p.tgt.DiscardPartials, DiscardPartialsInput{Job: "j", Dataset: "replica", All: true, KeepResumable: true})
	require.NoError(t, err)
	require.Len(t, res.Kept, 1)
	require.Equal(t, "s1", res.Kept[0].Name)
	require.NotNil(t, res.Kept[0].Resume)
	require.Len(t, res.Discarded, 1)
	require.Equal(t, "half-made", res.Discarded[0].Name)
	left, err := p.tgt.Backend.Partials(context.Background(), "replica")
	require.NoError(t, err)
	require.Len(t, left, 1)
	require.Equal(t, res.Kept[0].ID, left[0].ID)

	res, err = runActivity(t, p.tgt.DiscardPartials, DiscardPartialsInput{Job: "j", Dataset: "replica", All: true})
	require.NoError(t, err)
	require.Len(t, res.Discarded, 1)
	require.Empty(t, res.Kept)
	left, err = p.tgt.Backend.Partials(context.Background(), "replica")
	require.NoError(t, err)
	require.Empty(t, left)
}

// The run's snapshot disappears on the source between two attempts of the
// same session (its send crashed, the snapshot was deleted before the
// retry): the next receive fails at once as NotFound naming the snapshot,
// instead of being retried with the same session until it expires.
func TestReceiveOfASnapshotGoneOnTheSourceIsNotFound(t *testing.T) {
	p := newPair(t, 24<<20, -1)
	sess := p.snapshotAndOpen(t, "s1")
	p.relay.CutAfter(8 << 20)
	_, err := runActivity(t, p.tgt.Receive, ReceiveInput{Job: "j", Dataset: "replica", Name: "s1", SourceGUID: sess.SourceGUID, Session: sess})
	requireType(t, err, "Temporary")
	p.relay.CutAfter(0)

	require.NoError(t, p.src.Backend.DestroySnapshot(context.Background(), "share", "s1"))
	_, err = runActivity(t, p.tgt.Receive, ReceiveInput{Job: "j", Dataset: "replica", Name: "s1", SourceGUID: sess.SourceGUID, Session: sess})
	requireType(t, err, ErrNotFound)
	require.Contains(t, err.Error(), "s1")
	var ae *temporal.ApplicationError
	require.ErrorAs(t, err, &ae)
	require.True(t, ae.NonRetryable(), "a snapshot gone on the source is not retried")
	t.Logf("error: %v", err)
}

// A NoSpace from the backend reaches the workflow saying "receive" once and
// naming the filesystem's path and host.
func TestNoSpaceFailureNamesThePathAndHost(t *testing.T) {
	h := &Host{Name: "nas-c"}
	root := t.TempDir()
	err := h.fail(zap.NewNop(), "receive", storage.NoSpace("receive", "rep03", "ferry_x", `"big.bin"`, 1<<40, 0, root, syscall.ENOSPC))
	requireType(t, err, ErrNoSpace)
	var ae *temporal.ApplicationError
	require.ErrorAs(t, err, &ae)
	require.True(t, strings.HasPrefix(ae.Message(), `receive rep03@ferry_x on nas-c: no space left writing "big.bin": the snapshot needs 1.0 TiB`), ae.Message())
	require.Contains(t, ae.Message(), " free on "+root+" (nas-c) after discarding the partial receive")
	require.Contains(t, ae.Message(), " there or raise its quota, then run the job again; nothing of this receive was kept")
}
