package workflows

import (
	"fmt"
	"strings"
)

// independentReceives lists the backends whose received snapshots do not
// depend on each other: a snapshot can be received beside newer ones, so
// those stay when the plan continues from an older base. (ZFS datasets are
// linear: an incremental only applies onto the newest snapshot.)
var independentReceives = map[string]bool{"dir": true, "btrfs": true}

// splitTarget looks at the target snapshots newer than the base (all of
// them when there is none, baseTgt < 0). Those received from this source
// that the source has deleted since are history the target keeps: their
// names are returned, oldest first. Anything else there — a replica of
// another source, a snapshot made on the target, or history on a backend
// whose receives are not independent — is in the way: a ConflictError
// that says what each one is and never advises deleting a replica without
// saying that it is one.
func splitTarget(in PlanInput, wantIdx, baseTgt int, sourceIdx map[string]int) ([]string, error) {
	fromHere := receivedFromSource(in, in.Source[wantIdx].DatasetGUID, sourceIdx)
	independent := independentReceives[in.TargetBackend]
	var kept, inWay, described []string
	replicas, ours := 0, 0
	for i := baseTgt + 1; i < len(in.Target); i++ {
		t := in.Target[i]
		switch {
		case fromHere[i] && independent:
			kept = append(kept, t.Name)
			continue
		case fromHere[i]:
			ours++
			described = append(described, t.Name+" (a replica of this source, deleted there; a "+in.TargetBackend+" target only receives on its newest snapshot)")
		case t.ReceivedGUID != "" && t.DatasetGUID != "":
			replicas++
			described = append(described, t.Name+" (a replica received from another source)")
		case t.ReceivedGUID != "":
			replicas++
			described = append(described, t.Name+" (a replica received from a source ferry cannot identify)")
		default:
			described = append(described, t.Name+" (made on the target, not received)")
		}
		inWay = append(inWay, t.Name)
	}
	if len(inWay) == 0 {
		return kept, nil
	}
	ce := &ConflictError{Target: inWay, Described: described}
	if baseTgt >= 0 {
		ce.Reason = fmt.Sprintf("the target holds snapshots newer than the common base %s that the source does not have", in.Target[baseTgt].Name)
	} else {
		ce.Reason = "no common snapshot: the target holds snapshots that did not come from this source"
	}
	switch {
	case replicas+ours > 0:
		are := "1 of them is a replica: removing it destroys that backup"
		if n := replicas + ours; n > 1 {
			are = fmt.Sprintf("%d of them are replicas: removing them destroys those backups", n)
		}
		ce.Fix = "nothing on the target was changed. " + are + " — point the job at another target dataset, or remove them on the target only if no one needs them, then run the job again"
	default:
		ce.Fix = "nothing on the target was changed — none of them is a replica: inspect them, remove or rename them on the target (or choose another target), then run the job again"
	}
	return nil, ce
}

// receivedFromSource says for each target snapshot (oldest first) whether
// it was received from this source: it is a copy of a source snapshot, or
// it records the source's dataset identity, or it was received as an
// incremental onto a snapshot that came from this source (which covers
// replicas received before targets recorded the source dataset).
func receivedFromSource(in PlanInput, sourceDataset string, sourceIdx map[string]int) []bool {
	from := make([]bool, len(in.Target))
	known := map[string]bool{} // ReceivedGUIDs of the target's snapshots from this source
	for i, t := range in.Target {
		_, matched := matchSource(t, sourceIdx)
		received := t.ReceivedGUID != ""
		if matched || (received && sourceDataset != "" && t.DatasetGUID == sourceDataset) ||
			(received && t.ParentGUID != "" && known[t.ParentGUID]) {
			from[i] = true
			if received {
				known[t.ReceivedGUID] = true
			}
		}
	}
	return from
}

// keptNote says in words what a plan that kept target history did, naming
// the hosts: "ferry_x, the cursor, was deleted on nas-a; continuing from
// ferry_w; nas-b keeps it". Empty when nothing was kept.
func keptNote(in ReplicateInput, plan Plan) string {
	n := len(plan.Kept)
	if n == 0 {
		return ""
	}
	cursor := plan.Kept[n-1]
	var b strings.Builder
	if n == 1 {
		fmt.Fprintf(&b, "%s, the cursor, was deleted on %s", cursor, in.Source.Host)
	} else {
		fmt.Fprintf(&b, "%s, the cursor, and %s were deleted on %s", cursor, strings.Join(plan.Kept[:n-1], ", "), in.Source.Host)
	}
	if plan.Base != "" {
		fmt.Fprintf(&b, "; continuing from %s", plan.Base)
	} else if len(plan.Steps) > 0 {
		fmt.Fprintf(&b, "; no snapshot both sides hold is left: sending %s in full", plan.Steps[0].To)
	}
	if n == 1 {
		fmt.Fprintf(&b, "; %s keeps its replica of %s as history", in.Target.Host, cursor)
	} else {
		fmt.Fprintf(&b, "; %s keeps its replicas of them as history", in.Target.Host)
	}
	return b.String()
}
