package e2e

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/internal/prereq"
	"github.com/ferry-nas/ferry/internal/sampleshare"
	"github.com/ferry-nas/ferry/starter"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/workflows"
)

// The btrfs tests run the same system on the btrfs backend: each host's root
// is a loop-mounted btrfs image (two loop devices per test, released when the
// test ends), the share is a subvolume, the workers are real processes.

// needBtrfs skips the test without root, btrfs-progs, kernel btrfs or loop
// devices, and fails it instead when FERRY_REQUIRE names btrfs.
func needBtrfs(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: builds ferry and runs worker processes; skipped with -short")
	}
	prereq.Need(t, "btrfs", prereq.All(
		prereq.Root,
		prereq.Commands("btrfs", "mkfs.btrfs", "losetup"),
		prereq.Filesystem("btrfs"),
		prereq.LoopDevices,
	))
}

// newBtrfsEnv is newEnv on the btrfs backend.
func newBtrfsEnv(t testing.TB, opts envOptions) *env {
	t.Helper()
	needBtrfs(t)
	opts.Backend = config.BackendBtrfs
	return newEnv(t, opts)
}

// The seed scenario's stream: 300 MiB at 48 MiB/s is about 6 s a pass, so a
// kill lands mid-stream after the first heartbeat (2 s into the receive).
const (
	seedShare = 300 << 20
	seedRate  = "48MiB"
)

var seedImages = map[string]int64{source: 1 << 30, target: 1 << 30}

// TestBtrfsFullIncrementalCatchUp: on btrfs, through `ferry apply` and
// `ferry run --wait`, a full run, an incremental run, then a catch-up chain:
// a run made its snapshot while the target worker was down and was
// terminated in the greet step, the share changed again, and the next run
// sends both snapshots in one run (two steps). Every snapshot's content is
// the same on both sides, the target holds read-only received subvolumes
// whose received_uuid is the source snapshot's uuid, and its view shows
// all four with latest at the newest.
func TestBtrfsFullIncrementalCatchUp(t *testing.T) {
	e := newBtrfsEnv(t, envOptions{ShareSize: 32 << 20, Images: map[string]int64{source: 512 << 20, target: 512 << 20}})

	ap := e.ferry("apply")
	require.Equal(t, 0, ap.Code, "ferry apply failed")

	out, st := e.runCLI()
	require.Equal(t, 0, out.Code, "ferry run --wait failed")
	full := e.mustSucceed(st)
	require.Len(t, full.Plan.Steps, 1)
	require.Empty(t, full.Plan.Steps[0].From, "the first run is a full send")
	fullWire := e.relay.Upstream.Load()
	require.GreaterOrEqual(t, fullWire, e.shareSize, "a full send carries the whole share")
	e.requireSameContent(full.Snapshot)
	e.requireReceivedSubvolume(full.Snapshot)

	changes, err := sampleshare.Change(e.share, 1)
	require.NoError(t, err)
	t.Logf("changed the share: %v", changes)
	out, st = e.runCLI()
	require.Equal(t, 0, out.Code, "ferry run --wait failed")
	incr := e.mustSucceed(st)
	require.Len(t, incr.Plan.Steps, 1)
	require.Equal(t, full.Snapshot, incr.Plan.Steps[0].From, "the second run is an incremental from the first")
	incrWire := e.relay.Upstream.Load() - fullWire
	t.Logf("share %d bytes; full %d bytes on the wire, incremental %d", e.shareSize, fullWire, incrWire)
	require.Greater(t, incrWire, int64(2<<20), "the incremental carries at least the new 2 MiB file")
	require.Less(t, incrWire, e.shareSize/4, "the incremental moved far fewer bytes than the share")
	e.requireSameContent(incr.Snapshot)
	e.requireReceivedSubvolume(incr.Snapshot)

	// Catch-up: the target is down while a run snapshots the share.
	e.kill(target)
	changeShare(t, e.share, "first-missed")
	missed := e.snapshotWithTargetDown()

	changeShare(t, e.share, "second-missed")
	e.restart(target)
	out, st = e.runCLI()
	require.Equal(t, 0, out.Code, "ferry run --wait failed")
	catchUp := e.mustSucceed(st)
	steps := catchUp.Plan.Steps
	require.GreaterOrEqual(t, len(steps), 2, "the catch-up run is not a chain: %+v", steps)
	require.Len(t, steps, 2)
	require.Equal(t, incr.Snapshot, catchUp.Plan.Base)
	require.Equal(t, incr.Snapshot, steps[0].From)
	require.Equal(t, missed, steps[0].To, "the first step sends the missed run's snapshot")
	require.Equal(t, missed, steps[1].From)
	require.Equal(t, catchUp.Snapshot, steps[1].To)
	require.Contains(t, out.Out, "snapshot "+catchUp.Snapshot)
	e.requireSameContent(missed)
	e.requireSameContent(catchUp.Snapshot)
	e.requireReceivedSubvolume(catchUp.Snapshot)
	e.requireNoPartials()
	// The catch-up chain's two receives leave latest at the run's snapshot.
	e.requireReplicaView(full.Snapshot, incr.Snapshot, missed, catchUp.Snapshot)
}

