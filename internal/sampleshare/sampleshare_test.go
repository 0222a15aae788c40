package sampleshare

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func shareSize(t *testing.T, dir string) int64 {
	var total int64
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		total += fi.Size()
		return err
	}))
	return total
}

func TestWriteIsSizedAndDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	const size = 8 << 20
	require.NoError(t, Write(a, size, 7))
	require.NoError(t, Write(b, size, 7))
	require.Equal(t, int64(size), shareSize(t, a))
	// mtimes differ between the two writes, so compare contents file by file.
	for _, rel := range []string{"documents/report-000.txt", "photos/2026-01/IMG_0000.jpg", "documents/empty.txt"} {
		x, err := os.ReadFile(filepath.Join(a, rel))
		require.NoError(t, err)
		y, err := os.ReadFile(filepath.Join(b, rel))
		require.NoError(t, err)
		require.Equal(t, x, y, rel)
	}
	target, err := os.Readlink(filepath.Join(a, "latest-report"))
	require.NoError(t, err)
	require.Equal(t, "documents/report-000.txt", target)
}

func TestChangeChangesWhatItSays(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, Write(dir, 8<<20, 1))
	before := shareSize(t, dir)
	changes, err := Change(dir, 2)
	require.NoError(t, err)
	require.Len(t, changes, 7)
	for _, gone := range []string{"documents/report-002.txt", "projects/p6", "documents/report-003.txt", "projects/p0"} {
		_, err := os.Lstat(filepath.Join(dir, gone))
		require.True(t, os.IsNotExist(err), "%s should be gone", gone)
	}
	for _, present := range []string{"photos/new/IMG_NEW.jpg", "documents/archive-003.txt", "projects/p0-old"} {
		_, err := os.Lstat(filepath.Join(dir, present))
		require.NoError(t, err, present)
	}
	require.NotEqual(t, before, shareSize(t, dir))
}
