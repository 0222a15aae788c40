package transfer

import (
	"context"

	"golang.org/x/time/rate"
)

// jobLimiter is the token bucket of one job, shared by its sessions.
type jobLimiter struct {
	lim  *rate.Limiter
	refs int
}

func newJobLimiter() *jobLimiter { return &jobLimiter{lim: rate.NewLimiter(rate.Inf, 0)} }

// set changes the rate. The burst (and the size of data frames while a
// limit is set) is a quarter of a second of traffic, between 16 KiB and one
// full frame, so that a limited stream is smooth rather than bursty.
func (j *jobLimiter) set(bps int64) {
	if bps <= 0 {
		j.lim.SetLimit(rate.Inf)
		return
	}
	j.lim.SetLimit(rate.Limit(bps))
	j.lim.SetBurst(chunkFor(bps) + headerSize)
}

func chunkFor(bps int64) int {
	return int(min(max(bps/4, 16<<10), MaxPayload))
}

// chunk is the stream bytes to put in the next data frame.
func (j *jobLimiter) chunk() int {
	l := j.lim.Limit()
	if l == rate.Inf {
		return MaxPayload
	}
	return chunkFor(int64(l))
}

func (j *jobLimiter) wait(ctx context.Context, n int) error {
	for n > 0 {
		if j.lim.Limit() == rate.Inf {
			return nil
		}
		k := min(n, max(j.lim.Burst(), 1))
		if err := j.lim.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}