// TestBtrfsReceiverKilledResumeOff is the field report's scenario: a
// 300 MiB share with stream.resume off, the receiving worker killed with
// SIGKILL mid-stream, and started again. What the kill leaves is a
// half-received subvolume that is a partial and never a snapshot; the
// retried receive discards it and starts from byte 0, and the run succeeds
// only with the whole share on the target: no complete snapshot of the
// run's name exists on the target before the restarted receive.
func TestBtrfsReceiverKilledResumeOff(t *testing.T) {
	e := newBtrfsEnv(t, envOptions{ShareSize: seedShare, BWLimit: seedRate, Resume: string(storage.ResumeOff), Images: seedImages})
	e.apply()
	st := e.start()
	watch := e.watchSnapshots(target, tgtDataset)
	defer watch.stop()
	p := e.waitStreaming(st, 0.25)
	name := p.Snapshot
	require.NotEmpty(t, name)

	e.kill(target)
	atKill := e.relay.Upstream.Load()
	killedAt := time.Now()
	t.Logf("killed %s with %d bytes through the relay (%.0f%% of %d expected)", target, atKill, 100*float64(atKill)/float64(p.Expected), p.Expected)
	e.requireRunning(st)

	// What the killed receive left: a partial, not a snapshot.
	snaps, err := e.backend(target).ListSnapshots(e.ctx, tgtDataset)
	require.NoError(t, err)
	require.NotContains(t, snapshotNames(snaps), name, "the half-received snapshot is listed as complete")
	left := e.partialsOf(name)
	require.Len(t, left, 1, "the killed receive left no partial of %s", name)
	require.Nil(t, left[0].Resume, "an off-mode partial is not resumable")
	partialSV := filepath.Join(e.roots[target], filepath.FromSlash(left[0].ID), name)
	sv := subvolume(t, partialSV)
	t.Logf("the kill left %s: %s; subvolume %s", left[0].ID, left[0].Reason, sv)
	require.True(t, !sv.readOnly || sv.receivedUUID == "", "the partial subvolume looks finished: %s", sv)

	again := e.restart(target)
	restartedAt := time.Now()
	res := e.mustSucceed(st)
	watch.stop()
	require.Equal(t, name, res.Snapshot)
	total := e.relay.Upstream.Load()
	stream := e.streamSize(st)
	t.Logf("stream %d bytes; %d through the relay in total (%.2fx), %d after the kill", stream, total, float64(total)/float64(stream), total-atKill)

	// The run never looked done before the restarted receive finished it.
	seen, ok := watch.firstSeen(name)
	require.True(t, ok, "the target never listed %s", name)
	require.True(t, seen.After(restartedAt), "%s was complete on the target at %v, before the receiver was restarted at %v (killed at %v)", name, seen, restartedAt, killedAt)
	t.Logf("%s first listed on the target %v after the restart", name, seen.Sub(restartedAt).Round(time.Millisecond))

	// The retried receive started over: the whole stream again after the kill.
	require.GreaterOrEqual(t, total-atKill, stream, "the stream was not sent again from byte 0")
	rcv := e.activities(st, starter.ReceiveActivity)
	require.NotEmpty(t, rcv)
	var rr activities.ReceiveResult
	require.NoError(t, rcv[len(rcv)-1].decode(&rr))
	require.False(t, rr.Resumed, "an off-mode receive resumed")
	require.GreaterOrEqual(t, rr.Bytes, stream)
	started := logLines(again.log, "receive")
	require.True(t, hasEntry(started, map[string]any{"snapshot": name, "mode": string(storage.ResumeOff), "from_offset": float64(0)}),
		"the restarted %s did not receive %s from byte 0 in off mode: %v", target, name, started)
	require.True(t, hasEntry(logLines(again.log, "discarding the partial receive an earlier attempt left; receiving from the start"),
		map[string]any{"snapshot": name}), "the restarted %s did not say it discarded the partial", target)

	// The partial subvolume was discarded, not finished and kept.
	got, err := e.backend(target).ListSnapshots(e.ctx, tgtDataset)
	require.NoError(t, err)
	for _, s := range got {
		if s.Name == name {
			require.NotEqual(t, sv.uuid, s.GUID, "the received snapshot is the partial subvolume")
		}
	}
	require.NotContains(t, subvolumeUUIDs(t, e.roots[target]), sv.uuid, "the partial subvolume %s is still on the target", sv.uuid)
	e.requireSameContent(name)
	e.requireReceivedSubvolume(name)
	e.requireNoPartials()
}

