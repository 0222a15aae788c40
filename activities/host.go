package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/logging"
	"github.com/ferry-nas/ferry/metrics"
	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/transfer"
)

// Sessions is the part of the data server the source-side activities use.
type Sessions interface {
	Register(spec transfer.SessionSpec) (token string, expires time.Time, err error)
	Revoke(token string) bool
	Session(token string) (transfer.SessionInfo, bool)
}

// Fetcher opens streams from other hosts' data servers.
type Fetcher interface {
	Open(ctx context.Context, req transfer.FetchRequest) (*transfer.Stream, error)
}

// Host holds one NAS host's dependencies; its methods are the activities the
// worker registers on the host's task queue.
type Host struct {
	// Name is the host's ferry name (also its certificate name).
	Name string
	// DataAddress is where other hosts reach this host's data server.
	DataAddress string
	Backend     storage.Backend
	Sessions    Sessions
	Fetcher     Fetcher
	Logger      *zap.Logger
	// HeartbeatEvery is how often Receive heartbeats; default 2 s.
	HeartbeatEvery time.Duration
	// Metrics gets receive rates, bytes remaining, resumes and each job's
	// last success; nil records nothing.
	Metrics *metrics.Metrics
	// Hooks are the commands RunHook may run, by name, from this host's
	// entry in the worker's own config (hosts.<h>.hooks); Root is the
	// host's root, given to hooks as FERRY_ROOT.
	Hooks map[string]HookCommand
	Root  string

	mu     sync.Mutex
	tokens map[string][]string // job -> tokens this host registered
	sends  map[string]sendRef  // token -> what the session reads (prune keeps it)
	// estimates are the send sizes estimateAhead started, by step.
	estimates map[estimateKey]*aheadEstimate
}

func (h *Host) log(ctx context.Context, job, step string) *zap.Logger {
	l := h.Logger
	if l == nil {
		l = zap.NewNop()
	}
	l = l.With(logging.Host(h.Name), logging.Job(job), logging.Step(step))
	if activity.IsActivity(ctx) {
		info := activity.GetInfo(ctx)
		l = l.With(zap.String("workflow_id", info.WorkflowExecution.ID), zap.Int32("attempt", info.Attempt))
	}
	return l
}

// CreateSnapshot makes the run's snapshot on the source; a retry finds it.
func (h *Host) CreateSnapshot(ctx context.Context, in CreateSnapshotInput) (CreateSnapshotResult, error) {
	log := h.log(ctx, in.Job, "snapshot").With(logging.Snapshot(in.Name))
	snap, err := h.Backend.CreateSnapshot(ctx, in.Dataset, in.Name)
	if err != nil {
		return CreateSnapshotResult{}, h.fail(log, "create snapshot", err)
	}
	log.Info("snapshot ready", zap.String("guid", snap.GUID))
	h.estimateAhead(in.Job, in.Dataset, in.Name, log)
	res := CreateSnapshotResult{Snapshot: snapshotOf(snap)}
	if in.Inventory {
		// A failure retries the activity, which finds the snapshot made.
		inv, err := h.Inventory(ctx, InventoryInput{Job: in.Job, Dataset: in.Dataset})
		if err != nil {
			return CreateSnapshotResult{}, err
		}
		res.Inventory = &inv
	}
	return res, nil
}

