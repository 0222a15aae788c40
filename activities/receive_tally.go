package activities

import (
	"context"
	"sync"

	"go.temporal.io/sdk/activity"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
)

// Reasons a retried receive starts over from byte 0 (ReceiveProgress.Restart).
const (
	RestartModeOff    = "off mode"
	RestartNoPartial  = "the target kept no resumable partial"
	RestartMismatched = "the source's stream no longer matched the partial"
)

// receiveTally is what the attempts of one Receive activity moved. A retry
// starts from the last heartbeat of the attempt before it, so a receiver
// killed mid-stream does not make the bytes it had moved disappear from the
// totals (a 293 MiB stream resumed after a kill reports 293 MiB, not the
// 213 MiB of the last attempt).
type receiveTally struct {
	mu sync.Mutex
	// Done by earlier attempts, and by earlier passes of this one (a
	// restart after the source refused the resume).
	streamBefore, wireBefore int64
	reconnectsBefore         int
	attempt                  int32
	start                    int64
	resumes, restarts        int
	restart                  string
	interval                 float64
	// earlier is the last heartbeat of the attempt before, if any.
	earlier *ReceiveProgress
	// end is the stream offset the last pass ended at.
	end int64
}

// newReceiveTally reads the previous attempt's last heartbeat, if any.
func newReceiveTally(ctx context.Context, every float64) *receiveTally {
	t := &receiveTally{attempt: 1, interval: every}
	if !activity.IsActivity(ctx) {
		return t
	}
	t.attempt = activity.GetInfo(ctx).Attempt
	var hb ReceiveProgress
	if activity.HasHeartbeatDetails(ctx) && activity.GetHeartbeatDetails(ctx, &hb) == nil {
		t.earlier = &hb
		t.streamBefore, t.wireBefore, t.reconnectsBefore = hb.StreamSent, hb.WireSent, hb.Reconnects
		t.resumes, t.restarts, t.restart = hb.Resumes, hb.Restarts, hb.Restart
		if t.streamBefore == 0 && hb.Bytes > hb.StartOffset {
			// A heartbeat of a worker that did not count yet.
			t.streamBefore = hb.Bytes - hb.StartOffset
		}
	}
	return t
}

// begin records where this pass of the attempt starts. After an earlier
// attempt that moved bytes it is a resume or a restart; resuming past the
// earlier attempt's last heartbeat proves it moved the bytes in between.
func (t *receiveTally) begin(from resume.Position, resumeOK bool, mode string, compress bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.start = 0
	if resumeOK {
		t.start = from.Offset
	}
	e := t.earlier
	if e == nil || e.Bytes <= e.StartOffset {
		return
	}
	t.earlier = nil // counted once, on the first pass
	if t.start > 0 {
		t.resumes++
		if gap := t.start - e.Bytes; gap > 0 {
			t.streamBefore += gap
			if !compress { // uncompressed frames are never smaller than their payload
				t.wireBefore += gap
			}
		}
		return
	}
	t.restarts++
	t.restart = RestartNoPartial
	if storage.ResumeMode(mode) == storage.ResumeOff {
		t.restart = RestartModeOff
	}
}

// restartAfterMismatch counts the pass that starts over because the source
// refused the resume.
func (t *receiveTally) restartAfterMismatch() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.restarts++
	t.restart = RestartMismatched
	t.start = 0
}

// passDone adds a finished (or failed) pass's counts.
func (t *receiveTally) passDone(stream, wire int64, reconnects int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.end = t.start + stream
	t.streamBefore += stream
	t.wireBefore += wire
	t.reconnectsBefore += reconnects
}

// progress is the heartbeat for a pass at stream position pos that has
// moved wire bytes and reconnected reconnects times so far.
func (t *receiveTally) progress(pos, expected, durable int64, rate, wireRate float64, wire int64, reconnects int) ReceiveProgress {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := ReceiveProgress{
		Bytes: pos, Expected: expected, DurableOffset: durable, Rate: rate, WireRate: wireRate,
		StreamSent: t.streamBefore + max(pos-t.start, 0), WireSent: t.wireBefore + wire,
		Attempt: t.attempt, StartOffset: t.start,
		Resumes: t.resumes, Restarts: t.restarts, Restart: t.restart,
		Reconnects: t.reconnectsBefore + reconnects, Interval: t.interval,
	}
	p.Line = p.String()
	return p
}

// fill writes the totals into the activity's result.
func (t *receiveTally) fill(res *ReceiveResult) {
	t.mu.Lock()
	defer t.mu.Unlock()
	res.StreamSent, res.StreamSize, res.WireSent, res.TotalReconnects = t.streamBefore, t.end, t.wireBefore, t.reconnectsBefore
	res.Attempts, res.Resumes, res.Restarts, res.Restart = t.attempt, t.resumes, t.restarts, t.restart
}
