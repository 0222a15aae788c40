package e2e

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/ferry-nas/ferry/activities"
)

// TestTargetHostDown: with the target's worker down the run does not hang:
// it fails after the job's timeouts.host with HostUnavailable, naming the
// host and what to check, and `ferry run --wait` exits non-zero saying so.
func TestTargetHostDown(t *testing.T) {
	e := newEnv(t, envOptions{ShareSize: 1 << 20, HostTimeout: "10s"})
	e.apply()
	e.kill(target)

	res, st := e.runCLI()
	require.NotZero(t, res.Code, "ferry run --wait succeeded with the target's worker down")
	require.Contains(t, res.Out, activities.ErrHostUnavailable)
	require.Contains(t, res.Out, "host "+target)
	require.Contains(t, res.Out, "ferry worker --host "+target)
	_, err := e.result(st)
	var ae *temporal.ApplicationError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, activities.ErrHostUnavailable, ae.Type())
}
