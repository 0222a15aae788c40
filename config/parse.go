package config

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// fixError is a parse error that also knows how to fix the input. Error
// returns only the reason; Parse puts the fix in Problem.Fix.
type fixError struct {
	reason string
	fix    string
}

func (e *fixError) Error() string { return e.reason }

func fixErrorf(fix, format string, args ...any) error {
	return &fixError{reason: fmt.Sprintf(format, args...), fix: fix}
}

// durationUnits maps each unit to its length in nanoseconds.
var durationUnits = map[string]int64{
	"ns":      1,
	"us":      int64(time.Microsecond),
	"\u00b5s": int64(time.Microsecond), // micro sign
	"\u03bcs": int64(time.Microsecond), // Greek mu
	"ms":      int64(time.Millisecond),
	"s":       int64(time.Second),
	"m":       int64(time.Minute),
	"h":       int64(time.Hour),
	"d":       int64(24 * time.Hour),
	"w":       int64(7 * 24 * time.Hour),
}

const durationFix = "write a duration such as 90s, 15m, 1h30m, 1d or 2w"

// ParseDuration parses a duration as time.ParseDuration does ("1h30m",
// "90s", "-1.5h") and also accepts the units d (24h) and w (7d), alone or
// mixed with the others ("1d12h", "1.5d", "2w").
func ParseDuration(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	rest := in
	neg := false
	if rest != "" && (rest[0] == '-' || rest[0] == '+') {
		neg = rest[0] == '-'
		rest = rest[1:]
	}
	if rest == "0" {
		return 0, nil
	}
	if rest == "" {
		return 0, fixErrorf(durationFix, "%q is not a duration", s)
	}
	total := new(big.Rat)
	for rest != "" {
		i, digits, dot := 0, 0, false
		for i < len(rest) && (isDigit(rest[i]) || (rest[i] == '.' && !dot)) {
			if rest[i] == '.' {
				dot = true
			} else {
				digits++
			}
			i++
		}
		if digits == 0 {
			return 0, fixErrorf(durationFix, "%q is not a duration", s)
		}
		num := rest[:i]
		rest = rest[i:]
		j := 0
		for j < len(rest) && rest[j] != '.' && !isDigit(rest[j]) {
			j++
		}
		unit := rest[:j]
		rest = rest[j:]
		if unit == "" && rest != "" {
			return 0, fixErrorf(durationFix, "%q is not a duration", s)
		}
		if unit == "" {
			return 0, fixErrorf(durationFix, "duration %q has no unit", s)
		}
		mult, ok := durationUnits[unit]
		if !ok {
			return 0, fixErrorf("use one of the units ns, us, ms, s, m, h, d, w",
				"unknown unit %q in duration %q", unit, s)
		}
		r, ok := decimal(num)
		if !ok {
			return 0, fixErrorf(durationFix, "%q is not a duration", s)
		}
		total.Add(total, r.Mul(r, new(big.Rat).SetInt64(mult)))
	}
	ns := new(big.Int).Quo(total.Num(), total.Denom())
	if neg {
		ns.Neg(ns)
	}
	if !ns.IsInt64() {
		return 0, fixErrorf("use a duration under 290 years", "duration %q is out of range", s)
	}
	return time.Duration(ns.Int64()), nil
}

