package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/internal/units"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/visibility"
)

// Task queues and query names shared by workers, starters and the CLI.
const (
	// WorkflowTaskQueue is polled by every worker for workflow tasks.
	WorkflowTaskQueue = "ferry-workflows"
	// QueryStatus answers with a Status.
	QueryStatus = "status"
	// ReplicateWorkflowName is the registered workflow type.
	ReplicateWorkflowName = "ReplicateWorkflow"
)

// HostTaskQueue is the queue of the activities that touch host's storage.
func HostTaskQueue(host string) string { return "ferry-host-" + host }

// Phases a run goes through, as shown by the status query, the FerryPhase
// search attribute and `ferry status`.
const (
	PhaseSnapshot     = "snapshot"
	PhaseGreet        = "greet"
	PhaseDiscard      = "discard"
	PhaseStream       = "stream"
	PhaseVerify       = "verify"
	PhaseMark         = "mark"
	PhaseDone         = "done"
	PhaseFailed       = "failed"
	PhaseCompensating = "compensating"
)

// Endpoint is one side of a job.
type Endpoint struct {
	Host    string `json:"host"`
	Dataset string `json:"dataset"`
}

func (e Endpoint) String() string { return e.Host + ":" + e.Dataset }

// ReplicateInput is one job's replication, as the schedule starts it.
type ReplicateInput struct {
	Job    string   `json:"job"`
	Source Endpoint `json:"source"`
	Target Endpoint `json:"target"`
	// Compress asks for zstd frames on the wire.
	Compress bool `json:"compress"`
	// BWLimit caps the send rate in bytes per second (0: unlimited).
	BWLimit int64 `json:"bwlimit,omitempty"`
	// Resume is the stream's resume mode (auto, staged, off).
	Resume string `json:"resume,omitempty"`
	// DeepVerify also compares content digests of both trees.
	DeepVerify bool `json:"deep_verify,omitempty"`
	// SendDecrypted allows sending an encrypted source dataset decrypted
	// (stream.zfs_send_decrypted); otherwise it is sent raw or refused.
	SendDecrypted bool `json:"send_decrypted,omitempty"`
	// Timeouts; zero values take the defaults below.
	HostTimeout      time.Duration `json:"host_timeout,omitempty"`
	StreamTimeout    time.Duration `json:"stream_timeout,omitempty"`
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
	// RetentionSource and RetentionTarget are each side's retention grid
	// ("24x1h | 7x1d"); empty keeps every snapshot on that side.
	RetentionSource string `json:"retention_source,omitempty"`
	RetentionTarget string `json:"retention_target,omitempty"`
	// PreSnapshotHook and PostSnapshotHook name hooks of the source host
	// (hooks.go): names only, the source worker's own config holds the
	// commands, so editing a schedule's input cannot run a command.
	PreSnapshotHook  string `json:"pre_snapshot_hook,omitempty"`
	PostSnapshotHook string `json:"post_snapshot_hook,omitempty"`
	// Notify, when set, receives the run's failure or recovery (notify.go).
	Notify *NotifyTarget `json:"notify,omitempty"`
}

// Defaults for ReplicateInput's timeouts.
const (
	// DefaultHostTimeout bounds a short activity, retries included, so a
	// host that is down fails the run clearly instead of hanging it.
	DefaultHostTimeout = 10 * time.Minute
	// DefaultStreamTimeout bounds one step's receive, retries included.
	DefaultStreamTimeout = 72 * time.Hour
	// DefaultHeartbeatTimeout detects a dead worker mid-stream.
	DefaultHeartbeatTimeout = 30 * time.Second
	// MaxVerifyAttempts bounds how often a step is redone after verify fails.
	MaxVerifyAttempts = 3
	// MaxSessionReopens bounds how often a lost send session is reopened per step.
	MaxSessionReopens = 20
	// sessionTTL is how long a send session waits to be completed.
	sessionTTL = 6 * time.Hour
)

// ReplicateResult says what a run did.
type ReplicateResult struct {
	Snapshot string `json:"snapshot"`
	Plan     Plan   `json:"plan"`
	// Bytes moved over the wire (frames, compressed when the job
	// compresses), all steps and every receive attempt together: an attempt
	// cut short (receiver killed) counts up to its last heartbeat, so bytes
	// re-sent after an interruption are in it. Runs recorded before the
	// attempts were counted have only the completing attempts here.
	Bytes int64 `json:"bytes"`
	// Received is what the receives counted besides: stream bytes (the
	// backend's send stream, before compression), resumes, restarts from
	// byte 0 and reconnects.
	Received Received `json:"received,omitzero"`
	// Discarded counts partial receives removed before streaming.
	Discarded int `json:"discarded"`
	// Note says what the run did that an administrator should know, such
	// as replicas kept on the target after the source deleted them.
	Note string `json:"note,omitempty"`
	// Foreign lists what greet found in ferry's area that ferry did not
	// make ("host: path (what it is)"); it is left alone.
	Foreign []string `json:"foreign,omitempty"`
	// Features is what each host's backend detected, by host (greet's
	// InventoryResult.Features; zfs only, changeNativeResume).
	Features map[string]map[string]string `json:"features,omitempty"`
	// Prune is what retention did on each side (absent without a grid).
	Prune *PruneReport `json:"prune,omitempty"`
	// Notify is the recovery notification this run sent (absent when it
	// sent none).
	Notify *NotifyReport `json:"notify,omitempty"`
}

