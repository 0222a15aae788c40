package activities

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/storage"
)

// estimateAheadTTL is how long an estimate started ahead waits for the
// OpenSend that uses it (the greet and plan between them take well under a
// second; a run that fails or plans another step leaves it to expire).
const estimateAheadTTL = 2 * time.Minute

// estimateKey is the send an estimate is of.
type estimateKey struct{ dataset, from, to string }

// aheadEstimate is an estimate running or done.
type aheadEstimate struct {
	done chan struct{}
	n    int64
	err  error
}

// estimateAhead starts, on a backend whose estimate is slow
// (storage.EstimateAhead), the estimate of the step a run most likely
// sends: from the job's cursor (the last snapshot the target is known to
// hold) to the snapshot just made. OpenSend of that very step takes it
// (takeEstimate) instead of running its own; anything else ignores it. It
// never fails the snapshot: the estimate is only ever an estimate, and
// OpenSend makes its own when this one failed or is not for its step.
func (h *Host) estimateAhead(job, ds, snapshot string, log *zap.Logger) {
	if ea, ok := h.Backend.(storage.EstimateAhead); !ok || !ea.EstimateAhead() {
		return
	}
	marks, err := h.Backend.Marks(context.Background(), ds)
	if err != nil {
		return
	}
	base := marks[MarkName(MarkCursor, job)]
	if base == "" || base == snapshot {
		return
	}
	key := estimateKey{ds, base, snapshot}
	e := &aheadEstimate{done: make(chan struct{})}
	h.mu.Lock()
	if h.estimates == nil {
		h.estimates = map[estimateKey]*aheadEstimate{}
	}
	if _, ok := h.estimates[key]; ok {
		h.mu.Unlock()
		return // a retried snapshot activity: the first one's runs
	}
	h.estimates[key] = e
	h.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), estimateAheadTTL)
		defer cancel()
		began := time.Now()
		e.n, e.err = h.Backend.EstimateSendSize(ctx, storage.SendRequest{Dataset: ds, From: base, To: snapshot, Job: job})
		close(e.done)
		log.Debug("send size estimated ahead", zap.String("from", base), zap.Int64("expected_bytes", e.n), zap.Duration("took", time.Since(began)), zap.Error(e.err))
		time.AfterFunc(estimateAheadTTL, func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.estimates[key] == e {
				delete(h.estimates, key)
			}
		})
	}()
}

// takeEstimate returns the estimate started ahead for req, waiting for it
// to finish; ok is false when there is none for req (or it failed), and
// the caller estimates itself.
func (h *Host) takeEstimate(ctx context.Context, req storage.SendRequest) (n int64, ok bool) {
	if req.ResumeToken != "" || req.Restore || req.Decrypted || req.From == "" {
		return 0, false
	}
	key := estimateKey{req.Dataset, req.From, req.To}
	h.mu.Lock()
	e := h.estimates[key]
	delete(h.estimates, key)
	h.mu.Unlock()
	if e == nil {
		return 0, false
	}
	select {
	case <-e.done:
		return e.n, e.err == nil
	case <-ctx.Done():
		return 0, false
	}
}