// TestBtrfsReceiverKilledResumeStaged: the same kill with stream.resume
// staged: the restarted receiver resumes the spool from its durable offset,
// so the run moves well under 1.3 times the stream.
func TestBtrfsReceiverKilledResumeStaged(t *testing.T) {
	e := newBtrfsEnv(t, envOptions{ShareSize: seedShare, BWLimit: seedRate, Resume: string(storage.ResumeStaged), Images: seedImages})
	e.apply()
	st := e.start()
	watch := e.watchSnapshots(target, tgtDataset)
	defer watch.stop()
	p := e.waitStreaming(st, 0.25)
	name := p.Snapshot

	e.kill(target)
	atKill := e.relay.Upstream.Load()
	t.Logf("killed %s with %d bytes through the relay (%.0f%% of %d expected)", target, atKill, 100*float64(atKill)/float64(p.Expected), p.Expected)
	e.requireRunning(st)
	left := e.partialsOf(name)
	require.Len(t, left, 1, "the killed receive left no partial of %s", name)
	require.NotNil(t, left[0].Resume, "the staged partial is not resumable: %s", left[0].Reason)
	t.Logf("the kill left %s: %s", left[0].ID, left[0].Reason)
	durable := left[0].Resume.Offset

	again := e.restart(target)
	restartedAt := time.Now()
	res := e.mustSucceed(st)
	watch.stop()
	total := e.relay.Upstream.Load()
	stream := e.streamSize(st)
	t.Logf("stream %d bytes; %d through the relay in total (%.3fx); durable at the kill %d, %d sent after it",
		stream, total, float64(total)/float64(stream), durable, total-atKill)
	require.Less(t, float64(total), 1.3*float64(stream), "the stream was not resumed: too many bytes sent")

	seen, ok := watch.firstSeen(name)
	require.True(t, ok)
	require.True(t, seen.After(restartedAt), "%s was complete on the target before the receiver was restarted", name)
	resumed := logLines(again.log, "resuming partial receive")
	require.NotEmpty(t, resumed, "the restarted %s did not resume the spool", target)
	require.Equal(t, float64(durable), resumed[0]["offset"], "resumed from another offset than the spool's checkpoint")
	rcv := e.activities(st, starter.ReceiveActivity)
	var rr activities.ReceiveResult
	require.NoError(t, rcv[len(rcv)-1].decode(&rr))
	require.True(t, rr.Resumed, "the Receive that completed did not resume")
	require.Less(t, rr.Bytes, stream-durable/2, "the completing Receive moved more than the rest of the stream")
	e.requireSameContent(res.Snapshot)
	e.requireReceivedSubvolume(res.Snapshot)
	e.requireNoPartials()
}

