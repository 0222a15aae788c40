package worker

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ferry-nas/ferry/certs"
	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/internal/zfspool"
	"github.com/ferry-nas/ferry/storage"
)

// TestNewRefusesMissingRootAndCreatesNothing: a root that does not exist
// (the disk holding it is not mounted) is refused for every backend, naming
// the path, the config key and the fix, and nothing is created: not the
// root, not its parent's contents.
func TestNewRefusesMissingRootAndCreatesNothing(t *testing.T) {
	for _, backend := range []string{config.BackendDir, config.BackendBtrfs} {
		t.Run(backend, func(t *testing.T) {
			mnt := filepath.Join(t.TempDir(), "mnt") // the empty mount point
			require.NoError(t, os.Mkdir(mnt, 0o755))
			root := filepath.Join(mnt, "backup")
			cfg := testConfig(t, "127.0.0.1:7401", fmt.Sprintf("  nas-m: {data_address: 127.0.0.1:7402, backend: %s, root: %q}\n", backend, root))

			_, err := New(context.Background(), Options{Config: cfg, Host: "nas-m"})
			require.Error(t, err)
			for _, want := range []string{"host nas-m", "root " + root + " does not exist", "ferry never creates a host's root",
				"mount the filesystem that holds it", "hosts.nas-m.root"} {
				require.ErrorContains(t, err, want)
			}
			if backend == config.BackendBtrfs {
				require.ErrorContains(t, err, "btrfs subvolume create "+root)
			} else {
				require.ErrorContains(t, err, "mkdir "+root)
			}
			require.Equal(t, storage.KindUnsupported, storage.KindOf(err))
			_, statErr := os.Stat(root)
			require.True(t, os.IsNotExist(statErr), "the root must not be created: %v", statErr)
			entries, err := os.ReadDir(mnt)
			require.NoError(t, err)
			require.Empty(t, entries, "nothing may be written under the mount point")
		})
	}
}

func TestNewRefusesRootThatIsNotADirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "root")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	cfg := testConfig(t, "127.0.0.1:7401", fmt.Sprintf("  nas-f: {data_address: 127.0.0.1:7402, backend: dir, root: %q}\n", file))
	_, err := New(context.Background(), Options{Config: cfg, Host: "nas-f"})
	require.ErrorContains(t, err, "root "+file+" is not a directory")
	require.ErrorContains(t, err, "hosts.nas-f.root")
}

// TestOpenBackendCreatesOnlyFerryInsideRoot: an existing, empty root gets
// .ferry/ and nothing else.
func TestOpenBackendCreatesOnlyFerryInsideRoot(t *testing.T) {
	root := t.TempDir()
	b, err := OpenBackend(config.Host{Name: "nas-a", Backend: config.BackendDir, Root: root}, nil)
	require.NoError(t, err)
	require.NoError(t, b.Check(context.Background()))
	entries, err := os.ReadDir(root)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.Equal(t, []string{storage.MetaDir}, names)
}

// TestNewRefusesAnotherHostsCertificate: nas-a started with nas-b's
// certificate (by flag, or copied over its own files) refuses to start,
// naming both hosts and the command that makes the right one.
func TestNewRefusesAnotherHostsCertificate(t *testing.T) {
	cfg := testConfig(t, "127.0.0.1:7401", "")
	certDir := filepath.Dir(cfg.TLS.CA)
	_, _, err := certs.Issue(certDir, "nas-b", certs.IssueOptions{})
	require.NoError(t, err)
	b := certs.HostFiles(certDir, "nas-b")

	a := certs.HostFiles(certDir, "nas-a")
	_, err = New(context.Background(), Options{Config: cfg, Host: "nas-a", Cert: b.Cert, Key: b.Key})
	require.Error(t, err)
	for _, want := range []string{"host nas-a: data-plane certificate", b.Cert, `issued for host "nas-b", not for "nas-a"`,
		"use nas-a's own certificate " + a.Cert + " and key " + a.Key} {
		require.ErrorContains(t, err, want)
	}

	for src, dst := range map[string]string{b.Cert: a.Cert, b.Key: a.Key} {
		data, err := os.ReadFile(src)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(dst, data, 0o600))
	}
	_, err = New(context.Background(), Options{Config: cfg, Host: "nas-a"})
	require.ErrorContains(t, err, a.Cert+` is issued for host "nas-b", not for "nas-a"`)
	require.ErrorContains(t, err, "run `ferry certs issue nas-a --force --dir "+certDir+"`")
}

// TestNewOnZFS: a zfs host opens on a real pool: a missing root dataset is
// refused naming it and the command that makes it, and is not created;
// an existing one passes Check (tools, root, feature detection).
func TestNewOnZFS(t *testing.T) {
	zfspool.Need(t)
	pool := zfspool.New(t, 128<<20)
	root := pool.Name + "/ferry"
	cfg := testConfig(t, "127.0.0.1:7401", fmt.Sprintf("  nas-z: {data_address: 127.0.0.1:7402, backend: zfs, root: %q}\n", root))
	_, _, err := certs.Issue(filepath.Dir(cfg.TLS.CA), "nas-z", certs.IssueOptions{})
	require.NoError(t, err)

	_, err = New(context.Background(), Options{Config: cfg, Host: "nas-z"})
	require.Error(t, err)
	for _, want := range []string{"host nas-z", "root dataset " + root + " does not exist", "ferry never creates a host's root", "zfs create -p " + root} {
		require.ErrorContains(t, err, want)
	}
	require.Equal(t, storage.KindUnsupported, storage.KindOf(err))
	if out, err := exec.Command("zfs", "list", root).CombinedOutput(); err == nil {
		t.Fatalf("the root dataset was created: %s", out)
	}

	zfspool.Zfs(t, "create", root)
	w, err := New(context.Background(), Options{Config: cfg, Host: "nas-z", Listen: "127.0.0.1:0"})
	require.NoError(t, err)
	w.Close()
}
