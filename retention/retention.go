package retention

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/ferry-nas/ferry/config"
)

// Policy is what one side of a job keeps.
type Policy struct {
	// Grid is the job's grid for this side; the zero Grid has no buckets.
	Grid config.Grid
	// KeepLast keeps the job's KeepLast newest snapshots whatever the grid
	// says; 0 adds nothing.
	KeepLast int
}

// IsZero reports whether the policy keeps everything: no grid, no KeepLast.
func (p Policy) IsZero() bool { return p.Grid.IsZero() && p.KeepLast == 0 }

// Protection names a snapshot that is kept whatever the policy says, and
// why (for instance Cursor("share01"), ReasonReceived, ReasonBase,
// ReasonInFlight).
type Protection struct {
	Snapshot string
	Reason   string
}

// Protection reasons the prune step will pass.
const (
	// ReasonReceived: the target's last received snapshot (received.<job>).
	ReasonReceived = "last received"
	// ReasonBase: the base of a pending or kept resumable receive step.
	ReasonBase = "base of a resumable receive"
	// ReasonInFlight: a snapshot one of the job's streams is sending or
	// receiving, or the base it is sent on.
	ReasonInFlight = "in flight"
)

// Cursor is the protection reason of job's replication cursor on the
// source (the mark cursor.<job>). Every job reading the source protects its
// own, so one job's policy never removes another job's base.
func Cursor(job string) string { return "cursor." + job }

// Input is one side of one job.
type Input struct {
	// Job is the job whose policy is applied; only its own snapshots
	// (ferry_<Job>_<time>) can be deleted.
	Job string
	// Snapshots is every snapshot name on this side of the dataset, in any
	// order; duplicates count once.
	Snapshots []string
	// Now is the time of the decision (workflow.Now in the workflow): a
	// snapshot whose name says it is newer is kept and not used as the
	// newest.
	Now       time.Time
	Policy    Policy
	Protected []Protection
}

// Rule is why a snapshot is kept or deleted.
type Rule string

const (
	// RuleNotFerry: not a name ferry makes; never touched.
	RuleNotFerry Rule = "not-ferry"
	// RuleOtherJob: another job's snapshot; only that job's policy applies.
	RuleOtherJob Rule = "other-job"
	// RuleProtected: named in Input.Protected.
	RuleProtected Rule = "protected"
	// RuleFuture: its name's time is after Input.Now.
	RuleFuture Rule = "future"
	// RuleNewest: the job's newest snapshot, from which the buckets count.
	RuleNewest Rule = "newest"
	// RuleKeepLast: one of the Policy.KeepLast newest.
	RuleKeepLast Rule = "keep-last"
	// RuleBucket: the oldest snapshot in its bucket period.
	RuleBucket Rule = "bucket"
	// RuleNoPolicy: the policy is zero, everything is kept.
	RuleNoPolicy Rule = "no-policy"
	// RuleSuperseded (delete): its bucket period keeps an older snapshot.
	RuleSuperseded Rule = "superseded"
	// RuleExpired (delete): older than the whole grid (with no grid: not
	// among the KeepLast newest).
	RuleExpired Rule = "expired"
)

// Slot is one period of one grid bucket: the snapshots whose age (the
// newest snapshot's time minus theirs) is in [From, To).
type Slot struct {
	// Bucket is the 1-based position of the COUNTxPERIOD term in the grid;
	// 0 when the snapshot is in no slot.
	Bucket int
	// N is the 1-based period within the bucket, 1 the newest.
	N int
	// Count and Period are the bucket's.
	Count  int
	Period time.Duration
	// From and To bound the ages in the slot.
	From, To time.Duration
}

func (s Slot) String() string {
	return fmt.Sprintf("bucket %dx%s period %d of %d (%s to %s before the newest)",
		s.Count, formatDuration(s.Period), s.N, s.Count, formatDuration(s.From), formatDuration(s.To))
}

// Decision is what happens to one snapshot.
type Decision struct {
	Snapshot string
	// Job and Time are read from the name; empty and zero when it is not
	// a ferry snapshot name.
	Job  string
	Time time.Time
	Keep bool
	Rule Rule
	// Protected lists the snapshot's protection reasons, sorted.
	Protected []string
	// Slot is the job's snapshot's place in the grid (Bucket 0: none).
	Slot Slot
	// Why says it in one line for people.
	Why string
}