// Inventory is this host's side of the greet step.
func (h *Host) Inventory(ctx context.Context, in InventoryInput) (InventoryResult, error) {
	log := h.log(ctx, in.Job, "greet")
	var snaps []storage.Snapshot
	var anomalies []storage.Anomaly
	var err error
	inv, once := h.Backend.(storage.Inventorier)
	if once {
		snaps, anomalies, err = inv.SnapshotsAndAnomalies(ctx, in.Dataset)
	} else {
		snaps, err = h.Backend.ListSnapshots(ctx, in.Dataset)
	}
	if err != nil {
		return InventoryResult{}, h.fail(log, "list snapshots", err)
	}
	partials, err := h.Backend.Partials(ctx, in.Dataset)
	if err != nil {
		return InventoryResult{}, h.fail(log, "list partial receives", err)
	}
	for _, p := range partials {
		log.Info("found partial receive", zap.String("partial", p.ID), logging.Snapshot(p.Name), zap.String("reason", p.Reason))
	}
	if !once {
		if anomalies, err = h.Backend.Anomalies(ctx, in.Dataset); err != nil {
			return InventoryResult{}, h.fail(log, "look for modified and foreign snapshots", err)
		}
	}
	for _, a := range anomalies {
		log.Warn("found a "+string(a.Kind)+" item: ferry will not use or remove it", zap.String("path", a.ID), logging.Snapshot(a.Name),
			zap.String("what", a.What), zap.String("fix", a.Fix()))
	}
	res := InventoryResult{Host: h.Name, Backend: h.Backend.Kind(), Snapshots: snapshotsOf(snaps), Partials: partialsOf(partials),
		Anomalies: anomaliesOf(anomalies)}
	if fr, ok := h.Backend.(storage.FeatureReporter); ok {
		res.Features = fr.BackendFeatures()
		log.Info("backend features", zap.Any("features", res.Features))
	}
	return res, nil
}

// DiscardPartials removes partial receives from the target.
func (h *Host) DiscardPartials(ctx context.Context, in DiscardPartialsInput) (DiscardPartialsResult, error) {
	log := h.log(ctx, in.Job, "discard")
	todo := make([]storage.Partial, len(in.Partials))
	for i, p := range in.Partials {
		todo[i] = storagePartial(p)
	}
	if in.All {
		var err error
		if todo, err = h.Backend.Partials(ctx, in.Dataset); err != nil {
			return DiscardPartialsResult{}, h.fail(log, "list partial receives", err)
		}
	}
	var res DiscardPartialsResult
	for _, p := range todo {
		if in.All && in.KeepResumable && partialOf(p).Resumable() {
			log.Info("kept resumable partial receive for the next run", zap.String("partial", p.ID), logging.Snapshot(p.Name), zap.String("reason", p.Reason))
			res.Kept = append(res.Kept, partialOf(p))
			continue
		}
		if err := h.Backend.DiscardPartial(ctx, p); err != nil {
			return res, h.fail(log, "discard partial receive "+p.ID, err)
		}
		log.Info("discarded partial receive", zap.String("partial", p.ID), logging.Snapshot(p.Name), zap.String("reason", p.Reason))
		res.Discarded = append(res.Discarded, partialOf(p))
	}
	return res, nil
}

// OpenSend authorises one stream of a snapshot for the target host.
func (h *Host) OpenSend(ctx context.Context, in OpenSendInput) (OpenSendResult, error) {
	log := h.log(ctx, in.Job, "stream").With(logging.Snapshot(in.To))
	snaps, err := h.Backend.ListSnapshots(ctx, in.Dataset)
	if err != nil {
		return OpenSendResult{}, h.fail(log, "list snapshots", err)
	}
	to, ok := findSnapshot(snaps, in.To)
	if !ok {
		return OpenSendResult{}, h.fail(log, "open send", storage.Errorf(storage.KindNotFound, "send", in.Dataset, in.To,
			"the snapshot was removed on the source; run the job again to make a new one", "no such snapshot"))
	}
	if in.From != "" {
		if _, ok := findSnapshot(snaps, in.From); !ok {
			return OpenSendResult{}, h.fail(log, "open send", storage.Errorf(storage.KindNotFound, "send", in.Dataset, in.From,
				"the incremental base was removed on the source; the next run plans from what is left", "no such snapshot"))
		}
	}
	req := storage.SendRequest{Dataset: in.Dataset, From: in.From, To: in.To, Restore: in.Restore, Job: in.Job}
	req.ResumeToken, req.Decrypted = in.ResumeToken, in.SendDecrypted
	expected, refused, err := h.estimateSend(ctx, &req, log)
	if err != nil {
		return OpenSendResult{}, h.fail(log, "estimate send size", err)
	}
	backend := h.Backend
	token, expires, err := h.Sessions.Register(transfer.SessionSpec{
		Job:  in.Job,
		Peer: in.TargetHost,
		Open: func(ctx context.Context) (io.ReadCloser, error) {
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(sourceFailure(backend.Send(ctx, req, pw))) }()
			return pr, nil
		},
		Compress:  in.Compress,
		RateLimit: in.BWLimit,
		TTL:       in.TTL,
	})
	if err != nil {
		return OpenSendResult{}, h.fail(log, "register send session", err)
	}
	h.rememberToken(in.Job, token)
	h.recordSend(token, sendRef{Dataset: in.Dataset, From: in.From, To: in.To})
	log.Info("send session open", zap.String("peer", in.TargetHost), zap.Int64("expected_bytes", expected), zap.Time("expires", expires))
	sourceGUID := to.GUID
	if in.Restore {
		sourceGUID = storage.SentGUID(h.Backend.Kind(), to)
	}
	return OpenSendResult{
		Token: token, Address: h.DataAddress, ServerName: h.Name, Expected: expected,
		SourceGUID: sourceGUID, SourceDatasetGUID: to.DatasetGUID, SourceDigest: to.Digest, Compress: in.Compress,
		ResumeToken: req.ResumeToken, ResumeRefused: refused, RefusedToken: refusedToken(in.ResumeToken, refused),
	}, nil
}

