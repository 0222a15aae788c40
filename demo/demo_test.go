package demo

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ferrydir "github.com/ferry-nas/ferry/storage/dir"
)

// TestDemo runs what `make demo` runs, on a smaller share: both runs
// succeed, the incremental moves far less than the full, and the replica's
// content digest equals the source's.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	dir := t.TempDir()
	// Before TempDir's own cleanup: read-only snapshots need dir.RemoveAll
	// when the test does not run as root.
	t.Cleanup(func() { ferrydir.RemoveAll(dir) })
	res, err := Run(ctx, Options{Dir: dir, ShareSize: 24 << 20, Address: "127.0.0.1:0", UIAddress: "127.0.0.1:0", Out: &out})
	require.NoError(t, err, "demo output:\n%s", out.String())
	require.Equal(t, res.SourceDigest, res.TargetDigest)
	require.Positive(t, res.FullBytes)
	require.Less(t, res.IncrBytes*4, res.FullBytes, "the incremental moved too much")
	require.Len(t, res.Changes, 7)
	require.Contains(t, out.String(), "source and target are identical.")
	// Where the demo says the replica is, its files are.
	require.Contains(t, out.String(), res.Replica+"/latest")
	fi, err := os.Stat(filepath.Join(res.Replica, "latest", "documents"))
	require.NoError(t, err, "the replica's latest entry")
	require.True(t, fi.IsDir())
	require.FileExists(t, filepath.Join(res.Replica, res.Snapshot, "documents", "empty.txt"))
}