// Received sums what the receive activities of a run reported over all
// their attempts (activities.ReceiveResult).
type Received struct {
	// StreamSize is the length of the steps' streams; StreamBytes what of
	// them was moved, every attempt together (more than StreamSize when an
	// attempt was cut short and its bytes were sent again).
	StreamSize  int64 `json:"stream_size,omitempty"`
	StreamBytes int64 `json:"stream_bytes,omitempty"`
	// Resumes: attempts that continued the partial an attempt before them
	// left. Restarts: attempts that started over from byte 0 after one
	// before them had moved bytes, the last one for Restart's reason.
	Resumes    int    `json:"resumes,omitempty"`
	Restarts   int    `json:"restarts,omitempty"`
	Restart    string `json:"restart,omitempty"`
	Reconnects int    `json:"reconnects,omitempty"`
}

func (r *Received) add(rcv activities.ReceiveResult) {
	r.StreamSize += rcv.StreamSize
	r.StreamBytes += rcv.StreamSent
	r.Resumes += rcv.Resumes
	r.Restarts += rcv.Restarts
	if rcv.Restart != "" {
		r.Restart = rcv.Restart
	}
	r.Reconnects += max(rcv.TotalReconnects, rcv.Reconnects)
}

// since is what r counted after before (r's counts only grow).
func (r Received) since(before Received) Received {
	d := Received{StreamSize: r.StreamSize - before.StreamSize, StreamBytes: r.StreamBytes - before.StreamBytes,
		Resumes: r.Resumes - before.Resumes, Restarts: r.Restarts - before.Restarts, Reconnects: r.Reconnects - before.Reconnects}
	if d.Restarts > 0 {
		d.Restart = r.Restart
	}
	return d
}

// text is r in words for the web UI's current details ("" when the
// receives counted nothing, as results recorded before they did): "; 300.1
// MiB stream, 1 resume after an interruption".
func (r Received) text() string {
	if r.StreamSize <= 0 {
		return ""
	}
	s := "; " + units.Bytes(r.StreamSize) + " stream"
	if r.StreamBytes > r.StreamSize {
		s += " (" + units.Bytes(r.StreamBytes) + " sent over all attempts)"
	}
	if r.Resumes > 0 {
		s += fmt.Sprintf(", %d resume(s) after an interruption", r.Resumes)
	}
	if r.Restarts > 0 {
		s += fmt.Sprintf(", %d restart(s) from 0 (%s)", r.Restarts, r.Restart)
	}
	if r.Reconnects > 0 {
		s += fmt.Sprintf(", %d reconnect(s)", r.Reconnects)
	}
	return s
}