// TestBtrfsHandMadeSubvolumesAreForeign: subvolumes made by hand in the
// target's staging area (one in the layout an interrupted btrfs receive
// leaves, one bare, each with a file in it) carry no record of a receive
// ferry started: greet reports them as foreign, not as partial receives;
// the run succeeds without discarding anything, its result names both, and
// they are still there afterwards with their files.
func TestBtrfsHandMadeSubvolumesAreForeign(t *testing.T) {
	e := newBtrfsEnv(t, envOptions{ShareSize: 16 << 20, Images: map[string]int64{source: 512 << 20, target: 512 << 20}})
	e.apply()
	first := e.mustSucceed(e.start())

	staging := filepath.Join(e.roots[target], ".ferry", "staging", strings.ReplaceAll(tgtDataset, "/", "%2F"))
	require.NoError(t, os.MkdirAll(staging, 0o700))
	older := workflows.SnapshotName(e.job, time.Now().Add(-24*time.Hour))
	halfReceived := filepath.Join(staging, older, older)
	require.NoError(t, os.Mkdir(filepath.Dir(halfReceived), 0o700))
	btrfs(t, "subvolume", "create", halfReceived)
	require.NoError(t, os.MkdirAll(filepath.Join(halfReceived, "photos"), 0o755))
	writeRandomFile(t, filepath.Join(halfReceived, "photos", "IMG_0000.jpg"), 3<<20)
	bare := filepath.Join(staging, "older-run")
	btrfs(t, "subvolume", "create", bare)
	writeRandomFile(t, filepath.Join(bare, "half-a-file"), 1<<20)

	left, err := e.backend(target).Partials(e.ctx, tgtDataset)
	require.NoError(t, err)
	require.Empty(t, left, "hand-made subvolumes are reported as partial receives")
	as, err := e.backend(target).Anomalies(e.ctx, tgtDataset)
	require.NoError(t, err)
	require.Len(t, as, 2, "the backend does not report both as foreign: %+v", as)
	for _, a := range as {
		t.Logf("%s %s: %s", a.Kind, a.ID, a.What)
		require.Equal(t, storage.Foreign, a.Kind)
	}

	changeShare(t, e.share, "after-handmade")
	out, st := e.runCLI()
	require.Equal(t, 0, out.Code, "ferry run --wait failed")
	res := e.mustSucceed(st)
	require.Zero(t, res.Discarded)
	require.Empty(t, res.Plan.Discard)
	require.Len(t, res.Foreign, 2, "the result does not name both foreign items: %q", res.Foreign)
	e.recordHistory(st, "foreign-left-alone-v4.json")
	require.NotContains(t, out.Out, "leftover partial receive(s) discarded")
	require.Contains(t, out.Out, "left alone, not made by ferry: "+target+": .ferry/staging/")
	require.Len(t, res.Plan.Steps, 1)
	require.Equal(t, first.Snapshot, res.Plan.Steps[0].From)
	for _, p := range []string{filepath.Join(halfReceived, "photos", "IMG_0000.jpg"), filepath.Join(bare, "half-a-file")} {
		_, err := os.Lstat(p)
		require.NoError(t, err, "%s was removed", p)
	}
	require.Empty(t, e.workerLogs(target, "discarded partial receive"))
	require.Len(t, e.workerLogs(target, "found a foreign item"), 2)
	e.requireSameContent(res.Snapshot)
}

