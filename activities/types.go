// Package activities is the storage and data-plane work of a replication,
// run by the `ferry worker` of the host that owns the storage it touches.
// Every activity takes one input struct and returns one result struct; the
// workflow routes each call to the host's own task queue.
package activities

import "time"

// Application error types the workflow and its retry policies act on. The
// storage kinds keep their names (storage.Kind.String()).
const (
	ErrConflict    = "Conflict"
	ErrNotFound    = "NotFound"
	ErrNoSpace     = "NoSpace"
	ErrUnsupported = "Unsupported"
	ErrInvalid     = "Invalid"
	// ErrVerifyFailed: the received snapshot is not the one sent; the
	// workflow discards it and redoes the step a bounded number of times.
	ErrVerifyFailed = "VerifyFailed"
	// ErrSessionLost: the source no longer knows the send session (it
	// restarted or the token expired); the workflow opens a new one.
	ErrSessionLost = "SessionLost"
	// ErrHostUnavailable: a host did not finish a step within its timeout
	// (its worker down or failing throughout); raised by the workflow.
	ErrHostUnavailable = "HostUnavailable"
)

// NonRetryable lists the error types no activity retry can fix.
var NonRetryable = []string{ErrConflict, ErrNotFound, ErrNoSpace, ErrUnsupported, ErrInvalid, ErrVerifyFailed, ErrSessionLost}

// CreateSnapshotInput names the snapshot to make on the source.
type CreateSnapshotInput struct {
	Job, Dataset, Name string
	// Inventory asks for the source's side of the greet (what Inventory
	// returns) with the snapshot, in the same activity: one round trip
	// through Temporal fewer per run.
	Inventory bool `json:",omitempty"`
}

// CreateSnapshotResult is the snapshot made (or found, on a retry).
type CreateSnapshotResult struct {
	Snapshot Snapshot
	// Inventory is the source's greet, taken after the snapshot was made,
	// when the input asked for it (nil from a worker that predates it: the
	// workflow then runs Inventory itself).
	Inventory *InventoryResult `json:",omitempty"`
}

// InventoryInput asks a host what it holds for a dataset (the greet step).
type InventoryInput struct {
	Job, Dataset string
}

// InventoryResult is one side's greeting.
type InventoryResult struct {
	Host      string
	Backend   string
	Snapshots []Snapshot
	Partials  []Partial
	// Anomalies are the modified snapshots and foreign items on the host
	// (absent from histories recorded before they were reported).
	Anomalies []Anomaly `json:",omitempty"`
	// Features is what the host's backend detected it can do (zfs:
	// pool_version, resumable_receive, bookmarks, holds, raw_send, ...);
	// absent for backends that detect nothing and in older histories.
	Features map[string]string `json:",omitempty"`
}

// OpenSendInput asks the source to authorise one stream for the target host.
type OpenSendInput struct {
	Job, Dataset string
	// From is the incremental base on the source (empty: full); To the snapshot to send.
	From, To string
	// TargetHost is the only certificate name allowed to pull the stream.
	TargetHost string
	Compress   bool
	// BWLimit caps the job's send rate in bytes per second (0: unlimited).
	BWLimit int64
	// TTL is how long the session stays valid without being completed.
	TTL time.Duration
	// Restore sends a replica back (RestoreWorkflow only): a received
	// snapshot may then be sent, and the result's SourceGUID is the
	// identity its stream carries.
	Restore bool `json:",omitempty"`
	// ResumeToken, when set, is the target's native resume token (zfs) of
	// the step's partial receive: the session continues it (`zfs send -t`),
	// or, when the source can no longer continue it, sends the step from
	// byte 0 and says why (OpenSendResult.ResumeRefused).
	ResumeToken string `json:",omitempty"`
	// SendDecrypted allows sending an encrypted dataset decrypted (the
	// job's stream.zfs_send_decrypted); otherwise it is sent raw or refused.
	SendDecrypted bool `json:",omitempty"`
}

