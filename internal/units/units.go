// Package units renders sizes, rates and durations the way every ferry
// surface shows them (CLI lines, heartbeat details in the web UI), so a
// figure reads the same wherever an administrator meets it.
package units

import (
	"fmt"
	"time"
)

// Bytes renders n in binary units: 512 B, 1.5 KiB, 4.0 GiB.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Rate renders a rate in bytes per second: 48.0 MiB/s.
func Rate(bytesPerSecond float64) string {
	return Bytes(int64(bytesPerSecond)) + "/s"
}

// Duration renders d rounded to what a person reads: 350ms, 45s,
// 3m20s, 2h05m, 3d04h.
func Duration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", d/time.Minute, (d%time.Minute)/time.Second)
	case d < 48*time.Hour:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", d/time.Hour, (d%time.Hour)/time.Minute)
	}
	d = d.Round(time.Hour)
	return fmt.Sprintf("%dd%02dh", d/(24*time.Hour), (d%(24*time.Hour))/time.Hour)
}

// Percent is n as a whole percentage of of, clamped to 0-100 (0 when of
// is unknown).
func Percent(n, of int64) int64 {
	if of <= 0 {
		return 0
	}
	return min(max(n*100/of, 0), 100)
}