// decimal parses digits with an optional '.' ("5", "1.5", ".5", "5.")
// exactly.
func decimal(num string) (*big.Rat, bool) {
	if strings.HasPrefix(num, ".") {
		num = "0" + num
	}
	num = strings.TrimSuffix(num, ".")
	return new(big.Rat).SetString(num)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

var sizeUnits = map[string]int64{
	"B":   1,
	"KB":  1e3,
	"kB":  1e3,
	"MB":  1e6,
	"GB":  1e9,
	"TB":  1e12,
	"KiB": 1 << 10,
	"MiB": 1 << 20,
	"GiB": 1 << 30,
	"TiB": 1 << 40,
}

const sizeFix = "write a size such as 50MiB, 1.5GB or 1048576 (bytes); units: B, KB, MB, GB, TB (powers of 1000), KiB, MiB, GiB, TiB (powers of 1024)"

// ParseSize parses a byte count: a plain integer is bytes; a number
// (possibly with a fraction) may carry a unit, B, KB/MB/GB/TB (powers of
// 1000) or KiB/MiB/GiB/TiB (powers of 1024), with optional space before it.
// Units are case-sensitive ("Mb" would be megabits and is refused); a
// fractional byte count is rounded down.
func ParseSize(s string) (int64, error) {
	in := strings.TrimSpace(s)
	i, digits, dot := 0, 0, false
	for i < len(in) && (isDigit(in[i]) || (in[i] == '.' && !dot)) {
		if in[i] == '.' {
			dot = true
		} else {
			digits++
		}
		i++
	}
	if digits == 0 {
		return 0, fixErrorf(sizeFix, "%q is not a size", s)
	}
	num, unit := in[:i], strings.TrimSpace(in[i:])
	mult := int64(1)
	if unit == "" {
		if dot {
			return 0, fixErrorf(sizeFix, "size %q is a fraction of a byte", s)
		}
	} else {
		m, ok := sizeUnits[unit]
		if !ok {
			return 0, fixErrorf(sizeFix, "unknown unit %q in size %q", unit, s)
		}
		mult = m
	}
	r, ok := decimal(num)
	if !ok {
		return 0, fixErrorf(sizeFix, "%q is not a size", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if !n.IsInt64() {
		return 0, fixErrorf("use a smaller size", "size %q is too large", s)
	}
	return n.Int64(), nil
}

// Bucket is one retention bucket: keep Count consecutive periods of length
// Period.
type Bucket struct {
	Count  int
	Period time.Duration
}

// Grid is a retention grid such as "24x1h | 7x1d": buckets from the newest
// snapshot backwards in time. The zero Grid (no buckets) keeps everything.
type Grid struct {
	Buckets []Bucket
	// Text is the grid as written in the file (trimmed), for display.
	Text string
}

// IsZero reports whether the grid has no buckets (keep everything).
func (g Grid) IsZero() bool { return len(g.Buckets) == 0 }

// String returns the grid's text as written.
func (g Grid) String() string { return g.Text }

// Span is the total time the grid covers: the sum of Count×Period.
func (g Grid) Span() time.Duration {
	var d time.Duration
	for _, b := range g.Buckets {
		d += time.Duration(b.Count) * b.Period
	}
	return d
}

const gridFix = `write buckets as COUNTxPERIOD separated by "|", e.g. "24x1h | 7x1d | 12x30d"`

// ParseGrid parses a retention grid: buckets "NxPERIOD" separated by "|",
// with N ≥ 1, PERIOD a duration (ParseDuration) of at least a minute, and
// periods that never decrease from one bucket to the next. An empty string
// is the zero Grid.
func ParseGrid(s string) (Grid, error) {
	text := strings.TrimSpace(s)
	if text == "" {
		return Grid{}, nil
	}
	var g Grid
	var prev, total time.Duration
	prevText := ""
	for i, part := range strings.Split(text, "|") {
		p := strings.TrimSpace(part)
		if p == "" {
			return Grid{}, fixErrorf(gridFix, "bucket %d of %q is empty", i+1, text)
		}
		n, per, ok := strings.Cut(p, "x")
		if !ok {
			return Grid{}, fixErrorf(gridFix, "bucket %q is not COUNTxPERIOD", p)
		}
		count, err := strconv.Atoi(strings.TrimSpace(n))
		if err != nil || count < 1 {
			return Grid{}, fixErrorf(gridFix+"; COUNT is a whole number ≥ 1",
				"bucket %q: count %q is not a whole number ≥ 1", p, strings.TrimSpace(n))
		}
		period, err := ParseDuration(strings.TrimSpace(per))
		if err != nil {
			return Grid{}, fixErrorf(gridFix, "bucket %q: %v", p, err)
		}
		if period < MinGridPeriod {
			return Grid{}, fixErrorf(gridFix+"; PERIOD is at least 1m",
				"bucket %q: period %s is shorter than 1m", p, strings.TrimSpace(per))
		}
		if period < prev {
			return Grid{}, fixErrorf("order the buckets from the shortest period to the longest",
				"bucket %q: period %s is shorter than the previous bucket's %s", p, strings.TrimSpace(per), prevText)
		}
		if time.Duration(count) > (time.Duration(math.MaxInt64)-total)/period {
			return Grid{}, fixErrorf("use fewer or shorter buckets", "grid %q spans more than 290 years", text)
		}
		total += time.Duration(count) * period
		prev, prevText = period, strings.TrimSpace(per)
		g.Buckets = append(g.Buckets, Bucket{Count: count, Period: period})
	}
	g.Text = text
	return g, nil
}

// ReservedComponent is the dataset path component ferry keeps its own state
// under; no configured dataset may contain it.
const ReservedComponent = ".ferry"

// ParseEndpoint parses "host:dataset" and checks the dataset path is a
// clean path relative to the host's root. It does not check that the host
// is declared.
func ParseEndpoint(s string) (Endpoint, error) {
	host, ds, ok := strings.Cut(s, ":")
	if !ok {
		return Endpoint{}, fixErrorf("write host:dataset, e.g. nas-b:replicas/share01",
			"%q is not host:dataset", s)
	}
	if host == "" {
		return Endpoint{}, fixErrorf("write host:dataset, e.g. nas-b:replicas/share01",
			"%q has no host before the colon", s)
	}
	if err := checkDataset(ds); err != nil {
		return Endpoint{}, err
	}
	return Endpoint{Host: host, Dataset: ds}, nil
}

// checkDataset checks a dataset path relative to a host's root.
func checkDataset(ds string) error {
	const keepInside = "a dataset is a path relative to the host's root, such as replicas/share01"
	switch {
	case ds == "":
		return fixErrorf("write host:dataset, e.g. nas-b:replicas/share01", "dataset is empty")
	case strings.ContainsFunc(ds, unicode.IsControl):
		return fixErrorf("remove control characters from the dataset", "dataset %q contains a control character", ds)
	case strings.Contains(ds, `\`):
		return fixErrorf("separate components with /", "dataset %q contains a backslash", ds)
	case strings.HasPrefix(ds, "/"):
		return fixErrorf("drop the leading /: "+keepInside, "dataset %q is an absolute path", ds)
	case strings.HasSuffix(ds, "/"):
		return fixErrorf("remove the trailing /", "dataset %q ends with a slash", ds)
	}
	for _, c := range strings.Split(ds, "/") {
		switch c {
		case "":
			return fixErrorf("remove the doubled /", "dataset %q has an empty component (//)", ds)
		case ".", "..":
			return fixErrorf(keepInside+", without . or .. components",
				"dataset %q contains a %q component", ds, c)
		case ReservedComponent:
			return fixErrorf("rename the dataset", "dataset %q uses the component %q, which is reserved for ferry's own state", ds, c)
		}
	}
	return nil
}

// within reports whether dataset a is b or inside b.
func within(a, b string) bool {
	return a == b || strings.HasPrefix(a, b+"/")
}

// overlap reports whether one of the datasets is, or is inside, the other.
func overlap(a, b string) bool { return within(a, b) || within(b, a) }
