package workflows

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/ferry-nas/ferry/activities"
)

// PlanInput is what the greet step learned from both sides.
type PlanInput struct {
	Job string
	// Want is the source snapshot this run replicates up to.
	Want string
	// Source and Target list each side's complete snapshots, oldest first.
	Source []activities.Snapshot
	Target []activities.Snapshot
	// OrderBySeq makes the planner order both lists by Seq itself rather
	// than trust the order they came in (see orderBySeq).
	OrderBySeq bool
	// KeepHistory makes target snapshots received from this source that
	// the source has deleted since history, not divergence (see
	// splitTarget); TargetBackend says whether the target's received
	// snapshots are independent of each other ("dir", "btrfs").
	KeepHistory   bool
	TargetBackend string
	// Partials is what earlier receives left on the target.
	Partials []activities.Partial
	// ResumeKeptFull lets a first replication resume the kept partial of an
	// earlier run's full receive (see keptFullSteps).
	ResumeKeptFull bool
}

// Step is one send/receive: a full one when From is empty.
type Step struct {
	From     string `json:"from,omitempty"`
	FromGUID string `json:"from_guid,omitempty"`
	// TargetParent is the base's name on the target (incrementals only).
	TargetParent string `json:"target_parent,omitempty"`
	To           string `json:"to"`
	ToGUID       string `json:"to_guid"`
	// Resume continues this partial receive instead of starting over.
	Resume *activities.Partial `json:"resume,omitempty"`
}

// Plan is what a run does to bring the target up to Want.
type Plan struct {
	// Base is the most recent snapshot both sides hold (source name), if any.
	Base  string `json:"base,omitempty"`
	Steps []Step `json:"steps"`
	// Discard lists partial receives to remove before streaming.
	Discard []activities.Partial `json:"discard,omitempty"`
	// Kept names (oldest first) the target snapshots newer than Base — or
	// all of them when there is no Base — that were received from this
	// source and deleted there since: the target keeps them as history.
	Kept []string `json:"kept,omitempty"`
}

// ConflictError says why the target cannot be brought up to date without
// destroying something on it. Nothing is changed when it is returned.
type ConflictError struct {
	Reason string
	// Target names the target snapshots that are in the way.
	Target []string
	// Described, when set, says for each of Target what it is (a replica
	// of another source, a snapshot made on the target, ...).
	Described []string
	// Fix, when set, replaces the generic advice.
	Fix string
}

func (e *ConflictError) Error() string {
	msg := e.Reason
	switch {
	case len(e.Described) > 0:
		msg += ": " + strings.Join(e.Described, "; ")
	case len(e.Target) > 0:
		msg += ": " + strings.Join(e.Target, ", ")
	}
	if e.Fix != "" {
		return msg + "; " + e.Fix
	}
	return msg + "; nothing on the target was changed — inspect those snapshots, remove or rename them on the target (or choose another target), then run the job again"
}

// NotFoundError says the snapshot the run wants to send is not on the source.
type NotFoundError struct{ Snapshot string }

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("snapshot %s is not on the source; the snapshot step must have failed or it was removed by hand — run the job again", e.Snapshot)
}

// SnapshotPrefix is how every snapshot ferry makes for job starts.
func SnapshotPrefix(job string) string { return "ferry_" + job + "_" }