// OpenSendResult tells the target where and how to pull the stream.
// Recorded histories also carry Expires, ParentGUID and SourceKind, which
// nothing read; decoding ignores them.
type OpenSendResult struct {
	Token      string
	Address    string
	ServerName string
	// Expected is the source's estimate of the stream's size in bytes.
	Expected   int64
	SourceGUID string
	// SourceDatasetGUID identifies the source's dataset; the target records
	// it with the received snapshot (which source a replica came from).
	SourceDatasetGUID string `json:",omitempty"`
	// SourceDigest is the sent snapshot's digest, for verify.
	SourceDigest string
	Compress     bool
	// ResumeToken is the native resume token the session's stream
	// continues (empty: the stream starts at byte 0).
	ResumeToken string `json:",omitempty"`
	// ResumeRefused says why the source could not continue the token it
	// was asked to (RefusedToken): the session sends the step from byte 0
	// and the target aborts that partial.
	ResumeRefused string `json:",omitempty"`
	RefusedToken  string `json:",omitempty"`
}

// SessionLostDetails are the details of a SessionLost error a receive
// raises because the target holds a partial this session cannot continue
// natively: the new session continues ResumeToken ("" : from byte 0).
type SessionLostDetails struct {
	ResumeToken string `json:",omitempty"`
}

// ReceiveInput pulls one planned step from the source into the target.
// Whether to resume is the activity's decision, from the partial the target
// really holds; recorded histories carry a "Resume" flag nothing read.
type ReceiveInput struct {
	Job, Dataset string
	Name         string
	SourceGUID   string
	// Parent is the incremental base's name on the target (empty: full).
	Parent string
	// Mode is the job's stream.resume mode (auto, staged, off).
	Mode    string
	Session OpenSendResult
	// NativeResume: the workflow reopens the session for a native resume
	// token the target holds (SessionLostDetails); without it (older runs)
	// such a partial is aborted and the step starts from byte 0.
	NativeResume bool `json:",omitempty"`
}

// ReceiveProgress is the heartbeat of a running receive, also what
// `ferry status` shows. Stream bytes are the backend's send stream (what
// Expected estimates, what a resume offset counts); wire bytes are the
// frames on the network, zstd-compressed when the job compresses, and what
// stream.bwlimit caps. The fields after Rate carry over from one attempt of
// the activity to the next (a retry reads the last heartbeat of the one
// before), so they count every attempt; heartbeats recorded before they
// existed decode them as zero.
type ReceiveProgress struct {
	// Line is Line() when the heartbeat was sent: the web UI shows heartbeat
	// details as they are (pending activity), so the figures come first in
	// words. Readers compute it from the numbers, never parse it.
	Line string `json:"progress,omitempty"`
	// Bytes is the stream position reached (a resumed prefix included).
	Bytes         int64 `json:"bytes"`
	Expected      int64 `json:"expected"`
	DurableOffset int64 `json:"durable_offset"`
	// Rate is stream bytes per second, recent.
	Rate float64 `json:"rate"`
	// WireRate is wire bytes per second, recent.
	WireRate float64 `json:"wire_rate,omitempty"`
	// StreamSent and WireSent are what every attempt moved so far; an
	// attempt cut short counts up to its last heartbeat (or, for stream
	// bytes, up to the checkpoint its successor resumed from).
	StreamSent int64 `json:"stream_sent,omitempty"`
	WireSent   int64 `json:"wire_sent,omitempty"`
	// Attempt of the activity sending this heartbeat; StartOffset is the
	// stream offset it started from.
	Attempt     int32 `json:"attempt,omitempty"`
	StartOffset int64 `json:"start_offset,omitempty"`
	// Resumes counts attempts that continued the partial an earlier attempt
	// left; Restarts those that started over from byte 0 after an earlier
	// attempt had moved bytes, the last one for Restart's reason.
	Resumes    int    `json:"resumes,omitempty"`
	Restarts   int    `json:"restarts,omitempty"`
	Restart    string `json:"restart,omitempty"`
	Reconnects int    `json:"reconnects,omitempty"`
	// Interval is the seconds between two heartbeats: a heartbeat much
	// older than that means the worker stopped reporting.
	Interval float64 `json:"interval,omitempty"`
}

