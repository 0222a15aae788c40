package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sshdPath is Debian's openssh-server daemon.
const sshdPath = "/usr/sbin/sshd"

// sshd is a throwaway OpenSSH server on 127.0.0.1 for the benchmarks' ssh
// rows (btrbk's path): its own host key, one client key, root login by key
// only, stopped when the benchmark ends.
type sshd struct {
	dir, port string
}

// startSSHD starts sshd on a free port with keys in a temporary directory;
// the test's cleanup stops it and removes the directory.
func startSSHD(t testing.TB) *sshd {
	t.Helper()
	dir, err := os.MkdirTemp("", "ferry-bench-sshd-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, k := range []string{"host_key", "client_key"} {
		out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)).CombinedOutput()
		require.NoError(t, err, "ssh-keygen: %s", out)
	}
	pub, err := os.ReadFile(filepath.Join(dir, "client_key.pub"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600))
	_, port, err := net.SplitHostPort(freeAddr(t))
	require.NoError(t, err)
	cfg := fmt.Sprintf(`ListenAddress 127.0.0.1:%s
HostKey %s/host_key
AuthorizedKeysFile %s/authorized_keys
PidFile %s/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
`, port, dir, dir, dir)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o600))
	// sshd refuses to start without its privilege separation directory.
	require.NoError(t, os.MkdirAll("/run/sshd", 0o755))
	var log strings.Builder
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	cmd.Stdout, cmd.Stderr = &log, &log
	dieWithTest(cmd)
	require.NoError(t, cmd.Start(), "start %s", sshdPath)
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	s := &sshd{dir: dir, port: port}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := s.command("true").CombinedOutput()
		if err == nil {
			return s
		}
		select {
		case <-exited:
			t.Fatalf("sshd exited: %s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh to the benchmark's sshd on port %s: %v: %s (sshd: %s)", port, err, out, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// command is `ssh root@127.0.0.1 remote` to this server with the client key.
func (s *sshd) command(remote string) *exec.Cmd {
	return exec.Command("ssh", "-i", filepath.Join(s.dir, "client_key"), "-p", s.port,
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
		"root@127.0.0.1", remote)
}
