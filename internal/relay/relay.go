// Package relay is a loopback TCP relay for tests that need a real network
// path they can watch and break: it counts the bytes each way, can cut every
// connection after a number of bytes, and can drop the open connections.
package relay

import (
	"net"
	"sync"
	"sync/atomic"
)

// Relay forwards connections accepted on its own address to a target.
type Relay struct {
	ln     net.Listener
	target string

	// Upstream counts bytes target -> client (what a source sends a receiver).
	Upstream atomic.Int64
	// Downstream counts bytes client -> target.
	Downstream atomic.Int64
	// Conns counts accepted connections.
	Conns atomic.Int64

	cutAfter atomic.Int64 // cut a connection after this many upstream bytes; 0 = never

	mu    sync.Mutex
	open  map[net.Conn]struct{}
	done  chan struct{}
	close sync.Once
}

// Start listens on 127.0.0.1 and forwards to target.
func Start(target string) (*Relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Relay{ln: ln, target: target, open: map[net.Conn]struct{}{}, done: make(chan struct{})}
	go r.accept()
	return r, nil
}

// Addr is the relay's own address, for clients.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// CutAfter makes every connection from now on break after n upstream bytes
// (0: never).
func (r *Relay) CutAfter(n int64) { r.cutAfter.Store(n) }

// DropAll closes every open connection, as a link that goes down would.
func (r *Relay) DropAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.open {
		c.Close()
	}
}

// Close stops accepting and drops every connection.
func (r *Relay) Close() error {
	r.close.Do(func() { close(r.done) })
	err := r.ln.Close()
	r.DropAll()
	return err
}

func (r *Relay) track(c net.Conn, add bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if add {
		select {
		case <-r.done:
			return false
		default:
		}
		r.open[c] = struct{}{}
	} else {
		delete(r.open, c)
	}
	return true
}

func (r *Relay) accept() {
	for {
		client, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.Conns.Add(1)
		go r.serve(client)
	}
}

func (r *Relay) serve(client net.Conn) {
	server, err := net.Dial("tcp", r.target)
	if err != nil {
		client.Close()
		return
	}
	if !r.track(client, true) || !r.track(server, true) {
		client.Close()
		server.Close()
		return
	}
	defer func() {
		client.Close()
		server.Close()
		r.track(client, false)
		r.track(server, false)
	}()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		r.pipe(client, server, &r.Downstream, 0)
		client.Close()
		server.Close()
	}()
	go func() {
		defer wg.Done()
		r.pipe(server, client, &r.Upstream, r.cutAfter.Load())
		client.Close()
		server.Close()
	}()
	wg.Wait()
}

// pipe copies src to dst, counting into n, stopping after limit bytes when
// limit > 0.
func (r *Relay) pipe(src, dst net.Conn, n *atomic.Int64, limit int64) {
	buf := make([]byte, 32<<10)
	var moved int64
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if limit > 0 && moved+int64(k) > limit {
				k = int(limit - moved)
			}
			w, werr := dst.Write(buf[:k])
			moved += int64(w)
			n.Add(int64(w))
			if werr != nil || (limit > 0 && moved >= limit) {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