// TestBtrfsTargetFull: the target's filesystem (a 128 MiB image) is too
// small for the 256 MiB share, with the default resume mode (auto, which
// pipes a stream this size straight into btrfs receive) and with a staged
// receive (the spool fills the filesystem): the run fails with NoSpace,
// `ferry run --wait` exits non-zero naming it (host, dataset, the file being
// written, needed and free bytes), and the target is left with no partial,
// an empty staging area and no subvolume at all.
func TestBtrfsTargetFull(t *testing.T) {
	for _, mode := range []string{string(storage.ResumeAuto), string(storage.ResumeStaged)} {
		t.Run(mode, func(t *testing.T) {
			e := newBtrfsEnv(t, envOptions{ShareSize: 256 << 20, Resume: mode, Images: map[string]int64{source: 768 << 20, target: 128 << 20}})
			e.apply()
			out, st := e.runCLI()
			require.NotEqual(t, 0, out.Code, "ferry run --wait succeeded with a full target")
			require.Contains(t, out.Out, activities.ErrNoSpace)

			_, err := e.result(st)
			var ae *temporal.ApplicationError
			require.ErrorAs(t, err, &ae)
			require.Equal(t, activities.ErrNoSpace, ae.Type(), "run failed with %v", err)
			// The message names host, dataset and what was being written
			// (a file of the share, or the spool), needed against free bytes.
			require.Contains(t, ae.Error(), tgtDataset+"@")
			require.Contains(t, ae.Error(), " on "+target+": ")
			require.Regexp(t, `no space left writing ("[^"]+"|the stream's spool \S+\.spool): the snapshot needs [0-9.]+ MiB \(\d+ bytes\), [^,]+ free on `+regexp.QuoteMeta(e.roots[target])+` \(`+target+`\) after discarding the partial receive`, ae.Error())
			require.Contains(t, ae.Error(), " there or raise its quota, then run the job again; nothing of this receive was kept")
			require.True(t, strings.HasPrefix(ae.Message(), "job "+e.job+": "+source+":"), "the error does not start with the job and its endpoints: %s", ae.Message())
			require.NotContains(t, ae.Error(), "receive: receive")
			d, err := tc.DescribeWorkflowExecution(e.ctx, st.WorkflowID, st.RunID)
			require.NoError(t, err)
			require.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_FAILED, d.GetWorkflowExecutionInfo().GetStatus())
			// NoSpace is not retried: one Receive, failed.
			rcv := e.activities(st, starter.ReceiveActivity)
			require.Len(t, rcv, 1)
			require.NotNil(t, rcv[0].Failed)
			want := "off"
			if mode == string(storage.ResumeStaged) {
				want = "staged"
			}
			// The backend's line carries the activity's job, step and workflow.
			require.True(t, hasEntry(e.workerLogs(target, "receive"), map[string]any{"mode": want, "job": e.job, "step": "stream", "workflow_id": st.WorkflowID}),
				"the receive did not run in %s mode, or its log line lacks job, step or workflow_id", want)

			snaps, err := e.backend(target).ListSnapshots(e.ctx, tgtDataset)
			require.NoError(t, err)
			require.Empty(t, snaps)
			e.requireNoPartials()
			require.Empty(t, subvolumeUUIDs(t, e.roots[target]), "subvolumes left on the full target")
		})
	}
}

// ---- helpers ----

// requireRunning checks that the run is still in progress (not completed).
func (e *env) requireRunning(st starter.Started) {
	e.t.Helper()
	d, err := tc.DescribeWorkflowExecution(e.ctx, st.WorkflowID, st.RunID)
	require.NoError(e.t, err)
	require.Equal(e.t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, d.GetWorkflowExecutionInfo().GetStatus(), "the run is no longer running")
}

// partialsOf lists the target's partials of snapshot name.
func (e *env) partialsOf(name string) []storage.Partial {
	e.t.Helper()
	ps, err := e.backend(target).Partials(e.ctx, tgtDataset)
	require.NoError(e.t, err)
	var out []storage.Partial
	for _, p := range ps {
		if p.Name == name {
			out = append(out, p)
		}
	}
	return out
}

// streamSize is the size of the run's (single) stream, as the source
// estimated it when it opened the send.
func (e *env) streamSize(st starter.Started) int64 {
	e.t.Helper()
	opens := e.activities(st, "OpenSend")
	require.NotEmpty(e.t, opens)
	var o activities.OpenSendResult
	require.NoError(e.t, opens[len(opens)-1].decode(&o))
	require.Positive(e.t, o.Expected)
	return o.Expected
}

// requireReceivedSubvolume checks the target's copy of snapshot as btrfs
// sees it: a read-only subvolume whose received_uuid is the source
// snapshot's uuid.
func (e *env) requireReceivedSubvolume(snapshot string) {
	e.t.Helper()
	dir := func(host, ds string) string {
		return filepath.Join(e.roots[host], ".ferry", "snapshots", strings.ReplaceAll(ds, "/", "%2F"), snapshot, snapshot)
	}
	src, tgt := subvolume(e.t, dir(source, srcDataset)), subvolume(e.t, dir(target, tgtDataset))
	require.True(e.t, src.readOnly, "source snapshot %s is writable", snapshot)
	require.True(e.t, tgt.readOnly, "target snapshot %s is writable", snapshot)
	require.Equal(e.t, src.uuid, tgt.receivedUUID, "target snapshot %s: received_uuid is not the source's uuid", snapshot)
}

