package btrfs

import (
	"os"

	"github.com/ferry-nas/ferry/resume"
)

// checkpointer makes a staged receive's spool durable off the stream's
// path: one checkpoint at a time is fsync'd and recorded in the background
// while the next commands are spooled (the checkpoint only names bytes that
// were flushed before it started, so the spool is always at least that
// long). The receive collects finished checkpoints with poll or wait.
type checkpointer struct {
	req  chan ckReq
	done chan ckDone
	busy bool
}

type ckReq struct {
	pos      resume.Position
	st       streamState
	complete bool
}

type ckDone struct {
	pos resume.Position
	err error
}

// newCheckpointer starts the background fsync of f; save records a
// checkpoint once its bytes are durable.
func newCheckpointer(f *os.File, save func(ckReq) error) *checkpointer {
	c := &checkpointer{req: make(chan ckReq), done: make(chan ckDone, 1)}
	go func() {
		for r := range c.req {
			err := f.Sync()
			if err == nil {
				err = save(r)
			}
			c.done <- ckDone{pos: r.pos, err: err}
		}
	}()
	return c
}

// start begins a checkpoint of bytes the caller flushed to the file; only
// when none is in flight.
func (c *checkpointer) start(r ckReq) {
	c.busy = true
	c.req <- r
}

// poll returns the checkpoint in flight if it finished.
func (c *checkpointer) poll() (ckDone, bool) {
	if !c.busy {
		return ckDone{}, false
	}
	select {
	case d := <-c.done:
		c.busy = false
		return d, true
	default:
		return ckDone{}, false
	}
}

// wait returns the checkpoint in flight once it finished (false: none).
func (c *checkpointer) wait() (ckDone, bool) {
	if !c.busy {
		return ckDone{}, false
	}
	c.busy = false
	return <-c.done, true
}

// stop waits for the checkpoint in flight and ends the goroutine.
func (c *checkpointer) stop() {
	c.wait()
	close(c.req)
}
