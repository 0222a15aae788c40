package activities

import "time"

// PruneInput asks a host to apply a job's retention grid to its side of the
// job (or, with DryRun, only to say what it would do).
type PruneInput struct {
	Job     string `json:"job"`
	Dataset string `json:"dataset"`
	// Side is SideSource or SideTarget: which mark is the job's position
	// (cursor.<job> or received.<job>).
	Side string `json:"side"`
	// Grid is the side's retention grid as configured ("24x1h | 7x1d");
	// empty keeps every snapshot.
	Grid string `json:"grid,omitempty"`
	// Now is the workflow's time the grid counts back from, so a retried
	// attempt decides the same.
	Now    time.Time `json:"now"`
	DryRun bool      `json:"dry_run,omitempty"`
	// Protect names snapshots of this host that the other side still needs
	// (the source snapshot and base of a partial receive kept on the target).
	Protect []Protection `json:"protect,omitempty"`
}

// Sides of a job.
const (
	SideSource = "source"
	SideTarget = "target"
)

// Protection keeps one snapshot, named by its GUID on this host, whatever
// the grid says.
type Protection struct {
	GUID string `json:"guid"`
	// Rule is one of the Rule* constants; Detail says it in words.
	Rule   string `json:"rule"`
	Detail string `json:"detail"`
}

// Rules that keep a snapshot whatever the grid says, as PruneResult
// reports them. The grid's own verdicts carry retention's rule names
// (newest, bucket, superseded, expired, no-policy, future, not-ferry,
// other-job).
const (
	// RuleCursor, RuleReceived, RuleMark: a mark names it (any job's).
	RuleCursor   = "cursor"
	RuleReceived = "received"
	RuleMark     = "mark"
	// RulePending: newer than the job's own mark on this side: not yet
	// replicated (source) or not yet marked (target).
	RulePending = "pending"
	// RulePartialBase: the base (or, on the source, the snapshot) of a
	// partial receive that may still be resumed.
	RulePartialBase = "partial"
	// RuleInFlight: an open send session streams it or builds on it.
	RuleInFlight = "in-flight"
	// RuleBucket: the grid period a protected snapshot is in.
	RuleBucket = "bucket"
)

// Reason is one rule that applies to a snapshot.
type Reason struct {
	Rule   string `json:"rule"`
	Detail string `json:"detail"`
}

// SnapshotVerdict is what prune decided for one snapshot, and why.
type SnapshotVerdict struct {
	Name string `json:"name"`
	GUID string `json:"guid"`
	// ReceivedGUID and DatasetGUID: the snapshot's identity (see Snapshot).
	ReceivedGUID string `json:"received_guid,omitempty"`
	DatasetGUID  string `json:"dataset_guid,omitempty"`
	// Time is the time in the snapshot's name (ferry's snapshots), else
	// the host's recorded creation time.
	Time time.Time `json:"time"`
	// TimeFromName says whether Time was read from the name.
	TimeFromName bool `json:"time_from_name"`
	// Size in bytes where the backend knows it (0: unknown).
	Size int64 `json:"size,omitempty"`
	// Job is the ferry job the name belongs to ("" when not ferry's).
	Job  string `json:"job,omitempty"`
	Keep bool   `json:"keep"`
	// Reasons are the protections that keep it (all of them), or the
	// grid's verdict.
	Reasons []Reason `json:"reasons"`
	// Deleted: removed by this prune; Error: the deletion failed.
	Deleted bool   `json:"deleted,omitempty"`
	Error   string `json:"error,omitempty"`
}

// PruneResult is one side's verdicts, oldest first, and what was done.
type PruneResult struct {
	Host    string `json:"host"`
	Backend string `json:"backend"`
	Dataset string `json:"dataset"`
	Grid    string `json:"grid,omitempty"`
	DryRun  bool   `json:"dry_run,omitempty"`
	// Snapshots: every complete snapshot of the dataset, oldest first.
	Snapshots []SnapshotVerdict `json:"snapshots"`
	// Pruned counts snapshots deleted (DryRun: that would be), Kept those
	// kept, Failed those whose deletion failed (they stay).
	Pruned int `json:"pruned"`
	Kept   int `json:"kept"`
	Failed int `json:"failed,omitempty"`
	// Partials are the host's partial receives of the dataset.
	Partials []Partial `json:"partials,omitempty"`
}
