package retention

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-nas/ferry/config"
)

// t0 is the newest snapshot's time in most cases below.
var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// snap is job's snapshot name at t, as workflows.SnapshotName writes it.
func snap(job string, t time.Time) string {
	return "ferry_" + job + "_" + t.UTC().Format("20060102T150405.000Z")
}

// ago is job a's snapshot d before t0.
func ago(d time.Duration) string { return snap("a", t0.Add(-d)) }

func grid(t *testing.T, s string) config.Grid {
	t.Helper()
	g, err := config.ParseGrid(s)
	require.NoError(t, err)
	return g
}

func rules(r Result) map[string]Rule {
	out := map[string]Rule{}
	for _, d := range r.Decisions {
		out[d.Snapshot] = d.Rule
	}
	return out
}

func TestRules(t *testing.T) {
	const ms = time.Millisecond
	h, d := time.Hour, 24*time.Hour
	cases := []struct {
		name      string
		grid      string
		keepLast  int
		now       time.Time // t0 when zero
		snapshots []string
		protected []Protection
		want      map[string]Rule
		newest    string
	}{
		{
			name: "period boundaries: ages are [from, to), the oldest of each period is kept",
			grid: "3x1h",
			snapshots: []string{ago(0), ago(30 * time.Minute), ago(h - ms), ago(h), ago(2*h - time.Minute),
				ago(2 * h), ago(3*h - ms), ago(3 * h), ago(3*h + ms)},
			want: map[string]Rule{
				ago(0): RuleNewest, ago(30 * time.Minute): RuleSuperseded, ago(h - ms): RuleBucket,
				ago(h): RuleSuperseded, ago(2*h - time.Minute): RuleBucket,
				ago(2 * h): RuleSuperseded, ago(3*h - ms): RuleBucket,
				ago(3 * h): RuleExpired, ago(3*h + ms): RuleExpired,
			},
			newest: ago(0),
		},
		{
			name:      "empty periods keep nothing and take nothing from the others",
			grid:      "4x1d",
			snapshots: []string{ago(0), ago(3*d + 12*h), ago(4 * d)},
			want:      map[string]Rule{ago(0): RuleNewest, ago(3*d + 12*h): RuleBucket, ago(4 * d): RuleExpired},
			newest:    ago(0),
		},
		{
			name: "buckets follow each other: 2x1h covers [0, 2h), 2x1d [2h, 50h)",
			grid: "2x1h | 2x1d",
			snapshots: []string{ago(0), ago(h), ago(90 * time.Minute), ago(2 * h), ago(23 * h), ago(d),
				ago(47 * h), ago(50 * h), ago(3 * d)},
			want: map[string]Rule{
				ago(0): RuleNewest, ago(h): RuleSuperseded, ago(90 * time.Minute): RuleBucket,
				ago(2 * h): RuleSuperseded, ago(23 * h): RuleSuperseded, ago(d): RuleBucket,
				ago(47 * h): RuleBucket, ago(50 * h): RuleExpired, ago(3 * d): RuleExpired,
			},
			newest: ago(0),
		},
		{
			name:      "keep_last adds the newest N to the grid",
			grid:      "1x1h",
			keepLast:  3,
			snapshots: []string{ago(0), ago(10 * time.Minute), ago(20 * time.Minute), ago(2 * h), ago(3 * h)},
			want: map[string]Rule{ago(0): RuleNewest, ago(10 * time.Minute): RuleKeepLast,
				ago(20 * time.Minute): RuleKeepLast, ago(2 * h): RuleExpired, ago(3 * h): RuleExpired},
			newest: ago(0),
		},
		{
			name:      "keep_last without a grid keeps only the newest N",
			keepLast:  2,
			snapshots: []string{ago(0), ago(h), ago(2 * h), ago(3 * h)},
			want:      map[string]Rule{ago(0): RuleNewest, ago(h): RuleKeepLast, ago(2 * h): RuleExpired, ago(3 * h): RuleExpired},
			newest:    ago(0),
		},
		{
			name:      "no policy keeps everything",
			snapshots: []string{ago(0), ago(400 * d), ago(h)},
			protected: []Protection{{ago(h), Cursor("a")}},
			want:      map[string]Rule{ago(0): RuleNoPolicy, ago(400 * d): RuleNoPolicy, ago(h): RuleProtected},
			newest:    ago(0),
		},
		{
			name: "names that are not this job's ferry snapshots are never touched",
			grid: "1x1h",
			snapshots: []string{ago(0), ago(5 * h),
				snap("a_b", t0.Add(-9*h)), snap("b", t0.Add(-9*h)), "manual-before-upgrade",
				"ferry_a_20261130T010000Z.tmp", "ferry_a_", "ferry__20261130T010000Z", "ferry_a_2026-11-30T01:00:00Z",
				"ferry_a_20261130T010000.0Z", "ferry_a_20261130T250000Z"},
			want: map[string]Rule{ago(0): RuleNewest, ago(5 * h): RuleExpired,
				snap("a_b", t0.Add(-9*h)): RuleOtherJob, snap("b", t0.Add(-9*h)): RuleOtherJob,
				"manual-before-upgrade": RuleNotFerry, "ferry_a_20261130T010000Z.tmp": RuleNotFerry,
				"ferry_a_": RuleNotFerry, "ferry__20261130T010000Z": RuleNotFerry,
				"ferry_a_2026-11-30T01:00:00Z": RuleNotFerry, "ferry_a_20261130T010000.0Z": RuleNotFerry,
				"ferry_a_20261130T250000Z": RuleNotFerry},
			newest: ago(0),
		},
		{
			name:      "protected snapshots are kept whatever the grid says",
			grid:      "1x1h",
			snapshots: []string{ago(0), ago(5 * h), ago(6 * h), ago(7 * h)},
			protected: []Protection{{ago(5 * h), Cursor("a")}, {ago(6 * h), ReasonInFlight}, {ago(6 * h), ReasonBase},
				{ago(0), ReasonReceived}, {"ferry_a_20200101T000000Z", Cursor("a")}},
			want: map[string]Rule{ago(0): RuleProtected, ago(5 * h): RuleProtected, ago(6 * h): RuleProtected,
				ago(7 * h): RuleExpired},
			newest: ago(0),
		},
		{
			name:      "a snapshot from the future is kept and not counted from",
			grid:      "1x1h",
			now:       t0.Add(30 * time.Minute),
			snapshots: []string{ago(-h), ago(0), ago(h)},
			want:      map[string]Rule{ago(-h): RuleFuture, ago(0): RuleNewest, ago(h): RuleExpired},
			newest:    ago(0),
		},
		{
			name:      "only future snapshots: nothing is counted from, all kept",
			grid:      "1x1h",
			now:       t0.Add(-10 * h),
			snapshots: []string{ago(0), ago(h)},
			want:      map[string]Rule{ago(0): RuleFuture, ago(h): RuleFuture},
		},
		{
			name: "one instant in both name formats: ordered by name, both in the first period",
			grid: "1x1h",
			snapshots: []string{"ferry_a_20261130T120000Z", "ferry_a_20261130T120000.000Z",
				"ferry_a_20261130T110000Z"},
			want: map[string]Rule{"ferry_a_20261130T120000Z": RuleNewest, "ferry_a_20261130T120000.000Z": RuleBucket,
				"ferry_a_20261130T110000Z": RuleExpired},
			newest: "ferry_a_20261130T120000Z",
		},
		{
			name:      "duplicates count once",
			grid:      "1x1h",
			snapshots: []string{ago(0), ago(2 * h), ago(0), ago(2 * h)},
			want:      map[string]Rule{ago(0): RuleNewest, ago(2 * h): RuleExpired},
			newest:    ago(0),
		},
		{
			name:   "no snapshots",
			grid:   "1x1h",
			want:   map[string]Rule{},
			newest: "",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			if now.IsZero() {
				now = t0
			}
			var g config.Grid
			if tc.grid != "" {
				g = grid(t, tc.grid)
			}
			res, err := Apply(Input{Job: "a", Snapshots: tc.snapshots, Now: now,
				Policy: Policy{Grid: g, KeepLast: tc.keepLast}, Protected: tc.protected})
			require.NoError(t, err)
			assert.Equal(t, tc.want, rules(res))
			assert.Equal(t, tc.newest, res.Newest)
			assert.Len(t, res.Decisions, len(tc.want), "one decision per distinct name")
			deleted := 0
			for _, d := range res.Decisions {
				wantKeep := d.Rule != RuleSuperseded && d.Rule != RuleExpired
				assert.Equal(t, wantKeep, d.Keep, "%s: %s", d.Snapshot, d.Rule)
				assert.NotEmpty(t, d.Why, d.Snapshot)
				if !d.Keep {
					deleted++
				}
			}
			assert.Equal(t, deleted, res.Deleted)
			assert.Equal(t, len(res.Decisions)-deleted, res.Kept)
			assert.Len(t, res.Deletions(), deleted)
		})
	}
}