// Result is the decision for every snapshot: the job's own, oldest first
// (by the time in their names, then by name), then every other name, sorted.
type Result struct {
	Decisions []Decision
	// Newest is the job's newest snapshot the buckets count from; empty
	// when the job has none that is not in the future.
	Newest string
	// Kept and Deleted count the decisions.
	Kept, Deleted int
}

// Deletions returns the names to delete, oldest first.
func (r Result) Deletions() []string {
	var out []string
	for _, d := range r.Decisions {
		if !d.Keep {
			out = append(out, d.Snapshot)
		}
	}
	return out
}

// Apply decides, for every snapshot of Input.Snapshots, keep or delete and
// why, by the rule in the package documentation. It is deterministic: the
// result depends on the set of snapshots and protections, never on their
// order, and it reads no clock. It errs only on an invalid input.
func Apply(in Input) (Result, error) {
	if err := in.check(); err != nil {
		return Result{}, err
	}
	protected := protections(in.Protected)
	names := slices.Clone(in.Snapshots)
	slices.Sort(names)
	names = slices.Compact(names)

	var own, others []Decision
	for _, name := range names {
		d := Decision{Snapshot: name, Protected: protected[name]}
		job, t, ok := ParseName(name)
		switch {
		case !ok:
			d.Keep, d.Rule, d.Why = true, RuleNotFerry, "not a ferry snapshot name: never touched"
			others = append(others, d)
		case job != in.Job:
			d.Job, d.Time = job, t
			d.Keep, d.Rule = true, RuleOtherJob
			d.Why = fmt.Sprintf("job %s's snapshot: only that job's policy applies to it", job)
			others = append(others, d)
		default:
			d.Job, d.Time = job, t
			own = append(own, d)
		}
	}
	slices.SortFunc(own, func(a, b Decision) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Snapshot, b.Snapshot)
	})

	// Snapshots from the future sort last; the newest is the one before them.
	current := len(own)
	for current > 0 && own[current-1].Time.After(in.Now) {
		current--
	}
	res := Result{}
	if current > 0 {
		res.Newest = own[current-1].Snapshot
	}
	grid := newGrid(in.Policy.Grid)
	var anchor time.Time
	if current > 0 {
		anchor = own[current-1].Time
	}
	keeper := map[[2]int]string{} // slot -> the oldest snapshot in it
	for i := range own {
		d := &own[i]
		if i >= current {
			d.Keep, d.Rule = true, RuleFuture
			d.Why = fmt.Sprintf("its time %s is after now (%s): a clock was wrong when it was made; kept, and not counted from",
				d.Time.Format(time.RFC3339Nano), in.Now.UTC().Format(time.RFC3339Nano))
			continue
		}
		d.Slot = grid.slot(anchor.Sub(d.Time))
		fromNewest := current - 1 - i // 0 for the newest
		var isKeeper bool
		var older string
		if d.Slot.Bucket > 0 {
			key := [2]int{d.Slot.Bucket, d.Slot.N}
			older, isKeeper = keeper[key], keeper[key] == ""
			if isKeeper {
				keeper[key] = d.Snapshot
			}
		}
		switch {
		case in.Policy.IsZero():
			d.Keep, d.Rule, d.Why = true, RuleNoPolicy, "no retention policy: everything is kept"
		case fromNewest == 0:
			d.Keep, d.Rule, d.Why = true, RuleNewest, "the job's newest snapshot: the grid counts from it"
		case fromNewest < in.Policy.KeepLast:
			d.Keep, d.Rule = true, RuleKeepLast
			d.Why = fmt.Sprintf("one of the %d newest (keep_last)", in.Policy.KeepLast)
		case isKeeper:
			d.Keep, d.Rule, d.Why = true, RuleBucket, "the oldest in "+d.Slot.String()
		case d.Slot.Bucket > 0:
			d.Rule, d.Why = RuleSuperseded, d.Slot.String()+" keeps the older "+older
		case grid.span == 0:
			d.Rule = RuleExpired
			d.Why = fmt.Sprintf("not one of the %d newest (keep_last) and there is no grid", in.Policy.KeepLast)
		default:
			d.Rule = RuleExpired
			d.Why = fmt.Sprintf("%s before the newest, older than the grid's %s", formatDuration(anchor.Sub(d.Time)), formatDuration(grid.span))
		}
	}
	// Protection wins over every rule above, deletes included.
	for _, ds := range [][]Decision{own, others} {
		for i := range ds {
			d := &ds[i]
			if len(d.Protected) == 0 || d.Rule == RuleNotFerry || d.Rule == RuleOtherJob {
				continue
			}
			d.Keep, d.Rule = true, RuleProtected
			d.Why = "protected: " + strings.Join(d.Protected, ", ")
			if d.Slot.Bucket > 0 {
				d.Why += "; in " + d.Slot.String()
			}
		}
	}
	res.Decisions = append(own, others...)
	for _, d := range res.Decisions {
		if d.Keep {
			res.Kept++
		} else {
			res.Deleted++
		}
	}
	return res, nil
}

