package retention_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/ferry-nas/ferry/retention"
	"github.com/ferry-nas/ferry/workflows"
)

// TestParseNameReadsWorkflowNames checks ParseName against the names the
// workflow really makes, so the two formats cannot drift apart.
func TestParseNameReadsWorkflowNames(t *testing.T) {
	at := time.Date(2026, 11, 30, 9, 5, 7, 123456789, time.UTC)
	for _, job := range []string{"share01", "a", "a_b", "A-1_x_", "9"} {
		name := workflows.SnapshotName(job, at)
		gotJob, gotTime, ok := retention.ParseName(name)
		if assert.True(t, ok, name) {
			assert.Equal(t, job, gotJob, name)
			assert.Equal(t, at.Truncate(time.Millisecond), gotTime, name)
			assert.Equal(t, time.UTC, gotTime.Location())
		}
	}
	// In another zone the workflow still writes UTC.
	job, got, ok := retention.ParseName(workflows.SnapshotName("j", at.In(time.FixedZone("CET", 3600))))
	assert.True(t, ok)
	assert.Equal(t, "j", job)
	assert.True(t, got.Equal(at.Truncate(time.Millisecond)))

	// Names from before milliseconds (workflows.secondSnapshotName).
	job, got, ok = retention.ParseName(workflows.SnapshotPrefix("share01") + "20261121T074759Z")
	assert.True(t, ok)
	assert.Equal(t, "share01", job)
	assert.Equal(t, time.Date(2026, 11, 21, 7, 47, 59, 0, time.UTC), got)
}

func TestParseNameRefuses(t *testing.T) {
	for _, name := range []string{
		"", "ferry", "ferry_", "ferry_a", "ferry_a_", "ferry__20261130T010000Z", "zrepl_20261130_010000_000",
		"ferry_a_20261130T010000", "ferry_a_20261130T010000.000", "ferry_a_20261130T010000.12Z",
		"ferry_a_20261130T010000.1234Z", "ferry_a_20261130T010000+0100", "ferry_a_20261131T010000Z",
		"ferry_a_20261130T010000Z ", "Ferry_a_20261130T010000Z", "ferry_a_20261130t010000z",
		"ferry_a_20261130T010000Z.meta.json",
	} {
		_, _, ok := retention.ParseName(name)
		assert.False(t, ok, "%q is not a ferry snapshot name", name)
	}
}
