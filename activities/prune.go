package activities

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/logging"
	"github.com/ferry-nas/ferry/retention"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/transfer"
)

// sendRef is what an open send session reads: prune keeps both snapshots.
type sendRef struct {
	Dataset, From, To string
}

// Prune applies the job's retention grid to this host's side of the job:
// every snapshot gets a verdict with its reasons, and unless DryRun the
// ones the grid drops and nothing protects are destroyed, oldest first. A
// snapshot that fails to be destroyed is reported and the rest continue.
// Protected whatever the grid says: every mark on the dataset (every job's
// cursor and received mark), the job's snapshots newer than its own mark
// (pending), the bases of partial receives and what the other side asks to
// keep (Protect), snapshots open send sessions stream, and every snapshot
// that is not this job's.
func (h *Host) Prune(ctx context.Context, in PruneInput) (PruneResult, error) {
	log := h.log(ctx, in.Job, "prune").With(zap.String("side", in.Side), zap.String("dataset", in.Dataset))
	res := PruneResult{Host: h.Name, Backend: h.Backend.Kind(), Dataset: in.Dataset, Grid: in.Grid, DryRun: in.DryRun}
	snaps, err := h.Backend.ListSnapshots(ctx, in.Dataset)
	if err != nil {
		return res, h.fail(log, "list snapshots", err)
	}
	marks, err := h.Backend.Marks(ctx, in.Dataset)
	if err != nil {
		return res, h.fail(log, "read marks", err)
	}
	partials, err := h.Backend.Partials(ctx, in.Dataset)
	if err != nil {
		return res, h.fail(log, "list partial receives", err)
	}
	res.Partials = partialsOf(partials)

	verdicts, err := h.decide(in, snaps, marks, partials)
	if err != nil {
		return res, h.failAs(log, ErrInvalid, "prune", err)
	}
	for i := range verdicts {
		v := &verdicts[i]
		if v.Keep {
			res.Kept++
			continue
		}
		if in.DryRun {
			res.Pruned++
			continue
		}
		if ctx.Err() != nil {
			// Out of time (timeouts.host) or cancelled: what is deleted
			// stays deleted; the next prune decides again from what is left.
			return res, h.fail(log, "prune", storage.Wrap(ctx.Err(), storage.KindTemporary, "prune", in.Dataset, v.Name))
		}
		rule := v.Reasons[0]
		if err := h.Backend.DestroySnapshot(ctx, in.Dataset, v.Name); err != nil {
			v.Keep, v.Error = true, err.Error()
			res.Failed++
			res.Kept++
			log.Warn("could not prune snapshot; it stays, the next prune tries again", logging.Snapshot(v.Name),
				zap.String("rule", rule.Rule), zap.Error(err))
			continue
		}
		v.Deleted = true
		res.Pruned++
		log.Info("pruned snapshot", logging.Snapshot(v.Name), zap.String("rule", rule.Rule), zap.String("why", rule.Detail))
	}
	res.Snapshots = verdicts
	log.Info("prune done", zap.Bool("dry_run", in.DryRun), zap.String("grid", in.Grid),
		zap.Int("pruned", res.Pruned), zap.Int("kept", res.Kept), zap.Int("failed", res.Failed))
	return res, nil
}

