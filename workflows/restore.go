package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/storage"
)

// RestoreWorkflowName is the registered type of RestoreWorkflow.
const RestoreWorkflowName = "RestoreWorkflow"

// Phases of a restore beyond a replication's.
const (
	PhaseCheck       = "check"
	PhaseMaterialize = "materialize"
)

// RestoreWorkflowID is the workflow ID of a restore into dest: one at a
// time per destination dataset.
func RestoreWorkflowID(dest Endpoint) string {
	return "ferry-restore-" + dest.Host + ":" + dest.Dataset
}

// RestoreRequest is one restore, as `ferry restore` starts it: the job's
// replica on its target (From) copied into a new dataset (To).
type RestoreRequest struct {
	Job  string   `json:"job"`
	From Endpoint `json:"from"`
	To   Endpoint `json:"to"`
	// Snapshot is the replica to restore; empty: the newest received one.
	Snapshot string `json:"snapshot,omitempty"`
	Compress bool   `json:"compress,omitempty"`
	BWLimit  int64  `json:"bwlimit,omitempty"`
	Resume   string `json:"resume,omitempty"`
	// Timeouts; zero values take the replication's defaults.
	HostTimeout      time.Duration `json:"host_timeout,omitempty"`
	StreamTimeout    time.Duration `json:"stream_timeout,omitempty"`
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
}

// RestoreResult says what a restore did and what the digests were.
type RestoreResult struct {
	Snapshot string   `json:"snapshot"`
	From     Endpoint `json:"from"`
	To       Endpoint `json:"to"`
	// Path is the restored live dataset on To's host.
	Path string `json:"path"`
	// Bytes moved over the wire by the receive attempts that completed.
	Bytes int64 `json:"bytes"`
	// ReplicaDigest is the replica's content digest on From, ReceivedDigest
	// the received snapshot's on To, LiveDigest the restored live tree's:
	// all three are equal or the restore failed.
	ReplicaDigest  string `json:"replica_digest"`
	ReceivedDigest string `json:"received_digest"`
	LiveDigest     string `json:"live_digest"`
}

// RestoreWorkflow copies a job's replica into a new dataset: check that
// the destination is new (nothing changes when it is not), pick the
// snapshot, stream it through the data plane (resumable, as a
// replication's step), verify it by identity and content digest, make it
// the live dataset and digest that too. On failure the receive's partials
// are handled as a replication's: kept when resumable after a transient
// failure (a new restore resumes them), discarded otherwise.
func RestoreWorkflow(ctx workflow.Context, in RestoreRequest) (res RestoreResult, err error) {
	r := &replication{in: ReplicateInput{Job: in.Job, Source: in.From, Target: in.To, Compress: in.Compress, BWLimit: in.BWLimit,
		Resume: in.Resume, HostTimeout: in.HostTimeout, StreamTimeout: in.StreamTimeout, HeartbeatTimeout: in.HeartbeatTimeout}.withDefaults(),
		status: Status{Job: in.Job, StartedAt: workflow.Now(ctx)}, restore: true}
	res.From, res.To = in.From, in.To
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (Status, error) { return r.status, nil }); err != nil {
		return res, err
	}
	checked := false
	defer func() {
		if err == nil {
			r.setPhase(ctx, PhaseDone, "restored "+res.Snapshot+" to "+in.To.String())
			return
		}
		err = restoreError(in, err)
		r.status.LastError = err.Error()
		if checked {
			// Before the check passed nothing was touched: a destination
			// that exists keeps its partials too.
			r.compensate(ctx, err)
		}
		r.setPhase(ctx, PhaseFailed, "failed: "+err.Error())
	}()

	r.setPhase(ctx, PhaseCheck, "check that "+in.To.String()+" does not exist")
	if err := r.call(ctx, in.To.Host, "check "+in.To.String()+" is new", act.CheckNewDataset,
		activities.CheckNewDatasetInput{Job: in.Job, Dataset: in.To.Dataset}, nil); err != nil {
		return res, err
	}
	checked = true

	r.setPhase(ctx, PhaseGreet, "find the replica on "+in.From.String())
	var inv activities.InventoryResult
	if err := r.call(ctx, in.From.Host, "inventory replica", act.Inventory, activities.InventoryInput{Job: in.Job, Dataset: in.From.Dataset}, &inv); err != nil {
		return res, err
	}
	snap, err := pickReplica(in, inv.Snapshots)
	if err != nil {
		return res, err
	}
	res.Snapshot, r.status.Snapshot = snap.Name, snap.Name
	step := Step{To: snap.Name, ToGUID: storage.SentGUID(inv.Backend, storageSnapshot(snap))}
	r.status.Step, r.status.Steps = 1, 1

	var d activities.ContentDigestResult
	if err := r.call(ctx, in.From.Host, "content digest "+snap.Name, act.ContentDigest,
		activities.ContentDigestInput{Dataset: in.From.Dataset, Name: snap.Name}, &d); err != nil {
		return res, err
	}
	res.ReplicaDigest = d.Digest

	sess, err := r.stream(ctx, step, &res.Bytes, "")
	r.status.Bytes = res.Bytes
	if err != nil {
		return res, err
	}
	r.setPhase(ctx, PhaseVerify, "verify "+snap.Name+" on "+in.To.String())
	if err := r.call(ctx, in.To.Host, "verify "+snap.Name, act.Verify, activities.VerifyInput{Job: in.Job, Dataset: in.To.Dataset, Name: snap.Name,
		SourceGUID: step.ToGUID, Digest: sess.SourceDigest, Deep: true, SourceContentDigest: res.ReplicaDigest}, nil); err != nil {
		return res, err
	}
	res.ReceivedDigest = res.ReplicaDigest // deep verify compared them

	r.setPhase(ctx, PhaseMaterialize, "make "+in.To.String()+" live from "+snap.Name)
	var m activities.MaterializeResult
	if err := r.call(ctx, in.To.Host, "materialize "+in.To.String(), act.Materialize,
		activities.MaterializeInput{Job: in.Job, Dataset: in.To.Dataset, Name: snap.Name}, &m); err != nil {
		return res, err
	}
	res.Path, res.LiveDigest = m.Path, m.Digest
	if m.Digest != res.ReplicaDigest {
		return res, temporal.NewApplicationErrorWithOptions(fmt.Sprintf(
			"the restored dataset %s:%s has content digest %s, the replica %s has %s: the copy from its snapshot %s differs; check %s's disk, remove %s and restore again",
			in.To.Host, m.Path, m.Digest, in.From, res.ReplicaDigest, snap.Name, in.To.Host, m.Path), activities.ErrVerifyFailed,
			temporal.ApplicationErrorOptions{NonRetryable: true})
	}
	return res, nil
}

