package e2e

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/logging"
	"github.com/ferry-nas/ferry/server"
)

// TestServerOutageWhileReceiveCompletes is the administrator's report:
// `ferry server` (its own process, a file database) is killed with
// SIGKILL mid-stream and started again after the receive finished, so the
// receive's completion is lost and the server retries it. The retry finds
// the snapshot being sent complete on the target: the run succeeds (verify
// and mark follow) instead of failing with "already exists on the target".
func TestServerOutageWhileReceiveCompletes(t *testing.T) {
	e := newEnv(t, envOptions{ShareSize: 96 << 20, BWLimit: "16MiB"})
	require.NoError(t, os.MkdirAll(e.dir, 0o755))
	srv, addr := startServerProc(t, e.dir)
	t.Cleanup(func() { stopProc(srv) })

	// The workers and the test's client move to that server.
	e.kill(source)
	e.kill(target)
	cfg, err := os.ReadFile(e.cfgPath)
	require.NoError(t, err)
	moved := strings.Replace(string(cfg), `{address: "`+tsrv.FrontendAddress()+`", namespace: "`+tsrv.Namespace()+`"}`,
		`{address: "`+addr+`", namespace: "`+server.DefaultNamespace+`"}`, 1)
	require.NotEqual(t, string(cfg), moved, "the config names no temporal address to move")
	// The SDK ends an activity's context a heartbeat timeout after its last
	// heartbeat got through: the receive must outlive the outage's start.
	moved = strings.Replace(moved, "heartbeat: "+heartbeat.String(), "heartbeat: 20s", 1)
	require.NoError(t, os.WriteFile(e.cfgPath, []byte(moved), 0o644))
	e.cfg, err = config.Load(e.cfgPath)
	require.NoError(t, err)
	c, err := client.DialContext(e.ctx, client.Options{HostPort: addr, Namespace: server.DefaultNamespace, Logger: logging.Temporal(zap.NewNop())})
	require.NoError(t, err)
	shared := tc
	tc = c
	t.Cleanup(func() { tc = shared; c.Close() })
	e.startWorker(source)
	e.startWorker(target)

	e.apply()
	st := e.start()
	var name string
	e.waitFor(time.Minute, "the receive to be under way", func() (bool, error) {
		ps, err := e.backend(target).Partials(e.ctx, tgtDataset)
		if len(ps) > 0 && ps[0].Resume != nil && ps[0].Resume.Offset > 88<<20 {
			name = ps[0].Name
			return true, nil
		}
		return false, err
	})
	require.NoError(t, srv.Process.Signal(syscall.SIGKILL))
	_ = srv.Wait()
	killed := time.Now()
	t.Logf("killed ferry server (pid %d) while %s was being received", srv.Process.Pid, name)
	e.waitFor(time.Minute, "the receive to finish while the server is down", func() (bool, error) {
		return listed(e, name), nil
	})
	// Down for about as long as timeouts.heartbeat: the server times the
	// receive's attempt out and retries it; its completion is lost.
	time.Sleep(time.Until(killed.Add(12 * time.Second)))
	srv = startServerProcAt(t, e.dir, addr)
	t.Log("ferry server started again")

	res := e.mustSucceed(st)
	require.Equal(t, name, res.Snapshot)
	e.requireSameContent(res.Snapshot)
	e.requireReplicaView(res.Snapshot)
	require.NotEmpty(t, e.workerLogs(target, "the snapshot being sent is already complete on the target"),
		"the outage did not lose the receive's completion: the case proves nothing")
	require.Len(t, e.activities(st, "Mark"), 2, "the run did not mark both sides")
}

func listed(e *env, name string) bool {
	snaps, err := e.backend(target).ListSnapshots(e.ctx, tgtDataset)
	if err != nil {
		return false
	}
	for _, s := range snaps {
		if s.Name == name {
			return true
		}
	}
	return false
}
