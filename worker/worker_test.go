package worker

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ferry-nas/ferry/certs"
	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/storage"
)

func testConfig(t *testing.T, dataAddress, extraHost string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	_, _, err := certs.Init(filepath.Join(dir, "certs"), false)
	require.NoError(t, err)
	_, _, err = certs.Issue(filepath.Join(dir, "certs"), "nas-a", certs.IssueOptions{})
	require.NoError(t, err)
	root := filepath.Join(dir, "a")
	require.NoError(t, os.Mkdir(root, 0o755))
	src := fmt.Sprintf("tls: {ca: certs/ca.pem}\nhosts:\n  nas-a: {data_address: %q, backend: dir, root: %q}\n%s",
		dataAddress, root, extraHost)
	p := filepath.Join(dir, "ferry.yaml")
	require.NoError(t, os.WriteFile(p, []byte(src), 0o644))
	cfg, err := config.Load(p)
	require.NoError(t, err)
	return cfg
}

func TestCertFilesPrecedence(t *testing.T) {
	cfg := &config.Config{TLS: config.TLS{CA: "/c/ca.pem", Cert: "/c/shared.pem", Key: "/c/shared-key.pem"}}
	h := config.Host{Name: "nas-a", Cert: "/h/a.pem", Key: "/h/a-key.pem"}

	f := CertFiles(cfg, h, "/flag.pem", "/flag-key.pem")
	require.Equal(t, [2]string{"/flag.pem", "/flag-key.pem"}, [2]string{f.Cert, f.Key}, "flags win")
	f = CertFiles(cfg, h, "", "")
	require.Equal(t, [2]string{"/h/a.pem", "/h/a-key.pem"}, [2]string{f.Cert, f.Key}, "then the host's own")
	h.Cert, h.Key = "", ""
	f = CertFiles(cfg, h, "", "")
	require.Equal(t, [2]string{"/c/shared.pem", "/c/shared-key.pem"}, [2]string{f.Cert, f.Key}, "then tls.cert/key")
	cfg.TLS.Cert, cfg.TLS.Key = "", ""
	f = CertFiles(cfg, h, "", "")
	require.Equal(t, [2]string{"/c/nas-a.pem", "/c/nas-a-key.pem"}, [2]string{f.Cert, f.Key}, "else beside the CA, as `ferry certs issue` writes them")
	require.Equal(t, "/c/ca.pem", f.CA)
}

func TestOpenBackendRefusesUnknownBackends(t *testing.T) {
	_, err := OpenBackend(config.Host{Name: "nas-z", Backend: "xfs", Root: t.TempDir()}, nil)
	require.Error(t, err)
	require.Equal(t, storage.KindUnsupported, storage.KindOf(err))
	require.Contains(t, err.Error(), "nas-z")
}

// TestOpenBackendOpensZFS: a zfs root is a dataset name, opened without
// running anything (Check is what looks at the pool).
func TestOpenBackendOpensZFS(t *testing.T) {
	b, err := OpenBackend(config.Host{Name: "nas-z", Backend: config.BackendZFS, Root: "tank/ferry"}, nil)
	require.NoError(t, err)
	require.Equal(t, "zfs", b.Kind())
	_, err = OpenBackend(config.Host{Name: "nas-z", Backend: config.BackendZFS, Root: "/tank/ferry"}, nil)
	require.Equal(t, storage.KindInvalid, storage.KindOf(err))
}

func TestRunRefusesBeforeTouchingTemporal(t *testing.T) {
	// Each of these fails before the worker needs the Temporal client (nil here).
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()

	cfg := testConfig(t, busy.Addr().String(), "")
	err = Run(context.Background(), nil, Options{Config: cfg, Host: "nas-a"})
	require.ErrorContains(t, err, "cannot listen on "+busy.Addr().String())
	require.ErrorContains(t, err, "is another `ferry worker --host nas-a` already running? If not, free the port or change hosts.nas-a.data_address")

	// With --listen the refusal names the flag, not the config key it overrides.
	err = Run(context.Background(), nil, Options{Config: testConfig(t, "127.0.0.1:1", ""), Host: "nas-a", Listen: busy.Addr().String()})
	require.ErrorContains(t, err, "free the port or change --listen")

	err = Run(context.Background(), nil, Options{Config: cfg, Host: "nas-q"})
	require.ErrorContains(t, err, `--host nas-q: config: unknown host "nas-q"`)
	require.ErrorContains(t, err, "start the worker with --host set to one of them, or declare hosts.nas-q in the config")

	err = Run(context.Background(), nil, Options{Config: testConfig(t, "127.0.0.1:1", ""), Host: "nas-a", Cert: "/nonexistent.pem", Key: "/nonexistent-key.pem"})
	require.ErrorContains(t, err, "/nonexistent.pem")
}
