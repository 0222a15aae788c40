package activities

import (
	"fmt"
	"strings"
	"time"

	"github.com/ferry-nas/ferry/internal/units"
)

// ETA is how long the rest of the stream takes at the current rate; 0 when
// the size or the rate is unknown.
func (p ReceiveProgress) ETA() time.Duration {
	if p.Rate <= 0 || p.Expected <= p.Bytes {
		return 0
	}
	return time.Duration(float64(p.Expected-p.Bytes) / p.Rate * float64(time.Second)).Round(time.Second)
}

// String renders the transfer as one line, the same in `ferry run --wait`,
// `ferry status` and the heartbeat details the web UI shows, each figure
// saying whether it counts stream or wire bytes:
// "1.2 GiB / 4.0 GiB stream (30%)  20.0 MiB/s wire (48.0 MiB/s stream)  ETA 1m00s".
// A retried attempt says whether it resumed or started over.
func (p ReceiveProgress) String() string {
	var b strings.Builder
	b.WriteString(units.Bytes(p.Bytes))
	if p.Expected > 0 {
		fmt.Fprintf(&b, " / %s stream (%d%%)", units.Bytes(p.Expected), units.Percent(p.Bytes, p.Expected))
	} else {
		b.WriteString(" stream")
	}
	b.WriteString(Rates(p.Rate, p.WireRate))
	if eta := p.ETA(); eta > 0 {
		b.WriteString("  ETA " + units.Duration(eta))
	}
	switch {
	case p.Attempt > 1 && p.StartOffset > 0 && p.Resumes > 0:
		fmt.Fprintf(&b, "  (attempt %d resumed at %s)", p.Attempt, at(p.StartOffset, p.Expected))
	case p.Attempt > 1 && p.Restart != "":
		fmt.Fprintf(&b, "  (attempt %d restarted from 0: %s)", p.Attempt, p.Restart)
	}
	return b.String()
}

// at is an offset as a percentage of the stream, or in bytes when its size
// is unknown.
func at(offset, expected int64) string {
	if expected > 0 {
		return fmt.Sprintf("%d%%", units.Percent(offset, expected))
	}
	return units.Bytes(offset)
}

// Rates renders the wire rate (what stream.bwlimit caps), and the stream
// rate beside it when compression makes them differ; "" when both are 0.
func Rates(stream, wire float64) string {
	switch {
	case wire <= 0 && stream <= 0:
		return ""
	case wire <= 0: // a heartbeat of a worker that did not report it
		return "  " + units.Rate(stream) + " stream"
	}
	s := "  " + units.Rate(wire) + " wire"
	if stream > 0 && (stream > wire*1.1 || stream < wire*0.9) {
		s += " (" + units.Rate(stream) + " stream)"
	}
	return s
}
