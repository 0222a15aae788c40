package activities

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.uber.org/zap/zaptest"

	"github.com/ferry-nas/ferry/certs"
	"github.com/ferry-nas/ferry/internal/relay"
	"github.com/ferry-nas/ferry/internal/sampleshare"
	"github.com/ferry-nas/ferry/storage/dir"
	"github.com/ferry-nas/ferry/transfer"
)

// pair is a source and a target host with real dir backends and a real
// data plane over loopback TLS, the source reached through a relay.
type pair struct {
	src, tgt *Host
	relay    *relay.Relay
	shareLen int64
}

func newPair(t *testing.T, shareSize int64, clientRetries int) *pair {
	t.Helper()
	tmp := t.TempDir()
	certDir := filepath.Join(tmp, "certs")
	_, _, err := certs.Init(certDir, false)
	require.NoError(t, err)
	for _, h := range []string{"nas-a", "nas-b"} {
		_, _, err := certs.Issue(certDir, h, certs.IssueOptions{})
		require.NoError(t, err)
	}
	log := zaptest.NewLogger(t)

	srcRoot, tgtRoot := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	require.NoError(t, os.MkdirAll(filepath.Join(srcRoot, "share"), 0o755))
	require.NoError(t, os.MkdirAll(tgtRoot, 0o755))
	require.NoError(t, sampleshare.Write(filepath.Join(srcRoot, "share"), shareSize, 1))
	srcBackend, err := dir.New(srcRoot)
	require.NoError(t, err)
	tgtBackend, err := dir.New(tgtRoot)
	require.NoError(t, err)

	serverTLS, err := certs.ServerConfig(certs.HostFiles(certDir, "nas-a"))
	require.NoError(t, err)
	srv, err := transfer.NewServer(transfer.ServerConfig{TLS: serverTLS, Logger: log})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	rl, err := relay.Start(ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { rl.Close() })

	clientTLS, err := certs.ClientConfig(certs.HostFiles(certDir, "nas-b"), "")
	require.NoError(t, err)
	client, err := transfer.NewClient(transfer.ClientConfig{TLS: clientTLS, Logger: log, MaxRetries: clientRetries, Backoff: 10 * time.Millisecond})
	require.NoError(t, err)

	return &pair{
		src:      &Host{Name: "nas-a", DataAddress: rl.Addr(), Backend: srcBackend, Sessions: srv, Logger: log},
		tgt:      &Host{Name: "nas-b", Backend: tgtBackend, Fetcher: client, Logger: log, HeartbeatEvery: 50 * time.Millisecond},
		relay:    rl,
		shareLen: shareSize,
	}
}

// runActivity runs an activity method in Temporal's activity test environment
// so heartbeats and activity info are real.
func runActivity[In, Out any](t *testing.T, fn func(context.Context, In) (Out, error), in In) (Out, error) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(fn)
	var out Out
	v, err := env.ExecuteActivity(fn, in)
	if err != nil {
		return out, err
	}
	require.NoError(t, v.Get(&out))
	return out, nil
}

func (p *pair) snapshotAndOpen(t *testing.T, name string) OpenSendResult {
	t.Helper()
	_, err := runActivity(t, p.src.CreateSnapshot, CreateSnapshotInput{Job: "j", Dataset: "share", Name: name})
	require.NoError(t, err)
	sess, err := runActivity(t, p.src.OpenSend, OpenSendInput{Job: "j", Dataset: "share", To: name, TargetHost: "nas-b", TTL: time.Hour})
	require.NoError(t, err)
	require.NotEmpty(t, sess.SourceGUID)
	require.Positive(t, sess.Expected)
	return sess
}

func (p *pair) requireSameContent(t *testing.T, name string) {
	t.Helper()
	want, err := p.src.Backend.ContentDigest(context.Background(), "share", name)
	require.NoError(t, err)
	got, err := p.tgt.Backend.ContentDigest(context.Background(), "replica", name)
	require.NoError(t, err)
	require.Equal(t, want, got, "target content digest differs from the source's")
}