// ComputePlan finds the most recent common snapshot (by identity, never by
// name), the chain of steps from it to Want, partial receives to resume or
// discard, or the conflict that stops the run. It is pure: same input, same plan.
func ComputePlan(in PlanInput) (Plan, error) {
	if in.OrderBySeq {
		in.Source, in.Target = orderBySeq(in.Source), orderBySeq(in.Target)
	}
	wantIdx := -1
	sourceIdx := make(map[string]int, len(in.Source))
	for i, s := range in.Source {
		sourceIdx[s.GUID] = i
		if s.Name == in.Want {
			wantIdx = i
		}
	}
	if wantIdx < 0 {
		return Plan{}, &NotFoundError{Snapshot: in.Want}
	}

	baseSrc, baseTgt := -1, -1
	for i := len(in.Target) - 1; i >= 0; i-- {
		if j, ok := matchSource(in.Target[i], sourceIdx); ok {
			baseSrc, baseTgt = j, i
			break
		}
	}

	var plan Plan
	if in.KeepHistory {
		kept, err := splitTarget(in, wantIdx, baseTgt, sourceIdx)
		if err != nil {
			return Plan{}, err
		}
		plan.Kept = kept
	}
	switch {
	case in.KeepHistory && baseTgt >= 0:
		plan.Base = in.Source[baseSrc].Name
	case in.KeepHistory:
		// Nothing in common, but what the target holds is history: a first replication.
	case baseTgt >= 0:
		if newer := in.Target[baseTgt+1:]; len(newer) > 0 {
			return Plan{}, &ConflictError{
				Reason: fmt.Sprintf("target has diverged: it holds snapshots newer than the common base %s that the source does not have", in.Target[baseTgt].Name),
				Target: names(newer),
			}
		}
		plan.Base = in.Source[baseSrc].Name
	case len(in.Target) > 0:
		return Plan{}, &ConflictError{
			Reason: "no common snapshot: the target holds snapshots, none of them received from this source",
			Target: names(in.Target),
		}
	}

	if baseSrc >= wantIdx {
		// The target already holds Want (or something newer): nothing to send.
		plan.Discard = append(plan.Discard, in.Partials...)
		return plan, nil
	}

	if baseSrc < 0 {
		// First replication: send the wanted snapshot whole, not the history.
		plan.Steps = []Step{{To: in.Want, ToGUID: in.Source[wantIdx].GUID}}
		if in.ResumeKeptFull {
			if steps := keptFullSteps(in, wantIdx); steps != nil {
				plan.Steps = steps
			}
		}
	} else {
		from, targetParent := in.Source[baseSrc], in.Target[baseTgt].Name
		prefix := SnapshotPrefix(in.Job)
		for _, s := range in.Source[baseSrc+1 : wantIdx+1] {
			// Another job's snapshots may be pruned under us at any time: skip them.
			if s.Name != in.Want && !strings.HasPrefix(s.Name, prefix) {
				continue
			}
			plan.Steps = append(plan.Steps, Step{
				From: from.Name, FromGUID: from.GUID, TargetParent: targetParent,
				To: s.Name, ToGUID: s.GUID,
			})
			from, targetParent = s, s.Name
		}
	}

	first := &plan.Steps[0]
	for _, p := range in.Partials {
		if first.Resume == nil && p.Resumable() && p.Name == first.To &&
			p.SourceGUID == first.ToGUID && p.ParentGUID == first.FromGUID {
			p := p
			first.Resume = &p
			continue
		}
		plan.Discard = append(plan.Discard, p)
	}
	return plan, nil
}

// matchSource finds the source snapshot a target snapshot is a copy of:
// btrfs and dir record the sender's identity as ReceivedGUID, ZFS keeps the guid.
func matchSource(t activities.Snapshot, sourceIdx map[string]int) (int, bool) {
	if t.ReceivedGUID != "" {
		if j, ok := sourceIdx[t.ReceivedGUID]; ok {
			return j, true
		}
	}
	j, ok := sourceIdx[t.GUID]
	return j, ok
}

func names(snaps []activities.Snapshot) []string {
	out := make([]string, len(snaps))
	for i, s := range snaps {
		out[i] = s.Name
	}
	return out
}

// orderBySeq returns snaps oldest first by Seq, the order the filesystem
// made (source) or committed (target) them in, which no clock stepped back
// can change. Snapshots without a Seq (made before hosts reported one, or
// recorded in old histories) come first and keep the order they were given
// in, so the same input always gives the same order.
func orderBySeq(snaps []activities.Snapshot) []activities.Snapshot {
	out := slices.Clone(snaps)
	slices.SortStableFunc(out, func(a, b activities.Snapshot) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}