// snapshotWatch polls a host's complete snapshots from when it is made
// until stop, and records when each name was first listed.
type snapshotWatch struct {
	e       *env
	dataset string
	b       storage.Backend

	mu    sync.Mutex
	first map[string]time.Time
	polls int
	errs  []error
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

func (e *env) watchSnapshots(host, dataset string) *snapshotWatch {
	w := &snapshotWatch{e: e, dataset: dataset, b: e.backend(host), first: map[string]time.Time{}, done: make(chan struct{})}
	w.poll()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for {
			select {
			case <-w.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			w.poll()
		}
	}()
	return w
}

func (w *snapshotWatch) poll() {
	snaps, err := w.b.ListSnapshots(w.e.ctx, w.dataset)
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.polls++
	if err != nil {
		w.errs = append(w.errs, err)
	}
	for _, s := range snaps {
		if _, ok := w.first[s.Name]; !ok {
			w.first[s.Name] = now
		}
	}
}

// stop ends the polling with one last look (a snapshot committed just
// before the run ended may have fallen between two polls).
func (w *snapshotWatch) stop() {
	w.once.Do(func() {
		close(w.done)
		w.wg.Wait()
		w.poll()
		w.mu.Lock()
		defer w.mu.Unlock()
		w.e.t.Logf("watched the target's snapshots %d times; %d listing error(s) %v", w.polls, len(w.errs), w.errs)
	})
}

func (w *snapshotWatch) firstSeen(name string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.first[name]
	return t, ok
}

// subvol is what `btrfs subvolume show` says about a subvolume.
type subvol struct {
	uuid, receivedUUID string
	readOnly           bool
}

func (s subvol) String() string {
	ro := "writable"
	if s.readOnly {
		ro = "read-only"
	}
	rcv := s.receivedUUID
	if rcv == "" {
		rcv = "-"
	}
	return fmt.Sprintf("uuid %s, %s, received_uuid %s", s.uuid, ro, rcv)
}

var showLine = regexp.MustCompile(`(?m)^\s*(UUID|Received UUID|Flags):\s*(.*?)\s*$`)

func subvolume(t testing.TB, p string) subvol {
	t.Helper()
	out := btrfs(t, "subvolume", "show", p)
	var s subvol
	for _, m := range showLine.FindAllStringSubmatch(out, -1) {
		switch m[1] {
		case "UUID":
			s.uuid = m[2]
		case "Received UUID":
			if m[2] != "-" {
				s.receivedUUID = m[2]
			}
		case "Flags":
			s.readOnly = strings.Contains(m[2], "readonly")
		}
	}
	require.NotEmpty(t, s.uuid, "btrfs subvolume show %s:\n%s", p, out)
	return s
}

// subvolumeUUIDs lists the uuids of every subvolume of the filesystem at mnt.
func subvolumeUUIDs(t testing.TB, mnt string) []string {
	t.Helper()
	out := btrfs(t, "subvolume", "list", "-u", mnt)
	var uuids []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "uuid" {
				uuids = append(uuids, f[i+1])
			}
		}
	}
	return uuids
}

func btrfs(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("btrfs", args...).CombinedOutput()
	require.NoError(t, err, "btrfs %s: %s", strings.Join(args, " "), out)
	return string(out)
}

// changeShare makes one run's worth of changes (sampleshare.Change is for
// the first change of a share only): a new incompressible file, an appended
// document and a deleted one.
func changeShare(t testing.TB, share, tag string) {
	t.Helper()
	writeRandomFile(t, filepath.Join(share, "photos", tag, "IMG_"+tag+".jpg"), 3<<20)
	docs, err := filepath.Glob(filepath.Join(share, "documents", "report-*.txt"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(docs), 2)
	f, err := os.OpenFile(docs[len(docs)-1], os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = fmt.Fprintf(f, "\nappended by the e2e test (%s)\n", tag)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, os.Remove(docs[len(docs)-2]))
}

func writeRandomFile(t testing.TB, p string, n int64) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	require.NoError(t, os.WriteFile(p, buf, 0o644))
}

func snapshotNames(snaps []storage.Snapshot) []string {
	out := make([]string, len(snaps))
	for i, s := range snaps {
		out[i] = s.Name
	}
	return out
}

// hasEntry reports whether some log entry has every field of want.
func hasEntry(entries []logEntry, want map[string]any) bool {
	for _, l := range entries {
		ok := true
		for k, v := range want {
			if l[k] != v {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}