// pickReplica is the named snapshot, or the newest (by Seq) received one.
func pickReplica(in RestoreRequest, snaps []activities.Snapshot) (activities.Snapshot, error) {
	if in.Snapshot != "" {
		for _, s := range snaps {
			if s.Name == in.Snapshot {
				return s, nil
			}
		}
		names := make([]string, len(snaps))
		for i, s := range snaps {
			names[i] = s.Name
		}
		return activities.Snapshot{}, temporal.NewApplicationErrorWithOptions(fmt.Sprintf(
			"%s has no snapshot %s; it has: %s (`ferry snapshots` lists them)", in.From, in.Snapshot, orNone(names)),
			activities.ErrNotFound, temporal.ApplicationErrorOptions{NonRetryable: true})
	}
	received := slices.DeleteFunc(slices.Clone(snaps), func(s activities.Snapshot) bool { return s.ReceivedGUID == "" })
	if len(received) == 0 {
		return activities.Snapshot{}, temporal.NewApplicationErrorWithOptions(fmt.Sprintf(
			"%s holds no received replica of job %s: has the job completed a run (`ferry status`)?", in.From, in.Job),
			activities.ErrNotFound, temporal.ApplicationErrorOptions{NonRetryable: true})
	}
	return slices.MaxFunc(received, func(a, b activities.Snapshot) int { return compareSeq(a.Seq, b.Seq) }), nil
}

func compareSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// storageSnapshot is the part of a snapshot storage.SentGUID reads.
func storageSnapshot(s activities.Snapshot) storage.Snapshot {
	return storage.Snapshot{GUID: s.GUID, ReceivedGUID: s.ReceivedGUID}
}

// restoreError puts the restore's job and endpoints before an error.
func restoreError(in RestoreRequest, err error) error {
	prefix := fmt.Sprintf("restore of job %s: %s -> %s: ", in.Job, in.From, in.To)
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || strings.HasPrefix(ae.Message(), prefix) {
		return err
	}
	msg := ae.Message()
	// A replication step's own prefix says nothing more here.
	msg = strings.TrimPrefix(msg, fmt.Sprintf("job %s: %s -> %s: ", in.Job, in.From, in.To))
	return temporal.NewApplicationErrorWithOptions(prefix+msg, ae.Type(), temporal.ApplicationErrorOptions{NonRetryable: true, Cause: err})
}