func TestReceiveVerifyAndMarkOverTheDataPlane(t *testing.T) {
	p := newPair(t, 8<<20, 0)
	sess := p.snapshotAndOpen(t, "s1")

	rcv, err := runActivity(t, p.tgt.Receive, ReceiveInput{Job: "j", Dataset: "replica", Name: "s1", SourceGUID: sess.SourceGUID, Session: sess})
	require.NoError(t, err)
	require.Equal(t, sess.SourceGUID, rcv.Snapshot.ReceivedGUID)
	require.False(t, rcv.Resumed)
	require.NotEmpty(t, sess.SourceDatasetGUID, "the source names its dataset")
	require.Equal(t, sess.SourceDatasetGUID, rcv.Snapshot.DatasetGUID, "the replica records which source dataset it came from")
	require.Positive(t, rcv.Snapshot.Seq)

	_, err = runActivity(t, p.tgt.Verify, VerifyInput{Job: "j",
		Dataset: "replica", Name: "s1", SourceGUID: sess.SourceGUID, Digest: sess.SourceDigest})
	require.NoError(t, err)
	p.requireSameContent(t, "s1")

	_, err = runActivity(t, p.src.Mark, MarkInput{Job: "j", Dataset: "share", Mark: MarkCursor, Snapshot: "s1"})
	require.NoError(t, err)
	marks, err := p.src.Backend.Marks(context.Background(), "share")
	require.NoError(t, err)
	require.Equal(t, "s1", marks[MarkName(MarkCursor, "j")])

	// A new session forgets the completed one: tokens do not pile up.
	p.src.mu.Lock()
	require.Equal(t, []string{sess.Token}, p.src.tokens["j"])
	p.src.mu.Unlock()
	next, err := runActivity(t, p.src.OpenSend, OpenSendInput{Job: "j", Dataset: "share", To: "s1", TargetHost: "nas-b", TTL: time.Hour})
	require.NoError(t, err)
	p.src.mu.Lock()
	require.Equal(t, []string{next.Token}, p.src.tokens["j"])
	p.src.mu.Unlock()

	// The token is burned: a second receive with it is a lost session.
	_, err = runActivity(t, p.tgt.Receive, ReceiveInput{Job: "j", Dataset: "replica2", Name: "s1", SourceGUID: sess.SourceGUID, Session: sess})
	requireType(t, err, ErrSessionLost)
}

func TestReceiveResumesAfterTheLinkDies(t *testing.T) {
	// No client-side reconnects: the first attempt fails like a dead link
	// would after its retries, leaving a resumable partial.
	p := newPair(t, 24<<20, -1)
	sess := p.snapshotAndOpen(t, "s1")
	p.relay.CutAfter(12 << 20)
	_, err := runActivity(t, p.tgt.Receive, ReceiveInput{Job: "j", Dataset: "replica", Name: "s1", SourceGUID: sess.SourceGUID, Session: sess})
	require.Error(t, err)
	requireType(t, err, "Temporary")

	partials, err := p.tgt.Backend.Partials(context.Background(), "replica")
	require.NoError(t, err)
	require.Len(t, partials, 1)
	require.NotNil(t, partials[0].Resume, "the interrupted receive left a resumable checkpoint")
	require.Positive(t, partials[0].Resume.Offset)

	p.relay.CutAfter(0)
	before := p.relay.Upstream.Load()
	rcv, err := runActivity(t, p.tgt.Receive, ReceiveInput{Job: "j", Dataset: "replica", Name: "s1", SourceGUID: sess.SourceGUID, Session: sess})
	require.NoError(t, err)
	require.True(t, rcv.Resumed)
	second := p.relay.Upstream.Load() - before
	require.Less(t, second, p.shareLen-partials[0].Resume.Offset+(1<<20), "the retry only moved what the partial lacked")
	require.Less(t, p.relay.Upstream.Load(), p.shareLen*13/10, "total bytes moved stay under 1.3x the share")
	p.requireSameContent(t, "s1")
}

func TestSnapshotOfMissingDatasetIsNotFound(t *testing.T) {
	p := newPair(t, 1<<20, 0)
	_, err := runActivity(t, p.src.CreateSnapshot, CreateSnapshotInput{Job: "j", Dataset: "nope", Name: "s1"})
	requireType(t, err, ErrNotFound)
}