func TestDecisionDetails(t *testing.T) {
	h := time.Hour
	snaps := []string{ago(0), ago(h), ago(90 * time.Minute), ago(26 * h), ago(60 * h), "lost+found"}
	res, err := Apply(Input{Job: "a", Snapshots: snaps, Now: t0, Policy: Policy{Grid: grid(t, "2x1h | 2x1d")},
		Protected: []Protection{{ago(26 * h), ReasonBase}, {ago(26 * h), Cursor("a")}, {ago(26 * h), Cursor("a")}}})
	require.NoError(t, err)

	// Own snapshots oldest first, then the other names.
	var order []string
	for _, d := range res.Decisions {
		order = append(order, d.Snapshot)
	}
	assert.Equal(t, []string{ago(60 * h), ago(26 * h), ago(90 * time.Minute), ago(h), ago(0), "lost+found"}, order)
	assert.Equal(t, []string{ago(60 * h), ago(h)}, res.Deletions())

	by := map[string]Decision{}
	for _, d := range res.Decisions {
		by[d.Snapshot] = d
	}
	kept := by[ago(90*time.Minute)]
	assert.Equal(t, Slot{Bucket: 1, N: 2, Count: 2, Period: h, From: h, To: 2 * h}, kept.Slot)
	assert.Equal(t, "the oldest in bucket 2x1h period 2 of 2 (1h to 2h before the newest)", kept.Why)
	assert.Equal(t, t0.Add(-90*time.Minute), kept.Time)
	assert.Equal(t, "a", kept.Job)

	assert.Equal(t, "bucket 2x1h period 2 of 2 (1h to 2h before the newest) keeps the older "+ago(90*time.Minute), by[ago(h)].Why)

	p := by[ago(26*h)]
	assert.Equal(t, []string{ReasonBase, "cursor.a"}, p.Protected, "reasons sorted, once each")
	assert.Equal(t, Slot{Bucket: 2, N: 2, Count: 2, Period: 24 * h, From: 26 * h, To: 50 * h}, p.Slot)
	assert.Equal(t, "protected: base of a resumable receive, cursor.a; in bucket 2x1d period 2 of 2 (1d2h to 2d2h before the newest)", p.Why)

	assert.Equal(t, "2d12h before the newest, older than the grid's 2d2h", by[ago(60*h)].Why)
	assert.Equal(t, "the job's newest snapshot: the grid counts from it", by[ago(0)].Why)
	assert.Equal(t, "not a ferry snapshot name: never touched", by["lost+found"].Why)
	assert.Empty(t, by["lost+found"].Job)
}

