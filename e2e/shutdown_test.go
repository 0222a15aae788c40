package e2e

import (
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/starter"
)

// stop sends host's worker SIGTERM, as systemd or an admin's Ctrl-C does,
// and waits for it to exit on its own.
func (e *env) stop(host string, limit time.Duration) *workerProc {
	e.t.Helper()
	e.mu.Lock()
	p := e.workers[host]
	delete(e.workers, host)
	e.mu.Unlock()
	require.NotNil(e.t, p, "no %s worker is running", host)
	require.NoError(e.t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.exited:
	case <-time.After(limit):
		e.t.Fatalf("worker %s did not exit within %s of SIGTERM\n%s", host, limit, tail(p.log, 20))
	}
	return p
}

// TestReceiverStoppedGracefully: SIGTERM to the receiving worker mid-stream
// stops it cleanly (exit status 0, the receive interrupted at a resumable
// point) and, once it is back, the same run finishes by resuming.
func TestReceiverStoppedGracefully(t *testing.T) {
	e := newEnv(t, envOptions{ShareSize: slowShare, BWLimit: slowRate})
	e.apply()
	st := e.start()
	e.waitStreaming(st, 0.25)

	stopped := e.stop(target, 20*time.Second)
	require.True(t, stopped.cmd.ProcessState.Success(), "the worker did not exit cleanly: %v\n%s", stopped.cmd.ProcessState, tail(stopped.log, 20))
	require.NotEmpty(t, logLines(stopped.log, "worker stopping: interrupting the receive; it resumes on restart"),
		"the stopping worker did not interrupt its receive")
	require.NotEmpty(t, logLines(stopped.log, "worker stopped"))

	again := e.restart(target)
	res := e.mustSucceed(st)
	total := e.relay.Upstream.Load()
	t.Logf("share %d bytes, %d through the relay in total (%.2fx)", e.shareSize, total, float64(total)/float64(e.shareSize))
	require.Less(t, float64(total), 1.5*float64(e.shareSize), "the stream was not resumed: too many bytes sent")
	require.NotEmpty(t, logLines(again.log, "resuming partial receive"), "the restarted worker did not resume")

	rcv := e.activities(st, starter.ReceiveActivity)
	var rr activities.ReceiveResult
	require.NoError(t, rcv[len(rcv)-1].decode(&rr))
	require.True(t, rr.Resumed)
	e.requireSameContent(res.Snapshot)
	e.requireNoPartials()
}
