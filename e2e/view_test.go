package e2e

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ferry-nas/ferry/storage/replicaview"
)

// requireReplicaView checks what an administrator browsing the target sees
// at <root>/<dataset>: an entry per snapshot in names, `latest` at the last,
// and under latest the same paths and file contents as the source's share.
func (e *env) requireReplicaView(names ...string) {
	e.t.Helper()
	view := filepath.Join(e.roots[target], filepath.FromSlash(tgtDataset))
	des, err := os.ReadDir(view)
	require.NoError(e.t, err, "the replica's view %s", view)
	var got []string
	for _, d := range des {
		if d.Name() != replicaview.Marker {
			require.Equal(e.t, fs.ModeSymlink, d.Type(), "view entry %s", d.Name())
			got = append(got, d.Name())
		}
	}
	want := append([]string{replicaview.Latest}, names...)
	slices.Sort(want)
	require.Equal(e.t, want, got, "entries of the replica's view %s", view)
	for _, n := range names {
		_, err := os.Stat(filepath.Join(view, n))
		require.NoError(e.t, err, "view entry %s does not resolve", n)
	}
	latest := filepath.Join(view, replicaview.Latest)
	require.Equal(e.t, filesOf(e, filepath.Join(view, names[len(names)-1])+"/"), filesOf(e, latest+"/"), "latest is not the newest snapshot")
	require.Equal(e.t, filesOf(e, e.share), filesOf(e, latest+"/"), "the files under %s differ from the source's share", latest)
	e.t.Logf("replica view %s: %v", view, got)
}

// filesOf lists every path under root with a file's content hash or a
// symlink's target.
func filesOf(e *env, root string) []string {
	e.t.Helper()
	var out []string
	require.NoError(e.t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		line := rel + " " + d.Type().String()
		switch {
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %x", sha256.Sum256(b))
		case d.Type() == fs.ModeSymlink:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " -> " + l
		}
		out = append(out, line)
		return nil
	}))
	return out
}

// TestReplicaViewFollowsPrune: three runs within an hour with the target
// keeping one snapshot an hour (its oldest, besides the newest): prune
// removes the middle one through the target's worker, and the view on the
// target shows exactly the snapshots left, latest at the newest.
func TestReplicaViewFollowsPrune(t *testing.T) {
	e := newEnv(t, envOptions{ShareSize: 1 << 20, Retention: `{target: "1x1h"}`})
	e.apply()
	var made []string
	for i := range 3 {
		require.NoError(t, os.WriteFile(filepath.Join(e.share, fmt.Sprintf("run-%d.txt", i)), []byte("written before run\n"), 0o644))
		made = append(made, e.mustSucceed(e.start()).Snapshot)
	}
	list, err := e.backend(target).ListSnapshots(e.ctx, tgtDataset)
	require.NoError(t, err)
	var left []string
	for _, s := range list {
		left = append(left, s.Name)
	}
	require.Equal(t, []string{made[0], made[2]}, left, "what the target's grid keeps of %v", made)
	e.requireReplicaView(left...)
}
