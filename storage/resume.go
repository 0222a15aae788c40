package storage

import (
	"errors"

	"github.com/ferry-nas/ferry/resume"
)

// ResumeMode is a job's stream.resume: how a target keeps an interrupted
// receive resumable.
type ResumeMode string

const (
	// ResumeAuto resumes interrupted streams in the way the backend supports
	// best: natively where it can, otherwise by offset. The zero value means
	// the same.
	ResumeAuto ResumeMode = "auto"
	// ResumeStaged spools the stream on the target and applies it only when
	// complete, so any backend can resume by offset.
	ResumeStaged ResumeMode = "staged"
	// ResumeOff restarts an interrupted step from byte 0.
	ResumeOff ResumeMode = "off"
)

// ErrResumeRefused is in the chain of a send's error when the source cannot
// continue a native resume token (zfs: the token's snapshot or incremental
// base is gone or is another snapshot now, or the token is corrupt): no
// retry helps; the target's partial must be aborted and the step sent
// again from byte 0.
var ErrResumeRefused = errors.New("the source cannot continue this resume token")

// ResumeModes lists the valid modes, for messages.
var ResumeModes = []ResumeMode{ResumeAuto, ResumeStaged, ResumeOff}

// Valid reports whether m is one of ResumeModes or empty (auto).
func (m ResumeMode) Valid() bool {
	switch m {
	case "", ResumeAuto, ResumeStaged, ResumeOff:
		return true
	}
	return false
}

// ReceiveOrigin is what a receive is of: the snapshot, the source snapshot it
// comes from and, for an incremental, the base it is applied on here. A
// partial receive records it so that only the same receive continues it.
type ReceiveOrigin struct {
	// Name is the snapshot being received.
	Name string `json:"name"`
	// SourceGUID is the source snapshot's identity.
	SourceGUID string `json:"source_guid"`
	// Parent is the incremental base's name on the target; empty for a full receive.
	Parent string `json:"target_parent,omitempty"`
	// ParentGUID is the target base's own identity (its Snapshot.GUID), so
	// that a base destroyed and received again under the same name is
	// told apart. Empty in partials written before ferry recorded it.
	ParentGUID string `json:"target_parent_guid,omitempty"`
}

// OriginOf is the origin of req, whose base (if any) has target identity parentGUID.
func OriginOf(req ReceiveRequest, parentGUID string) ReceiveOrigin {
	return ReceiveOrigin{Name: req.Name, SourceGUID: req.SourceGUID, Parent: req.Parent, ParentGUID: parentGUID}
}

// HeldPartial is a resumable partial receive as the target holds it: what it
// is of and how far it is durable.
type HeldPartial struct {
	Origin   ReceiveOrigin
	Position resume.Position
}

// CheckResume is the one decision every backend takes before a receive
// touches anything: continue the partial it holds, start over, or refuse.
// want is the request's origin, from the position the stream starts at,
// held the resumable partial of that name (nil when there is none).
//
//   - An unknown req.Mode is refused.
//   - Without req.Resume the stream must start at offset 0; the receive
//     starts over (the caller discards any partial of that name).
//   - With req.Resume and a held partial, the partial must be of the same
//     snapshot, from the same source snapshot, on the same base (name and
//     identity), and the stream must start exactly at its durable position:
//     then the receive continues it.
//   - With req.Resume and nothing held, only a stream from offset 0 starts
//     over; any other offset is refused.
//
// A refusal is KindInvalid and the caller must leave everything as it is,
// partial included: bad input never loses data.
func CheckResume(op string, req ReceiveRequest, want ReceiveOrigin, from resume.Position, held *HeldPartial) (continues bool, err error) {
	ds, name := req.Dataset, req.Name
	refuse := func(fix, format string, args ...any) (bool, error) {
		return false, Errorf(KindInvalid, op, ds, name, fix, format, args...)
	}
	if !req.Mode.Valid() {
		return refuse("set stream.resume to auto, staged or off", "unknown resume mode %q", req.Mode)
	}
	if !req.Resume {
		if from.Offset != 0 {
			return refuse("receive with resume set, or from offset 0",
				"stream starts at offset %d without resume", from.Offset)
		}
		return false, nil
	}
	if held == nil {
		if from.Offset != 0 {
			return refuse("receive from offset 0 without resume",
				"stream starts at offset %d but there is no resumable partial receive", from.Offset)
		}
		return false, nil
	}
	const fixOther = "this partial belongs to another receive: discard it or let the planner do so, then receive without resume"
	got := held.Origin
	switch {
	case got.Name != want.Name:
		return refuse(fixOther, "the partial receive is of snapshot %q, not %q", got.Name, want.Name)
	case got.SourceGUID != want.SourceGUID:
		return refuse(fixOther, "the partial receive is of source snapshot %s, not %s", orNone(got.SourceGUID), orNone(want.SourceGUID))
	case got.Parent != want.Parent:
		return refuse(fixOther, "the partial receive is based on %s, not %s", baseName(got.Parent), baseName(want.Parent))
	case got.ParentGUID != "" && got.ParentGUID != want.ParentGUID:
		return refuse(fixOther, "the partial receive is based on %q with identity %s, but %q is now %s (destroyed and received again?)",
			got.Parent, got.ParentGUID, want.Parent, orNone(want.ParentGUID))
	case !from.Same(held.Position):
		return refuse("resume from the partial's position, or receive without resume",
			"stream starts at offset %d (%s state %.8x…) but the partial receive is durable up to offset %d (%s state %.8x…)",
			from.Offset, from.Algorithm(), from.HashState, held.Position.Offset, held.Position.Algorithm(), held.Position.HashState)
	}
	return true, nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func baseName(parent string) string {
	if parent == "" {
		return "nothing (a full receive)"
	}
	return "base " + `"` + parent + `"`
}
