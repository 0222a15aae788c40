package zfs

// Native resume (OpenZFS: feature@extensible_dataset, `zfs receive -s`,
// `zfs send -t`). A receive run with -s that is interrupted leaves its
// state on the target (the partially received dataset of a full stream,
// a %recv clone of an incremental) and a receive_resume_token on the
// dataset; the source continues it with `zfs send -t <token>` and
// `zfs receive -A` throws it away. Pools without the feature (zfs-fuse,
// version 23) keep nothing and restart from byte 0 (docs/storage-zfs.md).

import (
	"context"
	"errors"
	"strings"

	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/storage"
)

// resumable reports whether a receive of req runs with -s: the pool and
// tool have resumable receive and the job did not turn resume off.
func (b *Backend) resumable(req storage.ReceiveRequest) bool {
	return b.feat.ResumableReceive && req.Mode != storage.ResumeOff
}

// resumeToken is fds's receive_resume_token: "" when it has none, when
// the dataset does not exist or when the pool keeps no resume state.
func (b *Backend) resumeToken(ctx context.Context, fds string) (string, error) {
	if !b.feat.ResumableReceive {
		return "", nil
	}
	out, err := run(ctx, b.zfs, nil, "get", "-H", "-o", "value", "receive_resume_token", fds)
	if err != nil {
		var ce *cmdError
		if errors.As(err, &ce) && ce.notFound() {
			return "", nil
		}
		return "", err
	}
	if v := strings.TrimSpace(out); v != "-" {
		return v, nil
	}
	return "", nil
}

// tokenOwner is the name of the receive a resume token on ds belongs to:
// the newest of ferry's records of a receive run with -s. "" when ferry
// ran none (the state is someone else's, and ferry leaves it alone).
func tokenOwner(recs map[string]receiveRecord) string {
	owner, started := "", int64(-1)
	for name, r := range recs {
		if r.Resumable && (r.Started > started || r.Started == started && name > owner) {
			owner, started = name, r.Started
		}
	}
	return owner
}

// abortResumable runs `zfs receive -A` on ds when it holds resume state of
// a receive ferry ran (a record with -s): the partially received dataset
// of a full stream or the %recv clone of an incremental goes, and with it
// the token. Someone else's resume state is left alone.
func (b *Backend) abortResumable(ctx context.Context, op, ds, name string, recs map[string]receiveRecord) (aborted bool, err error) {
	owner := tokenOwner(recs)
	if owner == "" {
		return false, nil
	}
	fds := b.full(ds)
	tok, err := b.resumeToken(ctx, fds)
	if err != nil {
		return false, classify(err, storage.KindTemporary, op, ds, name, "")
	}
	if tok == "" {
		return false, nil
	}
	if _, err := run(ctx, b.zfs, nil, "receive", "-A", fds); err != nil {
		var ce *cmdError
		if errors.As(err, &ce) && ce.says("does not have any resumable receive state") {
			return true, nil
		}
		return false, classify(err, storage.KindTemporary, op, ds, name, "run `zfs receive -A "+fds+"` by hand")
	}
	storage.Logger(ctx, b.log).Info("zfs: aborted the resumable partial receive (zfs receive -A); the step starts from byte 0",
		zap.String("dataset", ds), zap.String("snapshot", owner), zap.String("resume_token", short(tok)))
	return true, nil
}

// checkResumeToken is the native counterpart of storage.CheckResume: a
// stream continuing token may only go into the partial receive that holds
// it, of the same snapshot from the same source on the same base.
func (b *Backend) checkResumeToken(ctx context.Context, op string, req storage.ReceiveRequest, recs map[string]receiveRecord) error {
	ds, name := req.Dataset, req.Name
	const fix = "the stream continues a partial receive the target no longer holds as it was: run the job again (the planner resumes what the target holds, or starts over)"
	if !b.feat.ResumableReceive {
		return storage.Errorf(storage.KindUnsupported, op, ds, name, fix, "this pool or zfs tool has no resumable receive (receive -s)")
	}
	tok, err := b.resumeToken(ctx, b.full(ds))
	if err != nil {
		return classify(err, storage.KindTemporary, op, ds, name, "")
	}
	rec, ok := recs[name]
	switch {
	case tok == "":
		return storage.Errorf(storage.KindInvalid, op, ds, name, fix, "%s holds no resume token; the stream continues token %s", b.full(ds), short(req.ResumeToken))
	case tok != req.ResumeToken:
		return storage.Errorf(storage.KindInvalid, op, ds, name, fix, "%s holds resume token %s, the stream continues %s", b.full(ds), short(tok), short(req.ResumeToken))
	case !ok || !rec.Resumable || tokenOwner(recs) != name:
		return storage.Errorf(storage.KindInvalid, op, ds, name, fix, "the resume state on %s is not ferry's receive of %q", b.full(ds), name)
	case rec.SourceGUID != req.SourceGUID:
		return storage.Errorf(storage.KindInvalid, op, ds, name, fix, "the partial receive is of source snapshot %s, not %s", orNone(rec.SourceGUID), orNone(req.SourceGUID))
	case rec.Parent != req.Parent:
		return storage.Errorf(storage.KindInvalid, op, ds, name, fix, "the partial receive is based on %q, not %q", rec.Parent, req.Parent)
	}
	return nil
}

// short is a token cut for messages (tokens run to hundreds of characters).
func short(tok string) string {
	if len(tok) > 24 {
		return tok[:24] + "…"
	}
	return tok
}

// resumeRefusal reports whether a failed `zfs send -t` (or `-nvP -t`)
// says the token can never be resumed from this source: its snapshot or
// incremental base is gone (or is another snapshot now), or the token is
// corrupt. OpenZFS's words (lib/libzfs/libzfs_sendrecv.c).
func resumeRefusal(err error) (string, bool) {
	var ce *cmdError
	if !errors.As(err, &ce) || ce.ctxErr != nil {
		return "", false
	}
	if ce.says("used in the initial send no longer exists", "is no longer the same snapshot used in the initial send",
		"no longer exists", "resume token is corrupt", "unable to access") {
		return ce.stderr, true
	}
	return "", false
}