func TestVerifyOfWrongIdentityIsVerifyFailed(t *testing.T) {
	p := newPair(t, 1<<20, 0)
	sess := p.snapshotAndOpen(t, "s1")
	_, err := runActivity(t, p.tgt.Receive, ReceiveInput{Job: "j", Dataset: "replica", Name: "s1", SourceGUID: sess.SourceGUID, Session: sess})
	require.NoError(t, err)
	_, err = runActivity(t, p.tgt.Verify, VerifyInput{Job: "j",
		Dataset: "replica", Name: "s1", SourceGUID: "someone-else"})
	requireType(t, err, ErrVerifyFailed)
}

func requireType(t *testing.T, err error, errType string) {
	t.Helper()
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "want an application error of type %s, got %v", errType, err)
	require.Equal(t, errType, ae.Type(), "error: %v", err)
}

// TestStorageErrorsNameTheHost: the backend names dataset and snapshot, the
// activity adds the host whose storage it is.
func TestStorageErrorsNameTheHost(t *testing.T) {
	p := newPair(t, 1<<20, 0)
	_, err := runActivity(t, p.src.CreateSnapshot, CreateSnapshotInput{Job: "j", Dataset: "nope", Name: "s1"})
	requireType(t, err, ErrNotFound)
	require.Contains(t, err.Error(), "create snapshot nope on nas-a: dataset directory")
}

// TestDeepVerifyNamesSnapshotAndFix: a deep verify whose content digests
// differ names the host, the snapshot, both digests and what to do.
func TestDeepVerifyNamesSnapshotAndFix(t *testing.T) {
	p := newPair(t, 1<<20, 0)
	sess := p.snapshotAndOpen(t, "s1")
	_, err := runActivity(t, p.tgt.Receive, ReceiveInput{Job: "j", Dataset: "replica", Name: "s1", SourceGUID: sess.SourceGUID, Session: sess})
	require.NoError(t, err)
	_, err = runActivity(t, p.tgt.Verify, VerifyInput{Job: "j", Dataset: "replica", Name: "s1", SourceGUID: sess.SourceGUID,
		Deep: true, SourceContentDigest: "sha256:not-the-same"})
	requireType(t, err, ErrVerifyFailed)
	for _, want := range []string{"deep verify replica@s1", "the copy on nas-b", "sha256:not-the-same", "sends the step again", "check both hosts' disks"} {
		require.Contains(t, err.Error(), want)
	}
}

// TestInventoryReportsAnomalies: greet reports a modified replica and a
// foreign directory apart from partials, with what changed and the fix.
func TestInventoryReportsAnomalies(t *testing.T) {
	p := newPair(t, 1<<20, 0)
	sess := p.snapshotAndOpen(t, "s1")
	_, err := runActivity(t, p.tgt.Receive, ReceiveInput{Job: "j", Dataset: "replica", Name: "s1", SourceGUID: sess.SourceGUID, Session: sess})
	require.NoError(t, err)
	root := p.tgt.Backend.(*dir.Backend).Root()
	snaps := filepath.Join(root, ".ferry", "snapshots", "replica")
	fi, err := os.Stat(filepath.Join(snaps, "s1"))
	require.NoError(t, err)
	require.NoError(t, os.Chmod(filepath.Join(snaps, "s1"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(snaps, "s1", "injected.txt"), []byte("x"), 0o644))
	require.NoError(t, os.Chmod(filepath.Join(snaps, "s1"), fi.Mode()))
	require.NoError(t, os.Mkdir(filepath.Join(snaps, "handmade"), 0o755))

	inv, err := runActivity(t, p.tgt.Inventory, InventoryInput{Job: "j", Dataset: "replica"})
	require.NoError(t, err)
	require.Empty(t, inv.Snapshots)
	require.Empty(t, inv.Partials)
	require.Len(t, inv.Anomalies, 2)
	require.Equal(t, Anomaly{Dataset: "replica", Kind: AnomalyForeign, Name: "handmade", ID: ".ferry/snapshots/replica/handmade",
		What: inv.Anomalies[0].What, Fix: inv.Anomalies[0].Fix}, inv.Anomalies[0])
	mod := inv.Anomalies[1]
	require.Equal(t, AnomalyModified, mod.Kind)
	require.Equal(t, "s1", mod.Name)
	require.Contains(t, mod.What, `"injected.txt" was added`)
	require.Contains(t, mod.Fix, "replica")
}
