package retention

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-nas/ferry/config"
)

// randomGrid writes a valid grid of 1-4 buckets with non-decreasing periods.
func randomGrid(t *testing.T, r *rand.Rand) config.Grid {
	periods := []string{"1m", "10m", "1h", "6h", "1d", "1w", "30d"}
	var parts []string
	lo := 0
	for range 1 + r.IntN(4) {
		lo += r.IntN(len(periods) - lo)
		parts = append(parts, fmt.Sprintf("%dx%s", 1+r.IntN(30), periods[lo]))
	}
	g, err := config.ParseGrid(strings.Join(parts, " | "))
	require.NoError(t, err)
	return g
}

// randomInput is one side of job "a" with its own snapshots at random times
// (some a second apart, some in the old name format), other jobs' and
// foreign names, a random policy, random protections (some naming
// snapshots that are not there) and a now that is sometimes before the
// newest.
func randomInput(t *testing.T, r *rand.Rand) Input {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var names []string
	at := base
	var newest time.Time
	for range r.IntN(120) {
		at = at.Add(time.Duration(r.Int64N(int64(3*24*time.Hour))) + time.Second)
		newest = at
		if r.IntN(5) == 0 {
			names = append(names, "ferry_a_"+at.Format("20060102T150405Z"))
		} else {
			names = append(names, snap("a", at.Add(time.Duration(r.IntN(1000))*time.Millisecond)))
		}
	}
	for range r.IntN(10) {
		job := []string{"a_b", "b", "a-", "ab"}[r.IntN(4)]
		names = append(names, snap(job, base.Add(time.Duration(r.Int64N(int64(365*24*time.Hour))))))
	}
	names = append(names, []string{"manual", "ferry_a_", ".meta.json"}[:r.IntN(4)]...)

	in := Input{Job: "a", Snapshots: names, Now: newest.Add(time.Duration(r.Int64N(int64(48*time.Hour))) - 6*time.Hour)}
	if newest.IsZero() {
		in.Now = base
	}
	if r.IntN(6) > 0 {
		in.Policy.Grid = randomGrid(t, r)
	}
	if r.IntN(3) == 0 {
		in.Policy.KeepLast = r.IntN(5)
	}
	reasons := []string{Cursor("a"), Cursor("b"), ReasonReceived, ReasonBase, ReasonInFlight}
	for range r.IntN(6) {
		name := "ferry_a_20991231T000000Z" // not among the snapshots
		if len(names) > 0 && r.IntN(4) > 0 {
			name = names[r.IntN(len(names))]
		}
		in.Protected = append(in.Protected, Protection{name, reasons[r.IntN(len(reasons))]})
	}
	return in
}

func shuffled[T any](r *rand.Rand, s []T) []T {
	out := append([]T(nil), s...)
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// TestProperties checks, over 2,000 seeded random inputs, that protected
// snapshots and everything not the job's own are always kept, the newest is
// kept, the result does not depend on the input's order, and pruning what
// was kept again deletes nothing (idempotent).
func TestProperties(t *testing.T) {
	for seed := range uint64(2000) {
		r := rand.New(rand.NewPCG(seed, 8))
		in := randomInput(t, r)
		res, err := Apply(in)
		require.NoError(t, err, "seed %d", seed)

		byName := map[string]Decision{}
		for _, d := range res.Decisions {
			_, dup := byName[d.Snapshot]
			require.False(t, dup, "seed %d: %s decided twice", seed, d.Snapshot)
			byName[d.Snapshot] = d
		}
		for _, n := range in.Snapshots {
			d, ok := byName[n]
			require.True(t, ok, "seed %d: no decision for %s", seed, n)
			if job, _, own := ParseName(n); !own || job != "a" {
				require.True(t, d.Keep, "seed %d: %s is not job a's but was deleted (%s)", seed, n, d.Why)
			}
		}
		require.Len(t, byName, len(res.Decisions))
		for _, p := range in.Protected {
			if d, ok := byName[p.Snapshot]; ok {
				require.True(t, d.Keep, "seed %d: protected %s (%s) deleted: %s", seed, p.Snapshot, p.Reason, d.Why)
			}
		}
		if res.Newest != "" {
			require.True(t, byName[res.Newest].Keep, "seed %d: the newest was deleted", seed)
		}

		// Any order of snapshots and protections gives the same result.
		again := in
		again.Snapshots = shuffled(r, in.Snapshots)
		again.Protected = shuffled(r, in.Protected)
		res2, err := Apply(again)
		require.NoError(t, err)
		require.Equal(t, res, res2, "seed %d: the result depends on the input order", seed)

		// Pruning the survivors deletes nothing more, for the same reasons.
		in.Snapshots = kept(res)
		res3, err := Apply(in)
		require.NoError(t, err)
		require.Zero(t, res3.Deleted, "seed %d: a second pass deleted %v", seed, res3.Deletions())
		for _, d := range res3.Decisions {
			require.Equal(t, byName[d.Snapshot].Rule, d.Rule, "seed %d: %s", seed, d.Snapshot)
		}
	}
}

// TestFanOutCursorsSurviveAnyRuns replicates one source with two jobs, a
// and b, under a small grid: in a seeded random order of runs, b's target
// is sometimes away for long stretches (its cursor lags), a's sometimes
// too. Each run snapshots, advances its cursor if its target is up, and
// prunes the source by its own policy, protecting every job's cursor. Both
// cursors must exist whenever the next run of their job needs them, and a's
// runs never touch b's snapshots nor b's a's.
func TestFanOutCursorsSurviveAnyRuns(t *testing.T) {
	g := grid(t, "3x1h | 2x1d")
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 3))
		held := map[string]bool{}
		cursor := map[string]string{}
		down := map[string]int{} // runs left with the job's target away
		now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		for run := range 300 {
			now = now.Add(time.Duration(1+r.IntN(180)) * time.Minute)
			job := []string{"a", "b"}[r.IntN(2)]
			if down[job] == 0 && r.IntN(20) == 0 {
				down[job] = r.IntN(100)
			}
			if c := cursor[job]; c != "" {
				require.True(t, held[c], "seed %d run %d: job %s's cursor %s is gone", seed, run, job, c)
			}
			name := snap(job, now)
			held[name] = true
			if down[job] > 0 {
				down[job]--
			} else {
				cursor[job] = name
			}
			var names []string
			for n := range held {
				names = append(names, n)
			}
			var protected []Protection
			for _, j := range []string{"a", "b"} {
				if cursor[j] != "" {
					protected = append(protected, Protection{cursor[j], Cursor(j)})
				}
			}
			res, err := Apply(Input{Job: job, Snapshots: names, Now: now, Policy: Policy{Grid: g}, Protected: protected})
			require.NoError(t, err)
			for _, n := range res.Deletions() {
				owner, _, _ := ParseName(n)
				require.Equal(t, job, owner, "seed %d run %d: job %s's prune deleted %s", seed, run, job, n)
				delete(held, n)
			}
			for _, j := range []string{"a", "b"} {
				if c := cursor[j]; c != "" {
					require.True(t, held[c], "seed %d run %d: job %s's cursor %s deleted", seed, run, j, c)
				}
			}
			require.True(t, held[name], "seed %d run %d: the snapshot just made was deleted", seed, run)
		}
	}
}
