package worker

import (
	"context"
	"errors"
	"reflect"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"

	"github.com/ferry-nas/ferry/metrics"
)

// stepMetrics is the activity interceptor that times every step this
// worker runs and counts its failures by error type.
type stepMetrics struct {
	interceptor.WorkerInterceptorBase
	m *metrics.Metrics
}

func (s *stepMetrics) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	a := &stepActivity{m: s.m}
	a.Next = next
	return a
}

type stepActivity struct {
	interceptor.ActivityInboundInterceptorBase
	m *metrics.Metrics
}

func (a *stepActivity) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	start := time.Now()
	res, err := a.Next.ExecuteActivity(ctx, in)
	a.m.Step(jobOf(in.Args), activity.GetInfo(ctx).ActivityType.Name, time.Since(start), errorType(err))
	return res, err
}

// jobOf is the Job field of an activity's input struct ("" when it has
// none): every ferry activity takes one input struct, most with the job.
func jobOf(args []any) string {
	if len(args) == 0 {
		return ""
	}
	v := reflect.ValueOf(args[0])
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return ""
	}
	f := v.FieldByName("Job")
	if !f.IsValid() || f.Kind() != reflect.String {
		return ""
	}
	return f.String()
}

// errorType is the failure's type as the workflow sees it: the
// application error's type (NoSpace, NotFound, Conflict, Unsupported,
// Invalid, Temporary, SessionLost, ...), Canceled, or Unknown; "" for
// success.
func errorType(err error) string {
	var app *temporal.ApplicationError
	var canceled *temporal.CanceledError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &app) && app.Type() != "":
		return app.Type()
	case errors.As(err, &canceled), errors.Is(err, context.Canceled):
		return "Canceled"
	default:
		return "Unknown"
	}
}
