package activities

import (
	"fmt"
	"strings"
	"time"

	"github.com/ferry-nas/ferry/internal/units"
)

// newReceiveProgress is a receive's heartbeat with its line in words.
func newReceiveProgress(bytes, expected, durable int64, rate float64) ReceiveProgress {
	p := ReceiveProgress{Bytes: bytes, Expected: expected, DurableOffset: durable, Rate: rate}
	p.Line = p.String()
	return p
}

// ETA is how long the rest of the stream takes at the current rate; 0 when
// the size or the rate is unknown.
func (p ReceiveProgress) ETA() time.Duration {
	if p.Rate <= 0 || p.Expected <= p.Bytes {
		return 0
	}
	return time.Duration(float64(p.Expected-p.Bytes) / p.Rate * float64(time.Second)).Round(time.Second)
}

// String renders the transfer as one line, the same in `ferry run --wait`,
// `ferry status` and the heartbeat details the web UI shows:
// "1.2 GiB / 4.0 GiB (30%)  48.0 MiB/s  ETA 1m00s".
func (p ReceiveProgress) String() string {
	var b strings.Builder
	b.WriteString(units.Bytes(p.Bytes))
	if p.Expected > 0 {
		fmt.Fprintf(&b, " / %s (%d%%)", units.Bytes(p.Expected), units.Percent(p.Bytes, p.Expected))
	}
	if p.Rate > 0 {
		b.WriteString("  " + units.Rate(p.Rate))
	}
	if eta := p.ETA(); eta > 0 {
		b.WriteString("  ETA " + units.Duration(eta))
	}
	return b.String()
}