func (in Input) check() error {
	var errs []error
	if in.Job == "" {
		errs = append(errs, errors.New("retention: no job given: only a job's own snapshots can be pruned"))
	}
	if in.Now.IsZero() {
		errs = append(errs, fmt.Errorf("retention: job %s: no time given for now (pass workflow.Now)", in.Job))
	}
	if in.Policy.KeepLast < 0 {
		errs = append(errs, fmt.Errorf("retention: job %s: keep_last %d is negative; use 0 or more", in.Job, in.Policy.KeepLast))
	}
	var span time.Duration
	for i, b := range in.Policy.Grid.Buckets {
		if b.Count < 1 || b.Period <= 0 {
			errs = append(errs, fmt.Errorf("retention: job %s: grid %q bucket %d is %dx%s; COUNT and PERIOD must be positive (config.ParseGrid makes valid grids)",
				in.Job, in.Policy.Grid.Text, i+1, b.Count, b.Period))
			continue
		}
		if time.Duration(b.Count) > (time.Duration(math.MaxInt64)-span)/b.Period {
			errs = append(errs, fmt.Errorf("retention: job %s: grid %q spans more than 290 years", in.Job, in.Policy.Grid.Text))
			break
		}
		span += time.Duration(b.Count) * b.Period
	}
	for _, p := range in.Protected {
		if p.Reason == "" {
			errs = append(errs, fmt.Errorf("retention: job %s: protection of %s has no reason; say why it is kept", in.Job, p.Snapshot))
		}
	}
	return errors.Join(errs...)
}

// protections gathers each snapshot's reasons, sorted and once each.
func protections(ps []Protection) map[string][]string {
	out := map[string][]string{}
	for _, p := range ps {
		out[p.Snapshot] = append(out[p.Snapshot], p.Reason)
	}
	for _, p := range ps {
		r := out[p.Snapshot]
		slices.Sort(r)
		out[p.Snapshot] = slices.Compact(r)
	}
	return out
}

// gridSlots places ages in a validated grid's periods.
type gridSlots struct {
	buckets []config.Bucket
	offsets []time.Duration // the age each bucket starts at
	span    time.Duration
}

func newGrid(g config.Grid) gridSlots {
	s := gridSlots{buckets: g.Buckets}
	for _, b := range g.Buckets {
		s.offsets = append(s.offsets, s.span)
		s.span += time.Duration(b.Count) * b.Period
	}
	return s
}

// slot returns the period holding age, or the zero Slot past the grid.
func (s gridSlots) slot(age time.Duration) Slot {
	for i, b := range s.buckets {
		off := s.offsets[i]
		if age < off || age-off >= time.Duration(b.Count)*b.Period {
			continue
		}
		n := int((age - off) / b.Period)
		from := off + time.Duration(n)*b.Period
		return Slot{Bucket: i + 1, N: n + 1, Count: b.Count, Period: b.Period, From: from, To: from + b.Period}
	}
	return Slot{}
}

// formatDuration writes d in the grid's units, largest first: 30d, 1d12h, 90m.
func formatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		name string
		d    time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}} {
		if n := d / u.d; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.d
		}
	}
	if d > 0 || b.Len() == 0 {
		b.WriteString(d.String())
	}
	return b.String()
}
