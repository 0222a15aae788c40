package benchrec

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRenderJudgesRatiosAndLimits(t *testing.T) {
	rows := []Row{
		{Table: "btrfs", Case: "full", Tool: "pipe", Unit: MBps, Values: []float64{300, 310, 290}},
		{Table: "btrfs", Case: "full", Tool: "ferry off", Unit: MBps, Values: []float64{280, 200, 285},
			Compare: []Compare{{Tool: "pipe", Min: 0.90}}},
		{Table: "dir", Case: "no change", Tool: "ferry", Unit: Seconds, Values: []float64{4, 5, 3},
			Compare: []Compare{{Tool: "rsync -a"}}, Limit: AtMost(3)},
		{Table: "dir", Case: "no change", Tool: "rsync -a", Unit: Seconds, Values: []float64{0.5, 0.5, 0.6}},
		{Table: "zfs", Case: "full", Tool: "ferry", Skipped: "needs root"},
	}
	var b strings.Builder
	require.NoError(t, Render(&b, Meta{Command: "make bench"}, rows, ParseGoBench(strings.NewReader(
		"goos: linux\nBenchmarkHotCRC-2   \t 100\t 1234 ns/op\t 850.00 MB/s\nPASS\n"))))
	got := b.String()
	// 280/300 = 0.93 meets 0.90; 0.5/4 = 0.125 against rsync, and 4 s misses the 3 s limit.
	require.Contains(t, got, "| full | ferry off | 280 MB/s | 200–285 | 3 | 0.93x pipe | >= 0.90x pipe: met |")
	require.Contains(t, got, "| no change | ferry | 4 s | 3–5 | 3 | 0.12x rsync -a | <= 3 s: **missed** |")
	require.Contains(t, got, "- dir / no change / ferry: <= 3 s: **missed**")
	require.Contains(t, got, "- zfs / full / ferry: needs root")
	require.Contains(t, got, "| BenchmarkHotCRC-2 | 1234 ns/op, 850.00 MB/s |")
}

func TestRenderEscapesPipesInCells(t *testing.T) {
	rows := []Row{
		{Table: "btrfs", Case: "full", Tool: "btrfs send | btrfs receive", Unit: MBps, Values: []float64{300, 300, 300}},
		{Table: "btrfs", Case: "full", Tool: "ferry off", Unit: MBps, Values: []float64{270, 270, 270},
			Compare: []Compare{{Tool: "btrfs send | btrfs receive", Min: 0.90}}},
	}
	var b strings.Builder
	require.NoError(t, Render(&b, Meta{Command: "make bench"}, rows, nil))
	got := b.String()
	require.Contains(t, got, "| full | btrfs send \\| btrfs receive | 300 MB/s |")
	require.Contains(t, got, "| 0.90x btrfs send \\| btrfs receive | >= 0.90x btrfs send \\| btrfs receive: met |")
}

func TestMedianAndPercentile(t *testing.T) {
	require.Equal(t, 2.0, Median([]float64{3, 1, 2}))
	require.Equal(t, 2.5, Median([]float64{4, 1, 2, 3}))
	vs := make([]float64, 20)
	for i := range vs {
		vs[i] = float64(20 - i) // 20..1
	}
	require.Equal(t, 19.0, Percentile(vs, 95))
	require.Equal(t, 10.0, Percentile(vs, 50))
	require.Equal(t, 0.0, Percentile(nil, 50))
}