// rememberToken keeps the job's tokens for CloseSend, forgetting those the
// data server no longer holds open (completed, revoked, expired, forgotten)
// so that a long-running worker does not accumulate them.
func (h *Host) rememberToken(job, token string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tokens == nil {
		h.tokens = map[string][]string{}
	}
	open := h.tokens[job][:0]
	for _, t := range h.tokens[job] {
		if info, ok := h.Sessions.Session(t); ok && info.State != transfer.SessionComplete && info.State != transfer.SessionRevoked && time.Now().Before(info.Expires) {
			open = append(open, t)
		}
	}
	h.tokens[job] = append(open, token)
}

// CloseSend revokes the job's send sessions on this host.
func (h *Host) CloseSend(ctx context.Context, in CloseSendInput) (CloseSendResult, error) {
	h.mu.Lock()
	tokens := h.tokens[in.Job]
	delete(h.tokens, in.Job)
	h.mu.Unlock()
	var res CloseSendResult
	for _, t := range tokens {
		if h.Sessions.Revoke(t) {
			res.Revoked++
		}
	}
	h.log(ctx, in.Job, "compensate").Info("revoked send sessions", zap.Int("revoked", res.Revoked))
	return res, nil
}

// Receive pulls one step's stream from the source into the target's backend,
// heartbeating progress; it resumes a partial receive when the target's own
// state allows it, and starts over when the source refuses the resume.
func (h *Host) Receive(ctx context.Context, in ReceiveInput) (ReceiveResult, error) {
	log := h.log(ctx, in.Job, "stream").With(logging.Snapshot(in.Name))
	ctx = storage.WithLogger(ctx, log) // the backend's lines about this receive carry its job and step
	var res ReceiveResult
	token, err := h.nativeResume(ctx, in, log)
	if err != nil {
		return res, err
	}
	from, resumeOK, err := h.resumePoint(ctx, in, log)
	if err != nil {
		return res, err
	}
	tally := newReceiveTally(ctx, h.heartbeatEvery().Seconds())
	tally.begin(from, resumeOK, in.Mode, in.Session.Compress)
	h.Metrics.ReceiveStarted(in.Job, in.Session.ServerName)
	for restart := 0; ; restart++ {
		if resumeOK && from.Offset > 0 || token != "" {
			h.Metrics.Resumed(in.Job, in.Session.ServerName)
		}
		snap, moved, reconnects, err := h.receiveOnce(ctx, in, from, resumeOK, token, tally)
		h.Metrics.ReceiveEnded(in.Job, in.Session.ServerName, err == nil)
		res.Bytes += moved
		res.Reconnects += reconnects
		res.Resumed = res.Resumed || (resumeOK && from.Offset > 0) || token != ""
		if err == nil {
			res.Snapshot = snapshotOf(snap)
			tally.fill(&res)
			log.Info("received", zap.String("guid", snap.GUID), zap.Int64("bytes", res.Bytes), zap.Bool("resumed", res.Resumed),
				zap.Int64("stream_bytes_all_attempts", res.StreamSent), zap.Int64("wire_bytes_all_attempts", res.WireSent))
			return res, nil
		}
		if errors.Is(err, transfer.ErrResumeMismatch) && resumeOK && restart == 0 {
			// The source's stream no longer matches what we hold: start over.
			log.Warn("source refused the resume (its stream differs from the partial's prefix); discarding the partial and starting from byte 0", zap.Int64("offset", from.Offset))
			from, resumeOK = resume.Position{}, false
			h.Metrics.Restarted(in.Job, in.Session.ServerName)
			tally.restartAfterMismatch()
			continue
		}
		if errors.Is(err, transfer.ErrSourceNotFound) {
			err = fmt.Errorf("the source %s no longer has snapshot %s or its base (removed while it was being sent); run the job again to send a new snapshot: %w",
				in.Session.ServerName, in.Name, err)
		}
		return res, h.fail(log, "receive", err)
	}
}

