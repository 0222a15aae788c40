package transfer

import "hash"

// hashPipe feeds a hash on its own goroutine, so that the source's SHA-256
// of frame k runs beside the framing, encryption and socket writes of frame
// k+1 instead of before them: on a host with two cores or more the digest
// stops adding to the time per byte. At most two slices are in flight; the
// caller must not change a slice until wait says it was hashed.
type hashPipe struct {
	h       hash.Hash
	in      chan []byte
	done    chan struct{} // one per slice hashed
	exited  chan struct{}
	pending int // slices sent and not yet confirmed
	closed  bool
}

const hashPipeDepth = 2

func newHashPipe(h hash.Hash) *hashPipe {
	p := &hashPipe{h: h, in: make(chan []byte, hashPipeDepth), done: make(chan struct{}, hashPipeDepth), exited: make(chan struct{})}
	go func() {
		defer close(p.exited)
		for b := range p.in {
			p.h.Write(b)
			p.done <- struct{}{} // never blocks: at most hashPipeDepth are pending
		}
	}()
	return p
}

// write queues b; it first waits for room, so at most hashPipeDepth slices
// are pending.
func (p *hashPipe) write(b []byte) {
	p.wait(hashPipeDepth - 1)
	p.in <- b
	p.pending++
}

// wait returns once at most n slices are pending: every older one has been
// hashed (slices are hashed in order) and may be reused.
func (p *hashPipe) wait(n int) {
	for p.pending > n {
		<-p.done
		p.pending--
	}
}

// sum waits for every slice, stops the goroutine and returns the digest.
func (p *hashPipe) sum(b []byte) []byte {
	p.stop()
	return p.h.Sum(b)
}

// stop ends the goroutine after the pending slices; safe to call twice.
func (p *hashPipe) stop() {
	if p.closed {
		return
	}
	p.closed = true
	close(p.in)
	<-p.exited
	p.pending = 0
}
