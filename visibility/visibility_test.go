package visibility_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/server/temporaltest"

	"github.com/ferry-nas/ferry/visibility"
)

func TestRegister(t *testing.T) {
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	c := ts.GetDefaultClient()
	ns := ts.GetDefaultNamespace()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	require.NoError(t, visibility.Register(ctx, c, ns))
	require.NoError(t, visibility.Register(ctx, c, ns), "a second Register is a no-op")

	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
	require.NoError(t, err)
	for _, name := range []string{visibility.Job, visibility.Source, visibility.Target, visibility.Phase} {
		require.Equal(t, enumspb.INDEXED_VALUE_TYPE_KEYWORD, resp.GetCustomAttributes()[name], name)
	}

	// Usable as soon as Register returns: a run can carry them.
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        "ferry-visibility-test",
		TaskQueue: "no-worker",
		TypedSearchAttributes: temporal.NewSearchAttributes(
			visibility.FerryJob.ValueSet("share01"),
			visibility.FerrySource.ValueSet("nas-a:share01"),
			visibility.FerryTarget.ValueSet("nas-b:replicas/share01"),
			visibility.FerryPhase.ValueSet("snapshot"),
		),
	}, "ferry.Replicate")
	require.NoError(t, err)
	require.NotEmpty(t, run.GetRunID())
}

func TestRegisterRejectsWrongType(t *testing.T) {
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	c := ts.GetDefaultClient()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	ns := ts.GetDefaultNamespace()
	_, err := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        ns,
		SearchAttributes: map[string]enumspb.IndexedValueType{visibility.Phase: enumspb.INDEXED_VALUE_TYPE_INT},
	})
	require.NoError(t, err)

	err = visibility.Register(ctx, c, ns)
	require.Error(t, err)
	require.Contains(t, err.Error(), "FerryPhase")
	require.Contains(t, err.Error(), "type Int")
	require.Contains(t, err.Error(), "search-attribute remove")
}
