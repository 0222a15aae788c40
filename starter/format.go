package starter

import (
	"time"

	"github.com/ferry-nas/ferry/internal/units"
)

// FormatBytes renders n in binary units: 512 B, 1.5 KiB, 4.0 GiB.
func FormatBytes(n int64) string { return units.Bytes(n) }

// FormatRate renders a rate in bytes per second: 48.0 MiB/s.
func FormatRate(bytesPerSecond float64) string { return units.Rate(bytesPerSecond) }

// FormatDuration renders d rounded to what a person reads: 350ms, 45s,
// 3m20s, 2h05m, 3d04h.
func FormatDuration(d time.Duration) string { return units.Duration(d) }
