package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-nas/ferry/activities"
	"github.com/ferry-nas/ferry/starter"
)

// statusJSON runs `ferry status JOB --json` and returns the job's status.
func (e *env) statusJSON() starter.JobStatus {
	e.t.Helper()
	res := e.ferry("status", e.job, "--json")
	require.Zero(e.t, res.Code, res.Out)
	var sts []starter.JobStatus
	require.NoError(e.t, json.Unmarshal([]byte(res.Out[strings.Index(res.Out, "["):]), &sts), res.Out)
	require.Len(e.t, sts, 1)
	return sts[0]
}

// TestStatusThroughAReceiverKill: the receiving worker is killed with
// SIGKILL mid-stream. While it is down `ferry status` says nas-b stopped
// reporting instead of showing the last rate; once it is back, that the
// receive resumed after nas-b stopped reporting; after the run, the bytes of
// both attempts: a resumed stream does not shrink to its last attempt's.
// The restarted worker's --log-json output is JSON, line by line.
func TestStatusThroughAReceiverKill(t *testing.T) {
	e := newEnv(t, envOptions{ShareSize: slowShare, BWLimit: slowRate})
	e.apply()
	st := e.start()
	e.waitStreaming(st, 0.25)
	e.kill(target)

	// Down: no progress from nas-b, no rate or ETA.
	var down starter.JobStatus
	e.waitFor(4*heartbeat, "status to say nas-b stopped reporting", func() (bool, error) {
		down = e.statusJSON()
		c := down.Current
		return c != nil && (c.Silent > 0 || c.Waiting), nil
	})
	require.Zero(t, down.Current.Rate, "a stale rate is shown while the receiver is down")
	require.Zero(t, down.Current.ETA)
	require.Equal(t, target, down.Current.TargetHost)
	require.Contains(t, down.Current.String(), "no progress from nas-b for ")
	require.Contains(t, down.Current.String(), "worker down?")

	again := e.restart(target)

	// Back: the retried attempt resumed where the killed one left off.
	var back starter.JobStatus
	e.waitFor(time.Minute, "status to show the resumed receive", func() (bool, error) {
		back = e.statusJSON()
		c := back.Current
		if c == nil {
			return false, fmt.Errorf("the run ended before its resume was seen; last status %+v", back)
		}
		return c.Attempt >= 2 && c.ResumedAt > 0 && c.Silent == 0, nil
	})
	c := back.Current
	require.True(t, c.ReceiverLost, "the retry does not say the receiver was lost: %+v", c)
	require.Equal(t, 1, c.Resumes)
	require.Greater(t, c.StreamSent, c.Bytes-c.ResumedAt, "the stream bytes do not count the killed attempt's")
	require.Contains(t, c.String(), "resumed at ")
	require.Contains(t, c.String(), "after nas-b stopped reporting")
	table := e.ferry("status", e.job)
	require.Contains(t, table.Out, "after nas-b stopped reporting")

	res := e.mustSucceed(st)
	rcv := e.activities(st, starter.ReceiveActivity)
	var rr activities.ReceiveResult
	require.NoError(t, rcv[len(rcv)-1].decode(&rr))
	t.Logf("result: %d wire bytes over all attempts (the completing attempt: %d), received %+v; share %d bytes",
		res.Bytes, rr.Bytes, res.Received, e.shareSize)
	require.Equal(t, 1, res.Received.Resumes)
	require.GreaterOrEqual(t, res.Received.StreamSize, e.shareSize, "the stream is shorter than the share")
	require.GreaterOrEqual(t, res.Received.StreamBytes, res.Received.StreamSize, "the stream bytes of all attempts are less than the stream")
	require.GreaterOrEqual(t, res.Bytes, e.shareSize, "the wire bytes of all attempts are less than the share")
	require.Greater(t, res.Bytes, rr.Bytes, "the result counts only the last attempt")

	done := e.statusJSON()
	require.NotNil(t, done.LastSuccess)
	require.Equal(t, res.Bytes, done.LastSuccess.Bytes)
	require.Equal(t, res.Received, done.LastSuccess.Received, "ferry status does not read the run's memo")

	// --log-json: every line of the restarted worker's log is one JSON
	// object with a level and a message (a log shipper reads it so).
	data, err := os.ReadFile(again.log)
	require.NoError(t, err)
	lines := 0
	for line := range strings.Lines(string(data)) {
		var entry map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &entry), "not JSON: %q", line)
		require.NotEmpty(t, entry["level"], line)
		require.NotEmpty(t, entry["msg"], line)
		lines++
	}
	require.Positive(t, lines)
	require.NotEmpty(t, logLines(again.log, "resuming partial receive"))
}
