package retention

import (
	"strings"
	"time"
)

// namePrefix starts every snapshot name ferry makes: ferry_<job>_<time>
// (workflows.SnapshotName). This package does not import workflows, which
// will call it.
const namePrefix = "ferry_"

// The time in a snapshot's name, UTC: milliseconds since the
// snapshot-name-millis change, whole seconds before it.
var nameLayouts = []string{"20060102T150405.000Z", "20060102T150405Z"}

// ParseName reads a ferry snapshot name "ferry_<job>_<time>" and returns
// the job and the time written in it. ok is false for any other name. The
// time is the part after the last "_" (a time never holds one, a job name
// may), and must be written exactly as ferry writes it, so "ferry_a_b_<time>"
// is job a_b's and never job a's.
func ParseName(name string) (job string, t time.Time, ok bool) {
	rest, found := strings.CutPrefix(name, namePrefix)
	if !found {
		return "", time.Time{}, false
	}
	i := strings.LastIndexByte(rest, '_')
	if i <= 0 {
		return "", time.Time{}, false
	}
	job, stamp := rest[:i], rest[i+1:]
	for _, layout := range nameLayouts {
		t, err := time.Parse(layout, stamp)
		if err == nil && t.Format(layout) == stamp {
			return job, t.UTC(), true
		}
	}
	return "", time.Time{}, false
}