// decide gives every snapshot (oldest first) its verdict: the protections
// are gathered here from the host's state, the grid is retention.Apply's.
func (h *Host) decide(in PruneInput, snaps []storage.Snapshot, marks map[string]string, partials []storage.Partial) ([]SnapshotVerdict, error) {
	grid, err := config.ParseGrid(in.Grid)
	if err != nil {
		return nil, fmt.Errorf("job %s: the %s's retention grid %q: %w", in.Job, in.Side, in.Grid, err)
	}
	protect := map[string][]Reason{} // snapshot name -> why it stays
	add := func(name string, r Reason) {
		if name != "" && !slices.Contains(protect[name], r) {
			protect[name] = append(protect[name], r)
		}
	}
	byGUID := map[string]string{}
	for _, s := range snaps {
		byGUID[s.GUID] = s.Name
		if s.ReceivedGUID != "" {
			byGUID[s.ReceivedGUID] = s.Name
		}
	}

	own := MarkName(MarkCursor, in.Job)
	if in.Side == SideTarget {
		own = MarkName(MarkReceived, in.Job)
	}
	for _, m := range sortedKeys(marks) {
		switch kind, job, _ := strings.Cut(m, "."); kind {
		case MarkCursor:
			add(marks[m], Reason{RuleCursor, fmt.Sprintf("the replication cursor of job %s (%s)", job, m)})
		case MarkReceived:
			add(marks[m], Reason{RuleReceived, fmt.Sprintf("the last snapshot job %s received (%s)", job, m)})
		default:
			add(marks[m], Reason{RuleMark, "named by mark " + m})
		}
	}
	for _, p := range partials {
		add(byGUID[p.ParentGUID], Reason{RulePartialBase, fmt.Sprintf("the base of the partial receive of %s (%s)", p.Name, p.ID)})
	}
	for _, p := range in.Protect {
		add(byGUID[p.GUID], Reason{p.Rule, p.Detail})
	}
	for _, s := range h.openSends(in.Dataset) {
		add(s.To, Reason{RuleInFlight, "an open send session streams it"})
		add(s.From, Reason{RuleInFlight, fmt.Sprintf("the base of the open send session of %s", s.To)})
	}
	// The job's snapshots after its own mark (by Seq, the host's order) are
	// not replicated (source) or not marked (target) yet: a run in flight
	// may be sending them.
	markAt := slices.IndexFunc(snaps, func(s storage.Snapshot) bool { return s.Name == marks[own] })
	for i, s := range snaps {
		if job, _, ok := retention.ParseName(s.Name); !ok || job != in.Job || i <= markAt {
			continue
		}
		switch {
		case markAt < 0:
			add(s.Name, Reason{RulePending, "no " + own + " mark yet: the job has not finished a replication on this side"})
		case in.Side == SideTarget:
			add(s.Name, Reason{RulePending, "newer than " + own + ": not marked yet"})
		default:
			add(s.Name, Reason{RulePending, "newer than " + own + ": not replicated yet"})
		}
	}

	names := make([]string, len(snaps))
	var protected []retention.Protection
	for i, s := range snaps {
		names[i] = s.Name
		for _, r := range protect[s.Name] {
			protected = append(protected, retention.Protection{Snapshot: s.Name, Reason: r.Detail})
		}
	}
	decided, err := retention.Apply(retention.Input{Job: in.Job, Snapshots: names, Now: in.Now,
		Policy: retention.Policy{Grid: grid}, Protected: protected})
	if err != nil {
		return nil, err
	}
	byName := make(map[string]retention.Decision, len(decided.Decisions))
	for _, d := range decided.Decisions {
		byName[d.Snapshot] = d
	}

	out := make([]SnapshotVerdict, len(snaps))
	for i, s := range snaps {
		d := byName[s.Name]
		v := SnapshotVerdict{Name: s.Name, GUID: s.GUID, ReceivedGUID: s.ReceivedGUID, DatasetGUID: s.DatasetGUID,
			Time: s.CreatedAt, Job: d.Job, Keep: d.Keep}
		if !d.Time.IsZero() {
			v.Time, v.TimeFromName = d.Time, true
		}
		switch d.Rule {
		case retention.RuleProtected:
			v.Reasons = protect[s.Name]
			if d.Slot.Bucket > 0 {
				v.Reasons = append(v.Reasons, Reason{RuleBucket, "in " + d.Slot.String()})
			}
		default:
			v.Reasons = append([]Reason{{string(d.Rule), d.Why}}, protect[s.Name]...)
		}
		out[i] = v
	}
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// recordSend remembers what an open send session reads, for prune.
func (h *Host) recordSend(token string, ref sendRef) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sends == nil {
		h.sends = map[string]sendRef{}
	}
	h.sends[token] = ref
}

// openSends lists the send sessions of dataset the data server still holds
// open, forgetting the others.
func (h *Host) openSends(dataset string) []sendRef {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []sendRef
	for t, ref := range h.sends {
		info, ok := h.Sessions.Session(t)
		if !ok || info.State == transfer.SessionComplete || info.State == transfer.SessionRevoked || !time.Now().Before(info.Expires) {
			delete(h.sends, t)
			continue
		}
		if ref.Dataset == dataset {
			out = append(out, ref)
		}
	}
	return out
}
