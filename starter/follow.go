package starter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferry-nas/ferry/workflows"
)

// followInterval is how often Follow looks at a run; tests shorten it.
var followInterval = time.Second

// inspectTimeout bounds one look at the run: the SDK retries a frontend
// that does not answer, and Follow should say so instead of going quiet.
const inspectTimeout = 10 * time.Second

// RunError is a replication run that ended without success.
type RunError struct {
	WorkflowID, RunID string
	// Type is the application error's type (Conflict, NotFound, NoSpace,
	// ...), or Timeout, Canceled or Terminated when the run did not fail by
	// itself; empty when unknown.
	Type string
	// Message is the application error's own message, without the SDK's
	// wrapping.
	Message string
	// Err is the error as the SDK returned it.
	Err error
}

func (e *RunError) Error() string {
	if e.Type == "" {
		return fmt.Sprintf("run %s failed: %s", e.WorkflowID, e.Message)
	}
	return fmt.Sprintf("run %s failed: %s: %s", e.WorkflowID, e.Type, e.Message)
}

func (e *RunError) Unwrap() error { return e.Err }

// runError unwraps the SDK's error for a run to the application error that
// caused it.
func runError(workflowID, runID string, err error) *RunError {
	re := &RunError{WorkflowID: workflowID, RunID: runID, Err: err, Message: err.Error()}
	var (
		appErr      *temporal.ApplicationError
		timeoutErr  *temporal.TimeoutError
		canceledErr *temporal.CanceledError
		termErr     *temporal.TerminatedError
	)
	switch {
	case errors.As(err, &appErr):
		re.Type, re.Message = appErr.Type(), appErr.Message()
	case errors.As(err, &timeoutErr):
		re.Type, re.Message = "Timeout", timeoutErr.Message()
	case errors.As(err, &canceledErr):
		re.Type, re.Message = "Canceled", "the run was cancelled"
	case errors.As(err, &termErr):
		re.Type, re.Message = "Terminated", "the run was terminated"
	}
	return re
}

// Follow waits for a run to finish. While it runs, onProgress (if not nil)
// gets the run's Progress about once a second, and only when something
// changed. It returns the run's result, or a *RunError carrying the
// application error's type and message when the run failed, was cancelled,
// terminated or timed out. Cancelling ctx stops following; the run goes on.
func Follow(ctx context.Context, c client.Client, workflowID, runID string, onProgress func(Progress)) (workflows.ReplicateResult, error) {
	var res workflows.ReplicateResult
	err := follow(ctx, c, workflowID, runID, onProgress, &res)
	return res, err
}

// follow is Follow decoding the run's result into res (a replication's or
// a restore's). While Temporal cannot be reached it reports that (a
// Progress with Unreachable set) and keeps trying: the run goes on without
// it, and following resumes when it is back.
func follow(ctx context.Context, c client.Client, workflowID, runID string, onProgress func(Progress), res any) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Room for the first wait and the ones started again below, so none
	// blocks on a send after follow returned.
	done := make(chan error, 3)
	wait := func() { done <- c.GetWorkflow(ctx, workflowID, runID).Get(ctx, res) }
	go wait()
	// refetched: the run was seen closed while the wait had not returned.
	// Under load the server's history long poll can miss the close and
	// answer only when its 20 s poll expires (measured: a 250 ms run took
	// 20.0 s to follow); a fresh wait on a closed run returns at once.
	refetched := false
	closed := func(p Progress) {
		if !refetched && p.Status != "" && !p.Running() {
			refetched = true
			go wait()
		}
	}

	var (
		last     Progress
		reported bool
		down     time.Time // since when Temporal is unreachable
	)
	emit := func(p Progress) {
		if onProgress == nil || (reported && p.same(last)) {
			return
		}
		last, reported = p, true
		onProgress(p)
	}
	unreachableNow := func(err error) {
		if down.IsZero() {
			down = time.Now()
		}
		emit(Progress{WorkflowID: workflowID, RunID: runID, Status: "Running", Unreachable: unreachableText(err, time.Since(down)), UnreachableSince: down})
	}
	report := func() {
		ictx, cancel := context.WithTimeout(ctx, inspectTimeout)
		defer cancel()
		if onProgress == nil {
			if desc, err := c.DescribeWorkflowExecution(ictx, workflowID, runID); err == nil {
				closed(Progress{Status: statusName(desc.GetWorkflowExecutionInfo().GetStatus())})
			}
			return
		}
		p, err := Inspect(ictx, c, workflowID, runID)
		if err != nil {
			if unreachable(err) && ctx.Err() == nil {
				unreachableNow(err)
			}
			return
		}
		down = time.Time{}
		if p.Running() {
			emit(p)
		}
		closed(p)
	}

	report()
	tick := time.NewTicker(followInterval)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var wee *temporal.WorkflowExecutionError
			if errors.As(err, &wee) {
				return runError(workflowID, runID, err)
			}
			if err != nil && unreachable(err) {
				unreachableNow(err)
				go func() {
					select { // the SDK already retried for a while: no hurry
					case <-time.After(followInterval):
					case <-ctx.Done():
					}
					wait()
				}()
				continue
			}
			if err != nil {
				return fmt.Errorf("waiting for run %s: %w", workflowID, err)
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			report()
		}
	}
}

// unreachable reports whether err says Temporal's frontend could not be
// reached (as opposed to an answer the frontend gave).
func unreachable(err error) bool {
	var un *serviceerror.Unavailable
	var de *serviceerror.DeadlineExceeded
	if errors.As(err, &un) || errors.As(err, &de) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// refused reports whether err says the frontend could not be connected to
// at all (not merely slow to answer).
func refused(err error) bool {
	var un *serviceerror.Unavailable
	return errors.As(err, &un) || status.Code(err) == codes.Unavailable
}

// Unreachable reports whether err says Temporal's frontend could not be
// reached; commands word such errors with the address they dialled.
func Unreachable(err error) bool { return unreachable(err) }

// unreachableText is the error's gist and how long it has lasted.
func unreachableText(err error, since time.Duration) string {
	msg := err.Error()
	var de *serviceerror.DeadlineExceeded // the SDK's form of a call that timed out
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &de) || status.Code(err) == codes.DeadlineExceeded {
		msg = fmt.Sprintf("no answer within %s", inspectTimeout)
	} else if st, ok := status.FromError(err); ok && st.Message() != "" {
		msg = st.Message()
	} else if i := strings.LastIndex(msg, ": "); i >= 0 && len(msg)-i < 200 {
		msg = msg[i+2:]
	}
	lasted := "" // the first report has lasted no time yet: "for 0s" would read as no outage
	if since >= time.Second {
		lasted = "for " + FormatDuration(since.Round(time.Second)) + "; "
	}
	return fmt.Sprintf("%s (%sthe run goes on without it, following resumes when it is back)", msg, lasted)
}
