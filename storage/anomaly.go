package storage

import (
	"fmt"
	"strings"
)

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
	// Remove, for a modified snapshot, is the shell command (absolute
	// paths) that removes every file the backend keeps for it, in the
	// order ferry itself would; empty when the backend cannot say.
	Remove string `json:"remove,omitempty"`
	// Origin says whether a modified snapshot was received (a replica) or
	// made here; empty when the backend could not tell.
	Origin Origin `json:"origin,omitempty"`
}

// Origin is where a snapshot came from.
type Origin string

const (
	// OriginReceived: a replica, received from another host.
	OriginReceived Origin = "received"
	// OriginLocal: made here, of the host's live dataset.
	OriginLocal Origin = "local"
)

// Fix tells the administrator what to do about the anomaly: the action
// first, then what it means.
func (a Anomaly) Fix() string {
	if a.Kind != Modified {
		return fmt.Sprintf("ferry did not make %s and will not remove it: move it out of %s/ (it is not a replica ferry made)", a.ID, MetaDir)
	}
	var b strings.Builder
	b.WriteString("remove it, then run the job again (ferry plans from the newest intact snapshot)")
	if a.Remove != "" {
		fmt.Fprintf(&b, "; as root: %s — every one of these files is part of the snapshot, removing only some leaves it broken", a.Remove)
	} else {
		fmt.Fprintf(&b, "; it is %s under %s/", a.ID, MetaDir)
	}
	switch a.Origin {
	case OriginReceived:
		fmt.Fprintf(&b, ". %s is a replica (received from the source): removing it deletes only this modified copy of %s; the source's snapshot, if it still has it, and every other replica stay", a.Name, a.Name)
	case OriginLocal:
		fmt.Fprintf(&b, ". %s is a snapshot made on this host of its live dataset: removing it deletes it here; replicas of it on other hosts stay", a.Name)
	default:
		fmt.Fprintf(&b, ". If %s is a replica (received from another host), removing it deletes only this modified copy; every other snapshot stays", a.Name)
	}
	b.WriteString(". Copy out anything you need from it first: ferry will not use it, send on top of it or remove it itself")
	return b.String()
}

// ShellCommand joins the words of a command for a shell, quoting those
// that need it.
func ShellCommand(words ...string) string {
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = shellQuote(w)
	}
	return strings.Join(out, " ")
}

func shellQuote(w string) string {
	if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:@%+=,") == "" {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}

// Err is the Conflict an operation that the anomaly blocks fails with.
func (a Anomaly) Err(op string) *Error {
	return Errorf(KindConflict, op, a.Dataset, a.Name, a.Fix(), "%s %s: %s", a.Kind, a.ID, a.What)
}
