// Package storage defines what ferry needs from a storage backend (dir, btrfs,
// zfs): snapshots with identities, deterministic send streams, receives that
// are either complete or recognisably partial, and verification.
//
// Replication logic lives in the workflow; a backend only answers for its own
// host's storage. Every backend passes the conformance suite in storagetest
// against real storage.
package storage

import (
	"context"
	"io"
	"time"

	"github.com/ferry-nas/ferry/resume"
)

// Snapshot is one read-only snapshot of a dataset as its host sees it.
type Snapshot struct {
	Dataset string `json:"dataset"`
	Name    string `json:"name"`
	// GUID is this copy's own identity (btrfs uuid, zfs guid, dir uuid).
	GUID string `json:"guid"`
	// ReceivedGUID is, for a received snapshot, the GUID of the snapshot it
	// was received from (btrfs received_uuid); empty for one made here.
	// Common snapshots are matched by identity, never by name alone.
	ReceivedGUID string `json:"received_guid,omitempty"`
	// ParentGUID is the source GUID of the incremental base a received
	// snapshot was applied on; empty for a full receive or a local snapshot.
	ParentGUID string    `json:"parent_guid,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	ReadOnly   bool      `json:"read_only"`
	// Digest is the backend's digest of the snapshot's content where it keeps
	// one (dir: the manifest digest); empty otherwise.
	Digest string `json:"digest,omitempty"`
	// Seq orders a dataset's snapshots by the filesystem, never by the
	// clock: it grows with every snapshot made or received into the dataset
	// (btrfs: the transaction id that created a local snapshot or committed
	// a received one; dir: a per-dataset counter). 0: unknown (a snapshot
	// made before ferry recorded it), which sorts first.
	Seq uint64 `json:"seq,omitempty"`
	// DatasetGUID identifies the dataset the content was taken from: for a
	// snapshot made here, its live dataset (btrfs: the subvolume's uuid;
	// dir: the dataset's uuid in ferry's records); for a received one, the
	// source's dataset, as the receive request named it. Empty: unknown.
	DatasetGUID string `json:"dataset_guid,omitempty"`
}

// Partial is state a receive left behind that is not a complete snapshot:
// it must be resumed or discarded, and never treated as received.
type Partial struct {
	Dataset string `json:"dataset"`
	// Name is the snapshot the interrupted receive was producing, if known.
	Name string `json:"name,omitempty"`
	// ID names the partial for DiscardPartial (a path under the backend's
	// root or a backend-specific handle).
	ID string `json:"id"`
	// Reason says in words why this is partial, for logs and errors.
	Reason string `json:"reason"`
	// SourceGUID and ParentGUID identify the stream being received, if known.
	SourceGUID string `json:"source_guid,omitempty"`
	ParentGUID string `json:"parent_guid,omitempty"`
	// Resume, when set, is where the receive can continue by offset: the
	// stream must be re-sent from Resume.Offset with a matching prefix.
	Resume *resume.Position `json:"resume,omitempty"`
	// ResumeToken is a backend's native resume handle (zfs receive_resume_token).
	ResumeToken string `json:"resume_token,omitempty"`
}

// SendRequest names the stream to produce on the source.
type SendRequest struct {
	Dataset string
	// From is the incremental base's name on the source; empty for a full send.
	From string
	To   string
	// ResumeToken, when set, is the target's native resume token (zfs
	// receive_resume_token) of an interrupted receive of this step: the
	// stream continues it (`zfs send -t`) instead of starting at byte 0.
	ResumeToken string
	// Decrypted allows sending an encrypted dataset decrypted (the job's
	// stream.zfs_send_decrypted); without it an encrypted dataset is sent
	// raw or refused.
	Decrypted bool

	// Restore allows sending a received snapshot (a replica going back to
	// a new dataset). Only a restore sets it: replication sends from the
	// host that took the snapshot, never onward from a replica (btrfs
	// refuses that chain without it).
	Restore bool
	// Job is the job the stream is for. zfs holds the stream's snapshots
	// under a tag naming it while it runs (docs/storage-zfs.md); empty: no
	// step holds.
	Job string
}

// ReceiveRequest describes a receive on the target.
type ReceiveRequest struct {
	Dataset string
	// Name is the snapshot's name, the same on both sides.
	Name string
	// SourceGUID is the identity of the snapshot being sent.
	SourceGUID string
	// SourceDatasetGUID is the identity of the source's dataset (the sent
	// snapshot's DatasetGUID), recorded as the received snapshot's
	// DatasetGUID; empty when the source did not say.
	SourceDatasetGUID string
	// Parent is the incremental base's name on the target; empty for a full receive.
	Parent string
	// Resume continues the partial receive of Name at its saved position; the
	// stream then starts at that position. Without it the stream must start
	// at offset 0 and any partial for Name is discarded first. CheckResume
	// is the rule every backend applies.
	Resume bool
	// Durable, when set, is called whenever more of the stream is durable on
	// the target; a retried receive can resume from the last such position.
	Durable func(resume.Position)
	// Mode is the job's stream.resume ("" means ResumeAuto). Backends that
	// can always resume by offset (dir) ignore it; btrfs spools the stream
	// before applying it when staged.
	Mode ResumeMode
	// ExpectedSize is the source's estimate of the stream's size in bytes
	// (0: unknown), for choosing a mode and checking free space.
	ExpectedSize int64
	// ResumeToken, when set, says the stream is the source's continuation
	// of the partial receive holding this native resume token (zfs send -t);
	// the backend continues that partial instead of starting over.
	ResumeToken string
}

// VerifyRequest is what the target checks a received snapshot against.
type VerifyRequest struct {
	Dataset string
	Name    string
	// SourceGUID must equal the received snapshot's ReceivedGUID.
	SourceGUID string
	// ParentSourceGUID, for an incremental, must equal its ParentGUID.
	ParentSourceGUID string
	// Digest, when the backend keeps one, must equal the received snapshot's.
	Digest string
}

// FeatureReporter is a backend that detects what its host's storage and
// tools can do (zfs: resumable receive, bookmarks, holds, raw send, pool
// version); the greet step reports it. Names and values are the backend's.
type FeatureReporter interface {
	BackendFeatures() map[string]string
}

// EstimateAhead is a backend whose EstimateSendSize reads the snapshots
// themselves (btrfs: a `btrfs send --no-data` pass over the metadata of
// everything the step changed, hundreds of ms with a cold cache): the
// source starts the likely next step's estimate as soon as the run's
// snapshot exists, so that it overlaps the greet instead of delaying the
// stream (activities.Host.CreateSnapshot, OpenSend).
type EstimateAhead interface {
	EstimateAhead() bool
}

// Inventorier is a backend that lists a dataset's intact snapshots and its
// anomalies from one look at it, as ListSnapshots and Anomalies would; the
// greet asks for both at once. dir checks every replica's tree to list
// it: once instead of twice.
type Inventorier interface {
	SnapshotsAndAnomalies(ctx context.Context, ds string) ([]Snapshot, []Anomaly, error)
}

// Backend is one host's storage of one kind, rooted at its configured root.
// Datasets are paths relative to that root, already validated by config.
// All errors are *Error or wrap one, so callers can classify them.
type Backend interface {
	// Kind is "dir", "btrfs" or "zfs".
	Kind() string
	// Check reports whether the root and the backend's tools are usable.
	Check(ctx context.Context) error

	// CreateSnapshot makes a read-only snapshot of the live dataset; when a
	// complete snapshot of that name exists it is returned unchanged.
	CreateSnapshot(ctx context.Context, dataset, name string) (Snapshot, error)
	// ListSnapshots lists the complete snapshots ferry holds for the dataset,
	// oldest first by Seq (never by creation time, which a clock stepped
	// back would reorder); a dataset with none (or none yet) gives an empty list.
	ListSnapshots(ctx context.Context, dataset string) ([]Snapshot, error)
	// DestroySnapshot removes one snapshot; a missing one is not an error.
	DestroySnapshot(ctx context.Context, dataset, name string) error

	// EstimateSendSize estimates the stream's size in bytes, for progress.
	EstimateSendSize(ctx context.Context, req SendRequest) (int64, error)
	// Send writes the stream for req to w. The same request gives the same
	// bytes each time where the backend can promise it (dir can), which is
	// what offset resume relies on.
	Send(ctx context.Context, req SendRequest, w io.Writer) error

	// Partials lists what earlier receives (and snapshot creations) into the
	// dataset left behind: only ferry's own interrupted work.
	Partials(ctx context.Context, dataset string) ([]Partial, error)
	// Anomalies lists what is in ferry's area of the dataset that is neither
	// a complete snapshot nor a partial: snapshots modified after ferry
	// committed them, and items ferry did not make. Nothing ferry does
	// uses or removes them; an operation they are in the way of fails with
	// KindConflict naming them.
	Anomalies(ctx context.Context, dataset string) ([]Anomaly, error)
	// DiscardPartial removes one partial; a missing one is not an error.
	DiscardPartial(ctx context.Context, p Partial) error
	// Receive applies the stream and returns the received snapshot. It only
	// returns success after the whole stream (through io.EOF, which is where
	// the data plane checks its trailer) has been applied and made durable;
	// anything less leaves a Partial. When the target already holds a
	// complete, unmodified snapshot of that name which is the one being
	// sent (ReceivedAlready), it returns that snapshot without reading the
	// stream: a retry of a receive whose success was not acknowledged.
	Receive(ctx context.Context, req ReceiveRequest, s resume.Stream) (Snapshot, error)
	// Verify checks a received snapshot against what was sent.
	Verify(ctx context.Context, req VerifyRequest) (Snapshot, error)
	// SetMark records that mark (e.g. "cursor.share01") points at snapshot,
	// replacing where it pointed before; the snapshot must exist. Retention
	// never deletes a marked snapshot.
	SetMark(ctx context.Context, dataset, mark, snapshot string) error
	// Marks returns the dataset's marks, mark name -> snapshot name.
	Marks(ctx context.Context, dataset string) (map[string]string, error)
	// ContentDigest is a digest of the snapshot's file tree (paths, types,
	// modes, sizes, contents, link targets, file mtimes), comparable across
	// hosts and backends: what `verify: deep` and the tests compare.
	ContentDigest(ctx context.Context, dataset, name string) (string, error)

	// CheckNewDataset refuses (KindConflict, naming the path and the fix)
	// a dataset that exists in any form: its path under the root (a live
	// dataset, a replica's view, anything else) or complete snapshots ferry
	// holds for it. A restore goes only into a new dataset. Partial
	// receives alone do not count: they are a restore's own, resumable.
	CheckNewDataset(ctx context.Context, dataset string) error
	// Materialize makes dataset live and writable at <root>/<dataset> with
	// the content of its complete snapshot name (a restore's received
	// replica), which stays as the dataset's first snapshot; edits to the
	// live tree never reach it. The path must be absent or ferry's view
	// (which the receive made); anything else is KindConflict and nothing
	// changes. Done again after success it returns the same path.
	Materialize(ctx context.Context, dataset, name string) (live string, err error)
}
