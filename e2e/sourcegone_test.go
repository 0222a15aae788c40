package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/starter"
)

// TestSourceSnapshotGoneMidStream (issue 7, item 8a): while the run's stream
// is cut, its snapshot is deleted on the source; when the link is back the
// source answers the resumed session with NotFound, and the run ends with
// that — naming the source and the snapshot — instead of retrying the same
// session until it expires (6 h, far beyond this test's deadline), and
// leaves nothing half-received on the target.
func TestSourceSnapshotGoneMidStream(t *testing.T) {
	requireSourceGoneEndsTheRun(t, newEnv(t, envOptions{ShareSize: slowShare, BWLimit: slowRate}))
}

// TestBtrfsSourceSnapshotGoneMidStream: the same on btrfs, where the source
// regenerates the stream with `btrfs send` and the target pipes it into
// `btrfs receive` (resume auto).
func TestBtrfsSourceSnapshotGoneMidStream(t *testing.T) {
	requireSourceGoneEndsTheRun(t, newBtrfsEnv(t, envOptions{ShareSize: seedShare, BWLimit: seedRate, Images: seedImages}))
}

func requireSourceGoneEndsTheRun(t *testing.T, e *env) {
	e.apply()
	st := e.start()
	snap := e.waitStreaming(st, 0.25).Snapshot

	// Hold the link: the connection in flight is cut and every new one
	// breaks after its first byte, while the snapshot is deleted.
	e.relay.CutAfter(1)
	e.relay.DropAll()
	// btrfs refuses to delete a snapshot while its `btrfs send` still runs
	// (EPERM): the source ends it once it notices the connection is gone.
	e.waitFor(30*time.Second, "the source's send to end so that "+snap+" can be deleted", func() (bool, error) {
		err := e.backend(source).DestroySnapshot(e.ctx, srcDataset, snap)
		if err != nil && strings.Contains(err.Error(), "send may be in progress") {
			return false, nil
		}
		return err == nil, err
	})
	e.relay.CutAfter(0)
	restored := time.Now()

	_, err := e.result(st)
	var ae *temporal.ApplicationError
	require.ErrorAs(t, err, &ae, "the run did not fail")
	require.Equal(t, activities.ErrNotFound, ae.Type(), "error: %v", err)
	require.Contains(t, ae.Message(), snap)
	require.Contains(t, ae.Message(), "source "+source)
	t.Logf("the run failed %v after the link came back: %s", time.Since(restored).Round(time.Millisecond), ae.Message())

	e.recordHistory(st, "source-gone-"+e.kind+"-v2.json")

	// The receive that met the missing snapshot was not retried.
	rcv := e.activities(st, starter.ReceiveActivity)
	require.NotEmpty(t, rcv)
	last := rcv[len(rcv)-1]
	require.NotNil(t, last.Failed, "the last receive did not fail")
	require.Equal(t, activities.ErrNotFound, last.Failed.GetFailure().GetApplicationFailureInfo().GetType())

	snaps, err := e.backend(target).ListSnapshots(e.ctx, tgtDataset)
	require.NoError(t, err)
	for _, s := range snaps {
		require.NotEqual(t, snap, s.Name, "the target lists the snapshot that was never completely received")
	}
	e.requireNoPartials()
}
