package activities

import "time"

// The workflow's view of storage: these types are what activity results and
// the planner carry, so their JSON is what recorded histories hold. They are
// mapped from storage's types in convert.go, so a change to package storage
// cannot change a history.

// Snapshot is one complete snapshot of a dataset as its host reported it.
type Snapshot struct {
	Dataset string `json:"dataset"`
	Name    string `json:"name"`
	// GUID is this copy's own identity (btrfs uuid, zfs guid, dir uuid).
	GUID string `json:"guid"`
	// ReceivedGUID is, for a received snapshot, the GUID of the snapshot it
	// was received from; empty for one made on its host.
	ReceivedGUID string `json:"received_guid,omitempty"`
	// ParentGUID is the source GUID of the incremental base a received
	// snapshot was applied on.
	ParentGUID string    `json:"parent_guid,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	ReadOnly   bool      `json:"read_only"`
	// Digest is the backend's digest of the content where it keeps one.
	Digest string `json:"digest,omitempty"`
	// Seq orders a dataset's snapshots by its filesystem, not the clock
	// (storage.Snapshot.Seq); 0 when the host did not report one.
	Seq uint64 `json:"seq,omitempty"`
	// DatasetGUID identifies the dataset the content was taken from: the
	// snapshot's own dataset for a local one, the source's for a received one.
	DatasetGUID string `json:"dataset_guid,omitempty"`
}

// Partial is what an interrupted receive left on the target.
type Partial struct {
	Dataset string `json:"dataset"`
	// Name is the snapshot the receive was producing, if known.
	Name string `json:"name,omitempty"`
	// ID is the backend's handle for discarding it.
	ID string `json:"id"`
	// Reason says in words why it is partial.
	Reason     string `json:"reason"`
	SourceGUID string `json:"source_guid,omitempty"`
	ParentGUID string `json:"parent_guid,omitempty"`
	// Resume, when set, is where the receive can continue by offset.
	Resume *ResumePosition `json:"resume,omitempty"`
	// ResumeToken is a backend's native resume handle (zfs).
	ResumeToken string `json:"resume_token,omitempty"`
}

// Resumable reports whether the receive can continue where it stopped.
func (p Partial) Resumable() bool { return p.Resume != nil || p.ResumeToken != "" }

// ResumePosition is a point in a stream a receive can continue from.
type ResumePosition struct {
	Offset int64 `json:"offset"`
	// HashState is the marshalled hash of the bytes before Offset.
	HashState []byte `json:"hash_state,omitempty"`
	// Digest names HashState's algorithm (resume.Position.Digest): empty in
	// positions recorded before BLAKE3, which continue with SHA-256.
	Digest string `json:"digest,omitempty"`
}

// Anomaly is something in ferry's area of a dataset that is neither a
// snapshot it can use nor a partial it may discard.
type Anomaly struct {
	Dataset string `json:"dataset"`
	// Kind is "modified" (a snapshot changed after ferry committed it) or
	// "foreign" (something ferry did not make).
	Kind string `json:"kind"`
	// Name is the snapshot name (or entry name) it occupies.
	Name string `json:"name"`
	// ID is its path relative to the host's root.
	ID string `json:"id"`
	// What says what changed or what it is; Fix what to do about it.
	What string `json:"what"`
	Fix  string `json:"fix"`
}

// Anomaly kinds.
const (
	AnomalyModified = "modified"
	AnomalyForeign  = "foreign"
)