func TestInvalidInput(t *testing.T) {
	ok := Input{Job: "a", Now: t0, Policy: Policy{Grid: grid(t, "24x1h")}}
	_, err := Apply(ok)
	require.NoError(t, err)

	for _, tc := range []struct {
		name   string
		change func(*Input)
		want   string
	}{
		{"no job", func(in *Input) { in.Job = "" }, "no job given"},
		{"no now", func(in *Input) { in.Now = time.Time{} }, "no time given for now"},
		{"negative keep_last", func(in *Input) { in.Policy.KeepLast = -1 }, "keep_last -1 is negative"},
		{"zero count", func(in *Input) { in.Policy.Grid.Buckets = []config.Bucket{{Count: 0, Period: time.Hour}} }, "must be positive"},
		{"zero period", func(in *Input) { in.Policy.Grid.Buckets = []config.Bucket{{Count: 1}} }, "must be positive"},
		{"overflow", func(in *Input) {
			in.Policy.Grid.Buckets = []config.Bucket{{Count: 1 << 40, Period: 24 * time.Hour}}
		}, "more than 290 years"},
		{"protection without reason", func(in *Input) { in.Protected = []Protection{{Snapshot: ago(0)}} }, "has no reason"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := ok
			tc.change(&in)
			_, err := Apply(in)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", time.Minute: "1m", 90 * time.Minute: "1h30m", 368 * 24 * time.Hour: "368d",
		36*time.Hour + time.Millisecond: "1d12h1ms", 1500 * time.Microsecond: "1ms500µs",
	} {
		assert.Equal(t, want, formatDuration(d), d.String())
	}
}