// ReceiveResult is the received snapshot and what it cost.
type ReceiveResult struct {
	Snapshot Snapshot
	// Bytes moved over the wire by the attempt that completed, across
	// reconnects.
	Bytes      int64
	Resumed    bool
	Reconnects int
	// The same across every attempt of the activity (ReceiveProgress):
	// stream and wire bytes, attempts, resumes and restarts after an
	// attempt was cut short, with the last restart's reason. Zero in
	// results recorded before they existed.
	StreamSent int64 `json:",omitempty"`
	// StreamSize is the stream's length: the offset the completing attempt
	// ended at (a resumed prefix included).
	StreamSize      int64  `json:",omitempty"`
	WireSent        int64  `json:",omitempty"`
	Attempts        int32  `json:",omitempty"`
	Resumes         int    `json:",omitempty"`
	Restarts        int    `json:",omitempty"`
	Restart         string `json:",omitempty"`
	TotalReconnects int    `json:",omitempty"`
}

// WireTotal is the wire bytes of every attempt when the result counts
// them, else those of the completing attempt (results recorded before).
func (r ReceiveResult) WireTotal() int64 {
	return max(r.WireSent, r.Bytes)
}

// DiscardPartialsInput lists partial receives to remove from the target.
type DiscardPartialsInput struct {
	Job, Dataset string
	Partials     []Partial
	// All discards every partial the target has for the dataset (compensation).
	All bool
	// KeepResumable spares, with All, the partials that can be resumed
	// (compensation after a transient failure: the next run resumes them).
	KeepResumable bool `json:",omitempty"`
}

// DiscardPartialsResult says what was removed and what was kept.
type DiscardPartialsResult struct {
	Discarded []Partial
	Kept      []Partial `json:",omitempty"`
}

// VerifyInput checks a received snapshot against the source's. Its fields
// are those of the storage.VerifyRequest it maps to, at the top level as in
// recorded histories.
type VerifyInput struct {
	Job     string
	Dataset string
	Name    string
	// SourceGUID must equal the received snapshot's ReceivedGUID.
	SourceGUID string
	// ParentSourceGUID, for an incremental, must equal its ParentGUID.
	ParentSourceGUID string
	// Digest, when the backend keeps one, must equal the received snapshot's.
	Digest string
	// Deep also compares content digests computed on both sides.
	Deep bool
	// SourceContentDigest is the source's ContentDigest (deep verify only).
	SourceContentDigest string
}

// VerifyResult is the verified snapshot.
type VerifyResult struct {
	Snapshot Snapshot
}

// ContentDigestInput asks for a snapshot's content digest.
type ContentDigestInput struct {
	Dataset, Name string
}

// ContentDigestResult is the digest.
type ContentDigestResult struct {
	Digest string
}

// DestroySnapshotInput removes one snapshot (a received one that failed verify).
type DestroySnapshotInput struct {
	Job, Dataset, Name string
}

// DestroySnapshotResult is empty; the struct keeps the signature stable.
type DestroySnapshotResult struct{}

// MarkInput records on one side which snapshot the job has reached.
type MarkInput struct {
	Job, Dataset string
	// Mark is MarkCursor on the source, MarkReceived on the target.
	Mark     string
	Snapshot string
}

// MarkResult is empty; the struct keeps the signature stable.
type MarkResult struct{}

// Marks: the names under which each side records a job's position.
// Retention never deletes a marked snapshot.
const (
	MarkCursor   = "cursor"
	MarkReceived = "received"
)

// CloseSendInput revokes a job's open send sessions on the source (compensation).
type CloseSendInput struct {
	Job string
}

// CloseSendResult says how many sessions were revoked.
type CloseSendResult struct {
	Revoked int
}
