package storage

import "fmt"

// AnomalyKind says why something in ferry's area of a dataset is neither
// a snapshot ferry can use nor a partial receive it may discard.
type AnomalyKind string

const (
	// Modified: a snapshot ferry committed whose content (or read-only
	// state) changed afterwards. It is never used as a base, sent, listed
	// or reported as in sync, and never removed by ferry.
	Modified AnomalyKind = "modified"
	// Foreign: something ferry did not make (a hand-made subvolume or
	// directory, another tool's leftover). Reported, never removed.
	Foreign AnomalyKind = "foreign"
)

// Anomaly is one modified snapshot or foreign item in ferry's area of a
// dataset, as greet reports it.
type Anomaly struct {
	Dataset string      `json:"dataset"`
	Kind    AnomalyKind `json:"kind"`
	// Name is the snapshot name (or entry name) the item occupies: a
	// receive or snapshot of that name is blocked by it.
	Name string `json:"name"`
	// ID is the item's path relative to the backend's root.
	ID string `json:"id"`
	// What says in words what changed (modified) or what it is (foreign).
	What string `json:"what"`
}

// Fix tells the administrator what to do about the anomaly.
func (a Anomaly) Fix() string {
	if a.Kind == Modified {
		return fmt.Sprintf("%s was changed after ferry committed it and no longer matches its source: ferry will not use it, "+
			"send on top of it or remove it. Keep what you need from it, then move it out of %s/ or delete it (a received snapshot "+
			"is a replica: that deletes this modified replica, every other snapshot stays) and run the job again: "+
			"ferry plans from the newest intact snapshot", a.ID, MetaDir)
	}
	return fmt.Sprintf("ferry did not make %s and will not remove it: move it out of %s/ (it is not a replica ferry made)", a.ID, MetaDir)
}

// Err is the Conflict an operation that the anomaly blocks fails with.
func (a Anomaly) Err(op string) *Error {
	return Errorf(KindConflict, op, a.Dataset, a.Name, a.Fix(), "%s %s: %s", a.Kind, a.ID, a.What)
}
