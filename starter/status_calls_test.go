package starter

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc"
)

// callCounter counts the gRPC calls a client makes, by method.
type callCounter struct {
	mu    sync.Mutex
	calls map[string]int
}

func (c *callCounter) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	c.mu.Lock()
	c.calls[method[strings.LastIndex(method, "/")+1:]]++
	c.mu.Unlock()
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (c *callCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.calls
	c.calls = map[string]int{}
	return m
}

// Status answers for every job from a handful of calls, not a few per job:
// twelve jobs with finished runs cost one schedule list and a few
// visibility lists, and nothing per job (outcomes come from the memos).
func TestStatusCallsDoNotGrowWithJobs(t *testing.T) {
	ctx := testCtx(t)
	counter := &callCounter{calls: map[string]int{}}
	cc := testServer.NewClientWithOptions(client.Options{ConnectionOptions: client.ConnectionOptions{
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(counter.intercept)}}})
	defer cc.Close()

	var yaml strings.Builder
	for i := range 12 {
		fmt.Fprintf(&yaml, "  calls%02d:\n    source: nas-a:c%02d\n    target: nas-b:c%02d\n", i, i, i)
	}
	cfg := testConfig(t, yaml.String())
	_, err := Apply(ctx, tc, cfg, ApplyOptions{})
	require.NoError(t, err)
	for _, name := range cfg.JobNames() {
		setFake(name, &fakeJob{})
		st, err := Run(ctx, tc, name)
		require.NoError(t, err)
		_, err = Follow(ctx, tc, st.WorkflowID, st.RunID, nil)
		require.NoError(t, err)
	}
	// Once visibility shows every run and schedule, count one Status each.
	require.Eventually(t, func() bool {
		sts, err := Status(ctx, tc, cfg)
		require.NoError(t, err)
		for _, s := range sts {
			if s.LastSuccess == nil || s.LastSuccess.Snapshot == "" {
				return false
			}
		}
		_, err = Status(ctx, cc, cfg)
		require.NoError(t, err)
		return counter.take()["DescribeSchedule"] == 0 // every schedule came from the list
	}, 15*time.Second, 200*time.Millisecond)

	sts, err := Status(ctx, cc, cfg)
	require.NoError(t, err)
	calls := counter.take()
	for _, s := range sts {
		assert.NotNil(t, s.LastSuccess, s.Job)
	}
	// One schedule list, one list of running runs, one of finished runs
	// (SQL visibility may hand back a page token with a short page, which
	// costs one more list call, never one per job).
	assert.Equal(t, 1, calls["ListSchedules"], "%v", calls)
	assert.LessOrEqual(t, calls["ListWorkflowExecutions"], 4, "%v", calls)
	for _, perJob := range []string{"DescribeSchedule", "GetWorkflowExecutionHistory", "DescribeWorkflowExecution", "QueryWorkflow"} {
		assert.Zero(t, calls[perJob], "%s for 12 jobs without a running run: %v", perJob, calls)
	}
}