// Status is the answer to QueryStatus. Bytes (wire) and Received count
// the receives finished so far.
type Status struct {
	Job       string    `json:"job"`
	Phase     string    `json:"phase"`
	Snapshot  string    `json:"snapshot,omitempty"`
	Step      int       `json:"step"`
	Steps     int       `json:"steps"`
	Plan      *Plan     `json:"plan,omitempty"`
	Bytes     int64     `json:"bytes"`
	Received  Received  `json:"received,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	Note      string    `json:"note,omitempty"`
	StartedAt time.Time `json:"started_at"`
}

// ReplicateWorkflow replicates one job: snapshot, greet, stream each planned
// step, verify, mark cursor. It is the single durable record of where the
// replication is; see DESIGN.md for the failure semantics.
func ReplicateWorkflow(ctx workflow.Context, in ReplicateInput) (result ReplicateResult, err error) {
	r := &replication{in: in.withDefaults(), status: Status{Job: in.Job, StartedAt: workflow.Now(ctx)}}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (Status, error) { return r.status, nil }); err != nil {
		return result, err
	}
	// Started by hand (not by the schedule) the run still carries its attributes.
	if err := workflow.UpsertTypedSearchAttributes(ctx,
		visibility.FerryJob.ValueSet(in.Job),
		visibility.FerrySource.ValueSet(in.Source.String()),
		visibility.FerryTarget.ValueSet(in.Target.String()),
	); err != nil {
		return result, err
	}

	defer func() {
		defer func() { recordOutcome(ctx, r.in.Job, err) }()
		if err == nil {
			r.setPhase(ctx, PhaseDone, "replicated "+r.status.Snapshot+result.Received.text())
			r.notifyRecovered(ctx, &result)
			r.memo(ctx, result, nil)
			return
		}
		defer func() { r.memo(ctx, result, err) }()
		err = jobError(r.in, err)
		r.status.LastError = err.Error()
		if r.compensate(ctx, err) && r.receiveDown != nil && isType(err, activities.ErrHostUnavailable) {
			err = r.receiveDown.error(r.in, true)
			r.status.LastError = err.Error()
		}
		r.setPhase(ctx, PhaseFailed, "failed: "+err.Error())
		r.notifyFailed(ctx, err)
	}()
	result, err = r.run(ctx)
	return result, err
}

func (in ReplicateInput) withDefaults() ReplicateInput {
	if in.HostTimeout <= 0 {
		in.HostTimeout = DefaultHostTimeout
	}
	if in.StreamTimeout <= 0 {
		in.StreamTimeout = DefaultStreamTimeout
	}
	if in.HeartbeatTimeout <= 0 {
		in.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	return in
}

// SnapshotName is the name of the snapshot a run started at t makes. The
// milliseconds keep two runs of a job apart even when one starts in the
// second the previous one started (a manual trigger right after a scheduled
// run): with the same name the second would find the first's snapshot and
// send nothing.
func SnapshotName(job string, t time.Time) string {
	return SnapshotPrefix(job) + t.UTC().Format("20060102T150405.000Z")
}

// secondSnapshotName is how runs started before changeSnapshotMillis named
// their snapshot; their histories replay with it.
func secondSnapshotName(job string, t time.Time) string {
	return SnapshotPrefix(job) + t.UTC().Format("20060102T150405Z")
}

// Workflow changes guarded by workflow.GetVersion (see design.md).
const (
	// changeSnapshotMillis: snapshot names carry milliseconds.
	changeSnapshotMillis = "snapshot-name-millis"
	// changeSkipDownHosts: compensation skips hosts that did not finish a
	// step in time instead of waiting out their timeout again.
	changeSkipDownHosts = "compensation-skips-down-hosts"
	// changeKeepResumable: compensation after a transient failure keeps the
	// target's resumable partial receives for the next run.
	changeKeepResumable = "compensation-keeps-resumable-partials"
	// changeReceiveStartTimeout: a receive attempt that no target worker
	// picks up within timeouts.host fails the run as HostUnavailable.
	changeReceiveStartTimeout = "receive-start-timeout-host"
	// changeResumeKeptFull: with no common base the planner resumes a kept
	// partial full receive of an earlier run's snapshot.
	changeResumeKeptFull = "plan-resumes-kept-full-receive"
	// changePlanOrderBySeq: the planner orders both sides' snapshots by
	// their filesystem sequence (Seq), not by the order they were listed in.
	changePlanOrderBySeq = "plan-orders-by-seq"
	// changePlanKeepsHistory: target snapshots received from this source
	// and deleted there since are history the plan keeps, not divergence.
	changePlanKeepsHistory = "plan-keeps-target-history"
	// changeRunMemo: a run's outcome is upserted into its memo (RunMemo)
	// as it ends, so `ferry status` reads it from the visibility list.
	changeRunMemo = "run-outcome-memo"
	// changeNativeResume: a step resuming a partial receive with a native
	// resume token (zfs) asks the source to continue it, and a receive's
	// SessionLost naming a token reopens the session for it.
	changeNativeResume = "zfs-native-resume-token"
	// changeGreetWithSnapshot: without hooks, the source's inventory comes
	// with the snapshot (CreateSnapshotInput.Inventory) and the target's is
	// taken while the snapshot is made: one activity round trip fewer.
	changeGreetWithSnapshot = "greet-with-snapshot"
	// changeDestroyLastUnverified: the received snapshot of a step's last
	// failed verify is destroyed too, so nothing unverified stays on the
	// target (and its view's latest goes back to the last verified one).
	changeDestroyLastUnverified = "verify-failure-destroys-last"
)

// replication is one run's state; every method runs on the workflow goroutine.
type replication struct {
	in     ReplicateInput
	status Status
	// down holds the hosts that did not finish a step in time.
	down map[string]bool
	// receiveDown is set when the target did not finish a receive in time.
	receiveDown *hostDown
	// restore: a RestoreWorkflow sending a replica back (OpenSend may send
	// a received snapshot).
	restore bool
	// native: resume tokens flow from the plan and the target's receive to
	// OpenSend (changeNativeResume).
	native bool
	// greetWithSnapshot: the snapshot activity returns the source's
	// inventory (srcInv; nil when its worker predates that).
	greetWithSnapshot bool
	srcInv            *activities.InventoryResult
}

// act is the nil receiver the workflow names activities by.
var act *activities.Host

func (r *replication) run(ctx workflow.Context) (ReplicateResult, error) {
	var res ReplicateResult
	name := SnapshotName(r.in.Job, r.status.StartedAt)
	if workflow.GetVersion(ctx, changeSnapshotMillis, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		name = secondSnapshotName(r.in.Job, r.status.StartedAt)
	}
	r.status.Snapshot, res.Snapshot = name, name

	// Without hooks (which run between the snapshot and the greet) the
	// greet starts with the snapshot: the target's inventory alongside it,
	// the source's in the snapshot activity (changeGreetWithSnapshot).
	var tgtF workflow.Future
	if r.in.PreSnapshotHook == "" && r.in.PostSnapshotHook == "" &&
		workflow.GetVersion(ctx, changeGreetWithSnapshot, workflow.DefaultVersion, 1) >= 1 {
		r.greetWithSnapshot = true
		tgtF = r.inventory(ctx, r.in.Target, "inventory target")
	}
	if err := r.snapshot(ctx, name, &res); err != nil {
		return res, err
	}

	r.setPhase(ctx, PhaseGreet, "greet "+r.in.Source.Host+" and "+r.in.Target.Host)
	var srcInv, tgtInv activities.InventoryResult
	if r.srcInv != nil {
		srcInv = *r.srcInv
	} else {
		srcF := r.inventory(ctx, r.in.Source, "inventory source")
		if tgtF == nil {
			tgtF = r.inventory(ctx, r.in.Target, "inventory target")
		}
		if err := srcF.Get(ctx, &srcInv); err != nil {
			return res, r.hostErr(r.in.Source.Host, "inventory source", r.in.HostTimeout, err)
		}
	}
	if err := tgtF.Get(ctx, &tgtInv); err != nil {
		return res, r.hostErr(r.in.Target.Host, "inventory target", r.in.HostTimeout, err)
	}
	refuse := workflow.GetVersion(ctx, changeRefuseModified, workflow.DefaultVersion, 1) >= 1
	if refuse {
		if err := refuseModified(r.in, srcInv, tgtInv); err != nil {
			return res, err
		}
		if res.Foreign = foreignItems(r.in, srcInv, tgtInv); len(res.Foreign) > 0 {
			workflow.GetLogger(ctx).Warn("items ferry did not make are in its area; they are left alone", "job", r.in.Job, "foreign", res.Foreign)
		}
	}
	resumeKept := workflow.GetVersion(ctx, changeResumeKeptFull, workflow.DefaultVersion, 1) >= 1
	orderBySeq := workflow.GetVersion(ctx, changePlanOrderBySeq, workflow.DefaultVersion, 1) >= 1
	keepHistory := workflow.GetVersion(ctx, changePlanKeepsHistory, workflow.DefaultVersion, 1) >= 1
	plan, err := ComputePlan(PlanInput{Job: r.in.Job, Want: name, Source: srcInv.Snapshots, Target: tgtInv.Snapshots, Partials: tgtInv.Partials,
		ResumeKeptFull: resumeKept, OrderBySeq: orderBySeq, KeepHistory: keepHistory, TargetBackend: tgtInv.Backend})
	if err != nil {
		return res, planError(r.in, err)
	}
	if note := keptNote(r.in, plan); note != "" {
		res.Note = joinNote(res.Note, note) // after a post_snapshot hook's failure, if any
		r.status.Note = res.Note
		workflow.GetLogger(ctx).Warn(note, "job", r.in.Job, "kept", plan.Kept)
	}
	if refuse {
		if err := refuseForeignInTheWay(r.in, tgtInv, plan); err != nil {
			return res, err
		}
	}
	res.Plan, r.status.Plan, r.status.Steps = plan, &plan, len(plan.Steps)
	if r.native = workflow.GetVersion(ctx, changeNativeResume, workflow.DefaultVersion, 1) >= 1; r.native {
		res.Features = r.logFeatures(ctx, srcInv, tgtInv)
		if note := r.abortedTokensNote(ctx, plan); note != "" {
			res.Note = joinNote(res.Note, note)
			r.status.Note = res.Note
		}
	}

	if len(plan.Discard) > 0 {
		r.setPhase(ctx, PhaseDiscard, fmt.Sprintf("discard %d leftover partial receive(s) on %s", len(plan.Discard), r.in.Target))
		var d activities.DiscardPartialsResult
		if err := r.call(ctx, r.in.Target.Host, "discard leftovers", act.DiscardPartials,
			activities.DiscardPartialsInput{Job: r.in.Job, Dataset: r.in.Target.Dataset, Partials: plan.Discard}, &d); err != nil {
			return res, err
		}
		res.Discarded = len(d.Discarded)
	}

	for i, step := range plan.Steps {
		r.status.Step = i + 1
		moved, err := r.replicateStep(ctx, step)
		res.Bytes += moved
		r.status.Bytes, res.Received = res.Bytes, r.status.Received
		if err != nil {
			return res, err
		}
	}
	if r.native {
		res.Note = r.status.Note // with what the steps noted (a refused resume)
	}

	if len(plan.Steps) > 0 || plan.Base != "" {
		r.setPhase(ctx, PhaseMark, "mark "+name+" on both sides")
		if err := r.call(ctx, r.in.Source.Host, "mark cursor", act.Mark,
			activities.MarkInput{Job: r.in.Job, Dataset: r.in.Source.Dataset, Mark: activities.MarkCursor, Snapshot: r.reached(plan)}, nil); err != nil {
			return res, err
		}
		if err := r.call(ctx, r.in.Target.Host, "mark received", act.Mark,
			activities.MarkInput{Job: r.in.Job, Dataset: r.in.Target.Dataset, Mark: activities.MarkReceived, Snapshot: r.reached(plan)}, nil); err != nil {
			return res, err
		}
	}
	if workflow.GetVersion(ctx, changePruneAfterMark, workflow.DefaultVersion, 1) >= 1 {
		var problem string
		if res.Prune, problem = r.prune(ctx, plan, tgtInv.Partials); problem != "" {
			res.Note = joinNote(res.Note, problem)
			r.status.Note = res.Note
		}
	}
	return res, nil
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// inventory starts the greet of one side.
func (r *replication) inventory(ctx workflow.Context, e Endpoint, what string) workflow.Future {
	return workflow.ExecuteActivity(r.hostCtx(ctx, e.Host, what), act.Inventory,
		activities.InventoryInput{Job: r.in.Job, Dataset: e.Dataset})
}

// reached is the newest snapshot both sides hold after the plan ran.
func (r *replication) reached(plan Plan) string {
	if n := len(plan.Steps); n > 0 {
		return plan.Steps[n-1].To
	}
	return plan.Base
}

// replicateStep streams and verifies one step, reopening lost sessions and
// redoing the step when verify fails, both a bounded number of times.
func (r *replication) replicateStep(ctx workflow.Context, step Step) (int64, error) {
	var moved int64
	for verifyAttempt := 1; ; verifyAttempt++ {
		before := r.status.Received
		sess, err := r.stream(ctx, step, &moved, r.stepToken(step, verifyAttempt))
		if err != nil {
			return moved, err
		}

		// The web UI's current details say what the step's receive took.
		r.setPhase(ctx, PhaseVerify, r.stepText("verify", step)+r.status.Received.since(before).text())
		err = r.verify(ctx, step, sess.SourceDigest)
		if err == nil {
			return moved, nil
		}
		if !isType(err, activities.ErrVerifyFailed) {
			return moved, err
		}
		if verifyAttempt >= MaxVerifyAttempts {
			return moved, r.discardLastUnverified(ctx, step, err)
		}
		r.status.LastError = err.Error()
		workflow.GetLogger(ctx).Warn("verify failed, discarding the received snapshot and redoing the step",
			"job", r.in.Job, "snapshot", step.To, "attempt", verifyAttempt, "error", err)
		if err := r.discardUnverified(ctx, step); err != nil {
			return moved, err
		}
	}
}

func (r *replication) discardUnverified(ctx workflow.Context, step Step) error {
	return r.call(ctx, r.in.Target.Host, "discard unverified "+step.To, act.DestroySnapshot,
		activities.DestroySnapshotInput{Job: r.in.Job, Dataset: r.in.Target.Dataset, Name: step.To}, nil)
}

// discardLastUnverified destroys the snapshot whose verify failed for the
// last time (changeDestroyLastUnverified): compensation never touches
// complete snapshots, and one left behind would be the replica's latest.
// The run fails with the verify's error either way.
func (r *replication) discardLastUnverified(ctx workflow.Context, step Step, verifyErr error) error {
	if workflow.GetVersion(ctx, changeDestroyLastUnverified, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return verifyErr
	}
	if err := r.discardUnverified(ctx, step); err != nil {
		workflow.GetLogger(ctx).Error("could not destroy the snapshot that failed verification; it is on the target unverified: destroy it there before the next run",
			"job", r.in.Job, "snapshot", step.To, "error", err)
		return verifyErr
	}
	workflow.GetLogger(ctx).Warn("verify failed on the last attempt; destroyed the received snapshot", "job", r.in.Job, "snapshot", step.To, "attempts", MaxVerifyAttempts)
	return verifyErr
}

// stream opens a send session on the source and receives it on the target;
// it returns the session the received stream came through. The receive
// resumes whatever partial of the step the target holds (the planned one, or
// the one a lost session left).
func (r *replication) stream(ctx workflow.Context, step Step, moved *int64, token string) (activities.OpenSendResult, error) {
	r.setPhase(ctx, PhaseStream, r.stepText("stream", step))
	for reopen := 0; ; reopen++ {
		var sess activities.OpenSendResult
		if err := r.call(ctx, r.in.Source.Host, "open send "+step.To, act.OpenSend,
			activities.OpenSendInput{Job: r.in.Job, Dataset: r.in.Source.Dataset, From: step.From, To: step.To,
				TargetHost: r.in.Target.Host, Compress: r.in.Compress, BWLimit: r.in.BWLimit, TTL: sessionTTL, Restore: r.restore,
				ResumeToken: token, SendDecrypted: r.in.SendDecrypted}, &sess); err != nil {
			return sess, err
		}
		r.noteRefusedResume(ctx, step, sess)
		var rcv activities.ReceiveResult
		waitHost := workflow.GetVersion(ctx, changeReceiveStartTimeout, workflow.DefaultVersion, 1) >= 1
		err := workflow.ExecuteActivity(r.streamCtx(ctx, step, waitHost), act.Receive, activities.ReceiveInput{
			Job: r.in.Job, Dataset: r.in.Target.Dataset, Name: step.To, SourceGUID: step.ToGUID,
			Parent: step.TargetParent, Mode: r.in.Resume, Session: sess, NativeResume: r.native,
		}).Get(ctx, &rcv)
		limit := r.in.StreamTimeout
		if waitHost && isTimeout(err, enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START) {
			limit = r.in.HostTimeout
		}
		err = r.hostErr(r.in.Target.Host, "receive "+step.To, limit, err)
		*moved += rcv.WireTotal()
		r.status.Received.add(rcv)
		if err == nil {
			return sess, nil
		}
		if !isType(err, activities.ErrSessionLost) || reopen >= MaxSessionReopens {
			return sess, err
		}
		r.status.LastError = err.Error()
		workflow.GetLogger(ctx).Warn("send session lost, opening a new one", "job", r.in.Job, "snapshot", step.To, "error", err)
		if r.native {
			token = lostSessionToken(err)
		}
	}
}

// verify checks the received step on the target against the source's
// identity and digest (and, for deep verify, its content digest).
func (r *replication) verify(ctx workflow.Context, step Step, sourceDigest string) error {
	in := activities.VerifyInput{Job: r.in.Job,
		Dataset: r.in.Target.Dataset, Name: step.To, SourceGUID: step.ToGUID, ParentSourceGUID: step.FromGUID, Digest: sourceDigest,
	}
	if r.in.DeepVerify {
		var d activities.ContentDigestResult
		if err := r.call(ctx, r.in.Source.Host, "content digest "+step.To, act.ContentDigest,
			activities.ContentDigestInput{Dataset: r.in.Source.Dataset, Name: step.To}, &d); err != nil {
			return err
		}
		in.Deep, in.SourceContentDigest = true, d.Digest
	}
	return r.call(ctx, r.in.Target.Host, "verify "+step.To, act.Verify, in, nil)
}

// compensate runs after the run failed for good (with cause) or was
// cancelled: it revokes send sessions on the source and discards partial
// receives on the target — except, after a transient failure, the resumable
// ones, which the next run resumes (keepsResumable). Complete snapshots on
// either side are never touched.
//
// It reports whether it left the target's partials to the next run
// because the target was down (its resumable ones are then kept).
func (r *replication) compensate(ctx workflow.Context, cause error) (keptOnDownTarget bool) {
	cancelled := ctx.Err() != nil
	ctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	r.setPhase(ctx, PhaseCompensating, "cleaning up partial state after: "+r.status.LastError)
	logger := workflow.GetLogger(ctx)
	// A host that just failed to answer in time would only make compensation
	// wait out its timeout again; what it holds is cleaned by the next run's
	// greet (partials) or expires by itself (sessions).
	skipDown := workflow.GetVersion(ctx, changeSkipDownHosts, workflow.DefaultVersion, 1) >= 1
	keep := workflow.GetVersion(ctx, changeKeepResumable, workflow.DefaultVersion, 1) >= 1 && keepsResumable(cause, cancelled)
	type cleanup struct {
		f      workflow.Future
		failed string // what it means when f fails
	}
	var pending []cleanup
	switch {
	case skipDown && r.down[r.in.Target.Host] && keep:
		keptOnDownTarget = true
		logger.Warn("target host unavailable: its partial receives stay; the next run resumes the resumable ones and discards the rest", "job", r.in.Job, "host", r.in.Target.Host)
	case skipDown && r.down[r.in.Target.Host]:
		logger.Warn("target host unavailable: partial receives stay until the next run's greet resumes the ones that still match and discards the rest", "job", r.in.Job, "host", r.in.Target.Host)
	default:
		if keep {
			logger.Info("keeping resumable partial receives for the next run after a transient failure", "job", r.in.Job, "host", r.in.Target.Host)
		}
		pending = append(pending, cleanup{workflow.ExecuteActivity(r.hostCtx(ctx, r.in.Target.Host, "discard partials"), act.DiscardPartials,
			activities.DiscardPartialsInput{Job: r.in.Job, Dataset: r.in.Target.Dataset, All: true, KeepResumable: keep}),
			"compensation could not discard partial receives; the next run's greet will"})
	}
	if skipDown && r.down[r.in.Source.Host] {
		logger.Warn("source host unavailable: its send sessions expire by themselves", "job", r.in.Job, "host", r.in.Source.Host)
	} else {
		pending = append(pending, cleanup{workflow.ExecuteActivity(r.hostCtx(ctx, r.in.Source.Host, "revoke send sessions"), act.CloseSend,
			activities.CloseSendInput{Job: r.in.Job}),
			"compensation could not revoke send sessions; they expire by themselves"})
	}
	for _, c := range pending {
		if err := c.f.Get(ctx, nil); err != nil {
			logger.Error(c.failed, "job", r.in.Job, "error", err)
		}
	}
	return keptOnDownTarget
}

func (r *replication) stepText(verb string, s Step) string {
	from := "full"
	if s.From != "" {
		from = "from " + s.From
	}
	text := fmt.Sprintf("%s step %d/%d: %s (%s) %s -> %s", verb, r.status.Step, r.status.Steps, s.To, from, r.in.Source, r.in.Target)
	if verb == "stream" && s.Resume != nil {
		text += ", resuming the partial receive kept by an earlier run"
	}
	return text
}

// setPhase publishes the phase to the query, the search attribute and the UI.
func (r *replication) setPhase(ctx workflow.Context, phase, details string) {
	r.status.Phase = phase
	if err := workflow.UpsertTypedSearchAttributes(ctx, visibility.FerryPhase.ValueSet(phase)); err != nil {
		workflow.GetLogger(ctx).Warn("could not upsert FerryPhase", "error", err)
	}
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**%s** — %s", phase, details))
}

func (r *replication) retryPolicy() *temporal.RetryPolicy {
	return &temporal.RetryPolicy{
		InitialInterval:        time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        time.Minute,
		NonRetryableErrorTypes: activities.NonRetryable,
	}
}

// call runs an activity on host's queue and waits for its result.
func (r *replication) call(ctx workflow.Context, host, summary string, activity, in, out any) error {
	err := workflow.ExecuteActivity(r.hostCtx(ctx, host, summary), activity, in).Get(ctx, out)
	return r.hostErr(host, summary, r.in.HostTimeout, err)
}

// hostErr turns an activity that was never finished in time — its host's
// worker down, or failing the whole time — into a HostUnavailable error that
// names the host and what to check; other errors pass unchanged.
func (r *replication) hostErr(host, what string, limit time.Duration, err error) error {
	if !isTimeout(err, enumspb.TIMEOUT_TYPE_SCHEDULE_TO_CLOSE) && !isTimeout(err, enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START) {
		return err
	}
	if r.down == nil {
		r.down = map[string]bool{}
	}
	r.down[host] = true
	d := hostDown{host: host, what: what, limit: r.limitName(limit), cause: err}
	var te *temporal.TimeoutError
	if errors.As(err, &te) && te.TimeoutType() == enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START {
		d.verb = "pick up" // no worker of the host polled its queue
		var hb activities.ReceiveProgress
		if te.HasLastHeartbeatDetails() && te.LastHeartbeatDetails(&hb) == nil {
			// An earlier attempt was running: the worker went away mid-step.
			d.verb, d.durable = "", hb.DurableOffset
		}
	}
	if host == r.in.Target.Host && strings.HasPrefix(what, "receive ") {
		r.receiveDown = &d
	}
	return d.error(r.in, false)
}

// hostDown is a host that did not finish a step in time, as hostErr found it.
type hostDown struct {
	host, what string
	// verb is what the host did not do ("pick up", "finish"); empty when it
	// stopped answering while the step ran.
	verb  string
	limit string // "timeouts.host (20s)"
	// durable is the receive's last checkpoint (its heartbeat), if any.
	durable int64
	cause   error
}

// error words the HostUnavailable failure, ferry's words first (the SDK's
// own stays the cause); kept says compensation left the receive's
// resumable partial on the host for the next run.
func (d hostDown) error(in ReplicateInput, kept bool) error {
	msg := fmt.Sprintf("job %s: %s -> %s: host %s ", in.Job, in.Source, in.Target, d.host)
	if d.verb == "" {
		msg += fmt.Sprintf("stopped answering during %q and did not come back within %s", d.what, d.limit)
	} else {
		msg += fmt.Sprintf("did not %s %q within %s", d.verb, d.what, d.limit)
	}
	if kept && d.durable > 0 {
		msg += fmt.Sprintf("; its partial receive of %s is kept: start `ferry worker --host %s` and run the job again to resume it", storage.FormatBytes(d.durable), d.host)
	} else {
		msg += fmt.Sprintf(": is `ferry worker --host %s` running and connected to Temporal?", d.host)
	}
	return temporal.NewApplicationErrorWithOptions(msg, activities.ErrHostUnavailable,
		temporal.ApplicationErrorOptions{NonRetryable: true, Cause: d.cause})
}

// limitName names the timeout that ran out, with its value.
func (r *replication) limitName(limit time.Duration) string {
	switch limit {
	case r.in.HostTimeout:
		return fmt.Sprintf("timeouts.host (%s)", limit)
	case r.in.StreamTimeout:
		return fmt.Sprintf("timeouts.stream (%s)", limit)
	}
	return limit.String()
}

func (r *replication) hostCtx(ctx workflow.Context, host, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:              HostTaskQueue(host),
		ScheduleToCloseTimeout: r.in.HostTimeout,
		StartToCloseTimeout:    r.in.HostTimeout,
		RetryPolicy:            r.retryPolicy(),
		Summary:                r.summary(host, summary),
	})
}

// summary is an activity's line in the web UI's timeline and event history,
// which show it without opening anything: the host first, then what it
// does, and during a step which one. It is metadata, not part of the
// command the SDK compares on replay (it matches activity id and type), so
// changing its words needs no workflow.GetVersion.
func (r *replication) summary(host, what string) string {
	s := host + ": " + what
	if (r.status.Phase == PhaseStream || r.status.Phase == PhaseVerify) && r.status.Steps > 0 {
		s += fmt.Sprintf(" (step %d/%d)", r.status.Step, r.status.Steps)
	}
	return s
}

func (r *replication) streamCtx(ctx workflow.Context, s Step, waitHost bool) workflow.Context {
	return workflow.WithActivityOptions(ctx, r.streamOptions(s, waitHost))
}

// streamOptions bound the receive as a whole by timeouts.stream and, with
// waitHost, each attempt's wait for a target worker by timeouts.host: a
// receiver killed mid-stream is noticed by its heartbeat, and when it stays
// down its retried attempt times out schedule-to-start (the server checks
// that timeout per attempt and never retries it), so the run fails as
// HostUnavailable instead of waiting out timeouts.stream.
func (r *replication) streamOptions(s Step, waitHost bool) workflow.ActivityOptions {
	o := workflow.ActivityOptions{
		TaskQueue:              HostTaskQueue(r.in.Target.Host),
		ScheduleToCloseTimeout: r.in.StreamTimeout,
		HeartbeatTimeout:       r.in.HeartbeatTimeout,
		RetryPolicy:            r.retryPolicy(),
		Summary:                r.receiveSummary(s),
	}
	if waitHost {
		o.ScheduleToStartTimeout = min(r.in.HostTimeout, r.in.StreamTimeout)
	}
	return o
}

// receiveSummary names the receiving host, the snapshot, where it comes
// from and what kind of step it is: "nas-b: receive ferry_x from nas-a
// (step 1/2, incremental)".
func (r *replication) receiveSummary(s Step) string {
	kind := "full"
	if s.From != "" {
		kind = "incremental"
	}
	if s.Resume != nil {
		kind += ", resuming a kept partial"
	}
	step := ""
	if r.status.Steps > 0 {
		step = fmt.Sprintf("step %d/%d, ", r.status.Step, r.status.Steps)
	}
	return fmt.Sprintf("%s: receive %s from %s (%s%s)", r.in.Target.Host, s.To, r.in.Source.Host, step, kind)
}

// jobError puts the job and its endpoints before an activity's error, as
// the workflow's own errors carry them; its type and cause stay.
func jobError(in ReplicateInput, err error) error {
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || strings.HasPrefix(ae.Message(), "job "+in.Job+": ") {
		return err
	}
	return temporal.NewApplicationErrorWithOptions(fmt.Sprintf("job %s: %s -> %s: %s", in.Job, in.Source, in.Target, ae.Message()),
		ae.Type(), temporal.ApplicationErrorOptions{NonRetryable: true, Cause: err})
}

// planError turns the planner's verdict into a non-retryable application error.
func planError(in ReplicateInput, err error) error {
	var ce *ConflictError
	if errors.As(err, &ce) {
		return temporal.NewApplicationErrorWithOptions(
			fmt.Sprintf("job %s: %s -> %s: %v", in.Job, in.Source, in.Target, err), activities.ErrConflict,
			temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{ce.Target}})
	}
	var nf *NotFoundError
	if errors.As(err, &nf) {
		return temporal.NewApplicationErrorWithOptions(fmt.Sprintf("job %s: %v", in.Job, err), activities.ErrNotFound,
			temporal.ApplicationErrorOptions{NonRetryable: true})
	}
	return err
}

func isTimeout(err error, kind enumspb.TimeoutType) bool {
	var te *temporal.TimeoutError
	return errors.As(err, &te) && te.TimeoutType() == kind
}

func isType(err error, errType string) bool {
	var ae *temporal.ApplicationError
	return errors.As(err, &ae) && ae.Type() == errType
}
