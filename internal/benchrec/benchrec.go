// Package benchrec records the figures of ferry's benchmarks as rows of
// docs/BENCHMARKS.md. A benchmark measures each row at least three times,
// ferry and its ceiling side by side in every run, and records all the
// values; the report (render.go, cmd/benchdoc) takes medians, ranges and
// ratios, so no figure is computed in two places.
//
// Rows go to the JSON-lines file named by $FERRY_BENCH_OUT (make bench sets
// it); without it Record only logs, so `go test -bench` alone still works.
package benchrec

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"sync"
	"testing"
)

// OutEnv names the file rows are appended to.
const OutEnv = "FERRY_BENCH_OUT"

// Units and which way is better. A ratio is always "how fast ferry is next
// to the ceiling": value/ceiling for higher-is-better units, ceiling/value
// for lower-is-better ones, so 1.0x is parity and more is better.
const (
	MBps     = "MB/s"
	Seconds  = "s"
	Millis   = "ms"
	MiB      = "MiB"
	Events   = "events"
	Failures = "failures"
)

// Row is one measured line: one tool (ferry in a mode, or a ceiling) in one
// case of one table.
type Row struct {
	// Table groups rows under one heading ("btrfs", "dir, 100,000 small
	// files", ...); tables keep the order of their first row.
	Table string `json:"table"`
	// Case is what was measured ("full, 2 GiB", "no change").
	Case string `json:"case"`
	// Tool is who did it ("ferry off", "btrfs send | btrfs receive").
	Tool string `json:"tool"`
	Unit string `json:"unit"`
	// Values holds one figure per run (at least 3 for a throughput or a
	// time; a count such as failures may have one).
	Values []float64 `json:"values"`
	// Compare lists the ceilings this row is measured against: rows of the
	// same Table and Case named by Tool.
	Compare []Compare `json:"compare,omitempty"`
	// Limit is an absolute target for the median ("< 3 s", "<= 150 ms"),
	// checked by the report; nil when the row has none.
	Limit *Limit `json:"limit,omitempty"`
	// Note says in a line what the figure includes or why it is what it is.
	Note string `json:"note,omitempty"`
	// Skipped says why the row was not measured (Values is empty then).
	Skipped string `json:"skipped,omitempty"`
}

// Compare is a ceiling and the ratio ferry must reach against it (0: shown,
// no target).
type Compare struct {
	Tool string  `json:"tool"`
	Min  float64 `json:"min,omitempty"`
}

// Limit bounds the median: Max for lower-is-better figures (a time, a
// resident set size, failures), Min for higher-is-better ones.
type Limit struct {
	Max *float64 `json:"max,omitempty"`
	Min *float64 `json:"min,omitempty"`
}

// AtMost returns a Limit whose median must not exceed v.
func AtMost(v float64) *Limit { return &Limit{Max: &v} }

// AtLeast returns a Limit whose median must reach v.
func AtLeast(v float64) *Limit { return &Limit{Min: &v} }

// HigherIsBetter says which way a unit points.
func HigherIsBetter(unit string) bool { return unit == MBps }

var mu sync.Mutex

// Record appends r to $FERRY_BENCH_OUT and logs it. It fails the benchmark
// when the row cannot be written or is malformed, so a broken row never
// silently drops out of the report.
func Record(tb testing.TB, r Row) {
	tb.Helper()
	if err := r.validate(); err != nil {
		tb.Fatalf("benchrec: %v", err)
	}
	if r.Skipped != "" {
		tb.Logf("bench row %s / %s / %s skipped: %s", r.Table, r.Case, r.Tool, r.Skipped)
	} else {
		tb.Logf("bench row %s / %s / %s: median %.4g %s of %v", r.Table, r.Case, r.Tool, Median(r.Values), r.Unit, r.Values)
	}
	path := os.Getenv(OutEnv)
	if path == "" {
		return
	}
	line, err := json.Marshal(r)
	if err != nil {
		tb.Fatalf("benchrec: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		tb.Fatalf("benchrec: open %s (set by %s): %v", path, OutEnv, err)
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		tb.Fatalf("benchrec: write %s: %v", path, err)
	}
}

// Skip records every listed tool of a table and case as skipped with the
// reason, then skips the benchmark: the report says what was not measured
// and why instead of leaving a silent hole.
func Skip(tb testing.TB, table, reason string, cases map[string][]string) {
	tb.Helper()
	names := make([]string, 0, len(cases))
	for c := range cases {
		names = append(names, c)
	}
	sort.Strings(names)
	for _, c := range names {
		for _, tool := range cases[c] {
			Record(tb, Row{Table: table, Case: c, Tool: tool, Skipped: reason})
		}
	}
	tb.Skip(reason)
}

func (r Row) validate() error {
	switch {
	case r.Table == "" || r.Case == "" || r.Tool == "":
		return fmt.Errorf("row %+v needs a table, a case and a tool", r)
	case r.Skipped != "":
		return nil
	case r.Unit == "":
		return fmt.Errorf("row %s / %s / %s has no unit", r.Table, r.Case, r.Tool)
	case len(r.Values) == 0:
		return fmt.Errorf("row %s / %s / %s has no values: record it as Skipped with the reason", r.Table, r.Case, r.Tool)
	}
	return nil
}

// Median returns the middle value (the mean of the middle two for an even
// count); 0 for none.
func Median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Ratio is how fast a figure is next to its ceiling (see the unit
// constants): 1.0 is parity, more is better.
func Ratio(unit string, value, ceiling float64) float64 {
	if value == 0 || ceiling == 0 {
		return 0
	}
	if HigherIsBetter(unit) {
		return value / ceiling
	}
	return ceiling / value
}

// Percentile returns the p-th percentile (0..100) by the nearest-rank
// method; 0 for none.
func Percentile(vs []float64, p float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}
