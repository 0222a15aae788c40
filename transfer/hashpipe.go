package transfer

import "hash"

// hashPipe feeds a hash on its own goroutine, so that the stream digest of
// one frame runs beside the framing, TLS and socket work of the next instead
// of before it: on two cores or more the digest stops adding to the time
// per byte. Slices are hashed in order; write returns a ticket, and a slice
// may be changed once waitFor(its ticket) returned. A hashPipe is used by one
// goroutine at a time (the client serialises it with a mutex).
type hashPipe struct {
	h      hash.Hash
	in     chan []byte
	done   chan struct{} // one per slice hashed
	exited chan struct{}
	sent   int64 // tickets handed out
	hashed int64 // tickets known to be hashed
	closed bool
}

// hashPipeDepth bounds the slices in flight (a frame may be delivered in
// several reads on the client).
const hashPipeDepth = 16

func newHashPipe(h hash.Hash) *hashPipe {
	p := &hashPipe{h: h, in: make(chan []byte, hashPipeDepth), done: make(chan struct{}, hashPipeDepth), exited: make(chan struct{})}
	go func() {
		defer close(p.exited)
		for b := range p.in {
			p.h.Write(b)
			p.done <- struct{}{} // never blocks: at most hashPipeDepth are in flight
		}
	}()
	return p
}

// write queues b and returns its ticket; after stop it hashes b at once.
func (p *hashPipe) write(b []byte) int64 {
	p.sent++
	if p.closed {
		p.h.Write(b)
		p.hashed = p.sent
		return p.sent
	}
	p.waitFor(p.sent - hashPipeDepth)
	p.in <- b
	return p.sent
}

// waitFor returns once the slice with this ticket, and every earlier one,
// is hashed.
func (p *hashPipe) waitFor(ticket int64) {
	for p.hashed < ticket {
		<-p.done
		p.hashed++
	}
}

// wait returns once at most n slices are still in flight.
func (p *hashPipe) wait(n int) { p.waitFor(p.sent - int64(n)) }

// sum waits for every slice, stops the goroutine and returns the digest.
func (p *hashPipe) sum(b []byte) []byte {
	p.stop()
	return p.h.Sum(b)
}

// stop hashes what is in flight and ends the goroutine; the hash stays
// usable (later writes are hashed synchronously). Safe to call twice.
func (p *hashPipe) stop() {
	if p.closed {
		return
	}
	p.closed = true
	close(p.in)
	<-p.exited
	p.hashed = p.sent
}