// resumePoint decides where to start: the partial the target really holds
// for this stream (its durable checkpoint) wins over heartbeat details,
// which may be lost or older; anything else starts at byte 0.
func (h *Host) resumePoint(ctx context.Context, in ReceiveInput, log *zap.Logger) (resume.Position, bool, error) {
	partials, err := h.Backend.Partials(ctx, in.Dataset)
	if err != nil {
		return resume.Position{}, false, h.fail(log, "list partial receives", err)
	}
	for _, p := range partials {
		if p.Name == in.Name && p.SourceGUID == in.SourceGUID && p.Resume != nil {
			var hb ReceiveProgress
			if activity.HasHeartbeatDetails(ctx) && activity.GetHeartbeatDetails(ctx, &hb) == nil && hb.DurableOffset != p.Resume.Offset {
				log.Info("heartbeat and target disagree on the durable offset; trusting the target", zap.Int64("heartbeat", hb.DurableOffset), zap.Int64("target", p.Resume.Offset))
			}
			log.Info("resuming partial receive", zap.Int64("offset", p.Resume.Offset))
			return *p.Resume, true, nil
		}
	}
	return resume.Position{}, false, nil
}

func (h *Host) receiveOnce(ctx context.Context, in ReceiveInput, from resume.Position, resumeOK bool, token string, tally *receiveTally) (storage.Snapshot, int64, int, error) {
	log := storage.Logger(ctx, h.Logger)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if activity.IsActivity(ctx) {
		// On worker shutdown stop at once: the partial is resumable and the
		// retried activity continues it on the restarted worker.
		stopping := activity.GetWorkerStopChannel(ctx)
		go func() {
			select {
			case <-stopping:
				log.Info("worker stopping: interrupting the receive; it resumes on restart")
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	stream, err := h.Fetcher.Open(ctx, transfer.FetchRequest{
		Address: in.Session.Address, ServerName: in.Session.ServerName, Token: in.Session.Token,
		From: from, Compress: in.Session.Compress, Job: in.Job,
	})
	if err != nil {
		return storage.Snapshot{}, 0, 0, err
	}
	defer stream.Close()

	var durable atomic.Int64
	durable.Store(from.Offset)
	stop := h.heartbeat(ctx, in.Job, stream, in.Session.Expected, &durable, tally)
	snap, err := h.Backend.Receive(ctx, storage.ReceiveRequest{
		Dataset: in.Dataset, Name: in.Name, SourceGUID: in.SourceGUID, SourceDatasetGUID: in.Session.SourceDatasetGUID,
		Parent: in.Parent, Resume: resumeOK,
		Durable: func(p resume.Position) { durable.Store(p.Offset) },
		Mode:    storage.ResumeMode(in.Mode), ExpectedSize: in.Session.Expected,
		ResumeToken: token,
	}, stream)
	stop()
	st := stream.Stats()
	tally.passDone(st.PayloadBytes, st.WireBytes, st.Reconnects)
	return snap, st.WireBytes, st.Reconnects, err
}

// heartbeatEvery is how often Receive heartbeats.
func (h *Host) heartbeatEvery() time.Duration {
	if h.HeartbeatEvery > 0 {
		return h.HeartbeatEvery
	}
	return 2 * time.Second
}

// heartbeat reports progress, to Temporal and to the metrics, until stop is
// called. The first heartbeat goes out at once, so a retried attempt shows
// that it resumed (or restarted) without waiting for the next tick.
func (h *Host) heartbeat(ctx context.Context, job string, s *transfer.Stream, expected int64, durable *atomic.Int64, tally *receiveTally) (stop func()) {
	every := h.heartbeatEvery()
	record := func(pos int64, rate, wireRate float64) {
		if activity.IsActivity(ctx) {
			st := s.Stats()
			activity.RecordHeartbeat(ctx, tally.progress(pos, expected, durable.Load(), rate, wireRate, st.WireBytes, st.Reconnects))
		}
	}
	record(s.Position().Offset, 0, 0)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		lastAt, lastBytes, lastWire := time.Now(), s.Position().Offset, s.Stats().WireBytes
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case now := <-t.C:
				pos, wire := s.Position().Offset, s.Stats().WireBytes
				secs := now.Sub(lastAt).Seconds()
				rate, wireRate := float64(pos-lastBytes)/secs, float64(wire-lastWire)/secs
				h.Metrics.ReceiveProgress(job, s.Source(), rate, wireRate, expected-pos)
				record(pos, rate, wireRate)
				lastAt, lastBytes, lastWire = now, pos, wire
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// Verify checks the received snapshot against the source's identity.
func (h *Host) Verify(ctx context.Context, in VerifyInput) (VerifyResult, error) {
	log := h.log(ctx, in.Job, "verify").With(logging.Snapshot(in.Name))
	snap, err := h.Backend.Verify(ctx, in.storageRequest())
	if err != nil {
		if storage.KindOf(err) == storage.KindConflict {
			return VerifyResult{}, h.failAs(log, ErrVerifyFailed, "verify", err)
		}
		return VerifyResult{}, h.fail(log, "verify", err)
	}
	if in.Deep {
		got, err := h.Backend.ContentDigest(ctx, in.Dataset, in.Name)
		if err != nil {
			return VerifyResult{}, h.fail(log, "content digest", err)
		}
		if got != in.SourceContentDigest {
			return VerifyResult{}, h.failAs(log, ErrVerifyFailed, "deep verify", deepVerifyError(h.Name, in, got))
		}
	}
	log.Info("verified", zap.Bool("deep", in.Deep))
	return VerifyResult{Snapshot: snapshotOf(snap)}, nil
}

// ContentDigest computes a snapshot's content digest (deep verify, source side).
func (h *Host) ContentDigest(ctx context.Context, in ContentDigestInput) (ContentDigestResult, error) {
	d, err := h.Backend.ContentDigest(ctx, in.Dataset, in.Name)
	if err != nil {
		return ContentDigestResult{}, h.fail(h.log(ctx, "", "verify"), "content digest", err)
	}
	return ContentDigestResult{Digest: d}, nil
}

// DestroySnapshot removes a received snapshot that failed verification.
func (h *Host) DestroySnapshot(ctx context.Context, in DestroySnapshotInput) (DestroySnapshotResult, error) {
	log := h.log(ctx, in.Job, "verify").With(logging.Snapshot(in.Name))
	if err := h.Backend.DestroySnapshot(ctx, in.Dataset, in.Name); err != nil {
		return DestroySnapshotResult{}, h.fail(log, "destroy snapshot", err)
	}
	log.Warn("destroyed unverified snapshot")
	return DestroySnapshotResult{}, nil
}

// Mark records which snapshot the job has reached on this side.
func (h *Host) Mark(ctx context.Context, in MarkInput) (MarkResult, error) {
	log := h.log(ctx, in.Job, "mark").With(logging.Snapshot(in.Snapshot))
	if err := h.Backend.SetMark(ctx, in.Dataset, MarkName(in.Mark, in.Job), in.Snapshot); err != nil {
		return MarkResult{}, h.fail(log, "mark "+in.Mark, err)
	}
	log.Info("marked", zap.String("mark", in.Mark))
	if in.Mark == MarkReceived {
		// The target marks what it received as the run's last step that
		// can fail it (pruning after it only adds a note): the run succeeded.
		h.Metrics.Succeeded(in.Job, time.Now())
	}
	return MarkResult{}, nil
}

// MarkName is the storage mark a job's cursor or received marker is kept under.
func MarkName(mark, job string) string { return mark + "." + job }

// fail logs err and converts it into a Temporal application error whose
// type is the storage kind (non-retryable unless temporary) or a data-plane
// refusal mapped to what the workflow must do about it.
func (h *Host) fail(log *zap.Logger, op string, err error) error {
	// A storage error names dataset and snapshot; which host is known here.
	var se *storage.Error
	if errors.As(err, &se) && se.Host == "" {
		se.Host = h.Name
	}
	var nse *storage.NoSpaceError
	if errors.As(err, &nse) && nse.Host == "" {
		nse.Host = h.Name
	}
	if errors.Is(err, transfer.ErrSourceNotFound) {
		// The source lost what the session streams: every attempt of this
		// session would get the same answer, so the run ends now.
		return h.failAs(log, ErrNotFound, op, err)
	}
	var refused *transfer.RefusedError
	if errors.As(err, &refused) {
		switch refused.Code {
		case transfer.CodeUnknownToken, transfer.CodeExpired, transfer.CodeReplayed:
			return h.failAs(log, ErrSessionLost, op, err)
		case transfer.CodeWrongPeer, transfer.CodeNoCertificate, transfer.CodeUntrustedCertificate, transfer.CodeBadVersion:
			return h.failAs(log, ErrInvalid, op, err)
		}
	}
	kind := storage.KindOf(err)
	if kind == storage.KindTemporary {
		log.Warn(op+" failed; will retry", zap.Error(err))
		return temporal.NewApplicationErrorWithOptions(opMessage(op, err), kind.String(), temporal.ApplicationErrorOptions{Cause: err})
	}
	return h.failAs(log, kind.String(), op, err)
}

func (h *Host) failAs(log *zap.Logger, errType, op string, err error) error {
	log.Error(op+" failed", zap.String("error_type", errType), zap.Error(err))
	return temporal.NewApplicationErrorWithOptions(opMessage(op, err), errType, temporal.ApplicationErrorOptions{NonRetryable: true, Cause: err})
}

// opMessage is "op: err", without saying op twice when err is a storage
// error that already starts with it ("receive replicas/s@x on nas-b: ...").
func opMessage(op string, err error) string {
	var se *storage.Error
	if errors.As(err, &se) && se.Op == op && strings.HasPrefix(err.Error(), op+" ") {
		return err.Error()
	}
	return op + ": " + err.Error()
}

// sourceFailure marks a send that failed because its snapshot (or its
// incremental base) is gone, so that the data server tells the receiver it
// is NotFound rather than a failure worth retrying.
func sourceFailure(err error) error {
	if err != nil && storage.KindOf(err) == storage.KindNotFound {
		return transfer.WithCode(transfer.CodeNotFound, err)
	}
	return err
}

func findSnapshot(snaps []storage.Snapshot, name string) (storage.Snapshot, bool) {
	for _, s := range snaps {
		if s.Name == name {
			return s, true
		}
	}
	return storage.Snapshot{}, false
}

// deepVerifyError names the received snapshot whose content differs from
// its source's, both digests, and what to do.
func deepVerifyError(host string, in VerifyInput, got string) error {
	return storage.Errorf(storage.KindConflict, "deep verify", in.Dataset, in.Name,
		"ferry destroys this copy and sends the step again, a bounded number of times per run; if the content keeps differing, "+
			"the target does not store what it is sent or the source's snapshot reads differently each time: check both hosts' "+
			"disks and memory (btrfs scrub, fsck, memtest), then run the job again",
		"the copy on %s does not have the content of the snapshot it was received from: content digest %s, the source's %s",
		host, got, in.SourceContentDigest)
}
