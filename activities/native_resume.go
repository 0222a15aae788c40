package activities

import (
	"context"
	"errors"

	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/storage"
)

// Native resume (zfs receive_resume_token): the target's partial receive
// holds a token, the source continues it with `zfs send -t`. The token is
// the target's, so the workflow passes it to OpenSend (from the plan, or
// from a receive's SessionLostDetails); these are the two ends of that.

// estimateSend estimates req's stream. A resume token the source can no
// longer continue (its snapshot or base gone there) is dropped: the
// session then sends the step from byte 0, and refused says why.
func (h *Host) estimateSend(ctx context.Context, req *storage.SendRequest, log *zap.Logger) (n int64, refused string, err error) {
	if n, ok := h.takeEstimate(ctx, *req); ok {
		log.Info("send size estimated ahead, while the greet ran", zap.Int64("expected_bytes", n))
		return n, "", nil
	}
	n, err = h.Backend.EstimateSendSize(ctx, *req)
	if err == nil || req.ResumeToken == "" || !errors.Is(err, storage.ErrResumeRefused) {
		return n, "", err
	}
	refused = err.Error()
	log.Warn("the source cannot continue the target's partial receive: its resume token names a snapshot or base this host no longer has; "+
		"the step is sent again from byte 0 and the target aborts the partial (zfs receive -A)",
		zap.String("resume_token", shortToken(req.ResumeToken)), zap.Error(err))
	req.ResumeToken = ""
	n, err = h.Backend.EstimateSendSize(ctx, *req)
	return n, refused, err
}

func refusedToken(token, refused string) string {
	if refused == "" {
		return ""
	}
	return token
}

// nativeResume decides whether this receive continues the target's
// partial by its resume token: the token the session's stream continues
// when the target holds exactly that. When the target holds another one
// (the receive went further since the session was opened, or the session
// starts over without having been refused it) a workflow that can
// (in.NativeResume) is asked for a new session continuing it; otherwise
// the receive starts over, and the backend aborts the partial.
func (h *Host) nativeResume(ctx context.Context, in ReceiveInput, log *zap.Logger) (string, error) {
	sess := in.Session
	if sess.ResumeToken == "" && !in.NativeResume || storage.ResumeMode(in.Mode) == storage.ResumeOff {
		return "", nil // stream.resume: off starts over; the backend aborts the partial
	}
	partials, err := h.Backend.Partials(ctx, in.Dataset)
	if err != nil {
		return "", h.fail(log, "list partial receives", err)
	}
	held := ""
	for _, p := range partials {
		if p.ResumeToken != "" && p.Name == in.Name && p.SourceGUID == in.SourceGUID {
			held = p.ResumeToken
		}
	}
	switch {
	case sess.ResumeToken != "" && held == sess.ResumeToken:
		log.Info("resuming the partial receive where it stopped (native resume token)", zap.String("resume_token", shortToken(held)))
		return held, nil
	case !in.NativeResume:
		return "", nil
	case held != "" && held != sess.RefusedToken:
		return "", h.reopen(log, held, "the target holds a resumable partial receive of this step that this send session does not continue; a new session continues it")
	case sess.ResumeToken != "":
		return "", h.reopen(log, "", "the partial receive this send session continues is no longer on the target; a new session sends the step from byte 0")
	case sess.ResumeRefused != "":
		log.Warn("the source cannot continue the partial receive (its resume token names a snapshot or base the source no longer has): "+
			"aborting it (zfs receive -A) and receiving the step from byte 0", zap.String("reason", sess.ResumeRefused))
	}
	return "", nil
}

// reopen is the SessionLost error that asks the workflow for a session
// continuing token ("" : from byte 0).
func (h *Host) reopen(log *zap.Logger, token, why string) error {
	log.Info(why, zap.String("resume_token", shortToken(token)))
	return temporal.NewApplicationErrorWithOptions(why, ErrSessionLost,
		temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{SessionLostDetails{ResumeToken: token}}})
}

// shortToken cuts a token (hundreds of characters) for logs.
func shortToken(t string) string {
	if len(t) > 24 {
		return t[:24] + "…"
	}
	return t
}
