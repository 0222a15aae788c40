package retention

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The simulated year: an hourly job for 365 days, 8,760 snapshots, under
// "24x1h | 7x1d | 12x30d" (ages [0,24h) hourly, [24h,8d) daily, [8d,368d)
// 30-daily). The oldest snapshot is 8,759h old: the grid (8,832h) covers it.
const yearHours = 8760

var yearStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// yearName is the snapshot of hour k of the year.
func yearName(k int) string { return snap("share01", yearStart.Add(time.Duration(k)*time.Hour)) }

// agesOf returns the kept snapshots' ages in hours before the newest (hour
// yearHours-1), ascending.
func agesOf(t *testing.T, names []string) []int {
	t.Helper()
	var ages []int
	for _, n := range names {
		_, at, ok := ParseName(n)
		require.True(t, ok, n)
		ages = append(ages, yearHours-1-int(at.Sub(yearStart)/time.Hour))
	}
	slices.Sort(ages)
	return ages
}

func kept(r Result) []string {
	var out []string
	for _, d := range r.Decisions {
		if d.Keep {
			out = append(out, d.Snapshot)
		}
	}
	return out
}

// TestYearOfHourlyAtOnce applies the grid once to the whole year. Each
// period keeps its oldest snapshot:
//   - 24x1h, ages 0..23h, one snapshot per period: 24 kept (0..23);
//   - 7x1d, period j covers ages [24+24j, 48+24j): its oldest is 47+24j,
//     7 kept (47, 71, ..., 191);
//   - 12x30d, period k covers [192+720k, 912+720k): its oldest is 911+720k
//     for k = 0..10, and for k = 11 ([8112, 8832)) the oldest snapshot of
//     all, 8759: 12 kept.
//
// 24 + 7 + 12 = 43 kept, 8,717 deleted.
func TestYearOfHourlyAtOnce(t *testing.T) {
	names := make([]string, yearHours)
	for k := range names {
		names[k] = yearName(k)
	}
	res, err := Apply(Input{Job: "share01", Snapshots: names, Now: yearStart.Add(yearHours * time.Hour),
		Policy: Policy{Grid: grid(t, "24x1h | 7x1d | 12x30d")}})
	require.NoError(t, err)

	want := append(expectedAges(47, 911, 11), 8759)
	assert.Equal(t, want, agesOf(t, kept(res)))
	assert.Equal(t, 43, res.Kept)
	assert.Equal(t, yearHours-43, res.Deleted)
	assert.Equal(t, yearName(yearHours-1), res.Newest)
}

// TestYearOfHourlyRunByRun prunes after every hourly run, as the prune step
// will, so each run sees only what the previous ones kept. The kept
// snapshots settle one period apart and slide through the grid together:
//   - the first snapshot (age 8759 at the end) is the oldest of every period
//     it is in, so it is never deleted;
//   - a 1d period keeps a new arrival only when its keeper slides out, so the
//     daily keepers are 24h apart, in the first snapshot's phase
//     (8759 mod 24 = 23): 47, 71, ..., 191, 7 kept;
//   - likewise the 30d keepers are 720h apart down from 8759: 8759, 8039,
//     ..., 839 (8759-11*720), 12 kept, one in each 30d period;
//   - the 24 hourly ones, 0..23.
//
// 24 + 7 + 12 = 43 kept after the year: the same count as at once, but
// not the same 30d keepers, since each run only sees what the runs before
// it kept.
func TestYearOfHourlyRunByRun(t *testing.T) {
	g := grid(t, "24x1h | 7x1d | 12x30d")
	var held []string
	for k := range yearHours {
		held = append(held, yearName(k))
		now := yearStart.Add(time.Duration(k)*time.Hour + time.Minute)
		// The cursor is the snapshot this run replicated.
		res, err := Apply(Input{Job: "share01", Snapshots: held, Now: now, Policy: Policy{Grid: g},
			Protected: []Protection{{yearName(k), Cursor("share01")}}})
		require.NoError(t, err)
		held = kept(res)
		require.LessOrEqual(t, len(held), 44, "hour %d: the grid bounds what is kept", k)
	}
	want := expectedAges(47, 839, 12)
	assert.Equal(t, want, agesOf(t, held))
	assert.Len(t, held, 43)
}

// expectedAges is the hourly ages 0..23, the 7 daily ones from firstDaily
// 24h apart, and n30 30-daily ones from first30d, 720h apart.
func expectedAges(firstDaily, first30d, n30 int) []int {
	var ages []int
	for a := range 24 {
		ages = append(ages, a)
	}
	for j := range 7 {
		ages = append(ages, firstDaily+24*j)
	}
	for k := range n30 {
		ages = append(ages, first30d+720*k)
	}
	return ages
}
