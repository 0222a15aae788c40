package transfer

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/metrics"
)

// serverConn is one client connection.
type serverConn struct {
	s      *Server
	raw    net.Conn
	tc     *tls.Conn
	remote string
	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc

	wmu       sync.Mutex // serialises writes (stream and keepalives)
	werr      error
	lastWrite time.Time
	ctrl      []byte
	wire      int64
	flow      *metrics.Flow // the session's counters once it is known
}

func (s *Server) newConn(raw net.Conn) *serverConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil
	}
	ctx, cancel := context.WithCancel(s.ctx)
	c := &serverConn{s: s, raw: raw, tc: tls.Server(raw, s.tls), remote: raw.RemoteAddr().String(), ctx: ctx, cancel: cancel}
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	return c
}

func (c *serverConn) abort() {
	c.cancel()
	c.raw.Close()
}

func (c *serverConn) refuse(sess *session, presented string, code Code, msg string) {
	fields := []zap.Field{zap.String("remote", c.remote), zap.String("reason", code.String()), zap.String("message", msg)}
	if sess != nil {
		fields = append(fields, zap.String("job", sess.spec.Job), zap.String("peer", sess.spec.Peer), zap.String("session", sess.id))
	}
	if presented != "" {
		fields = append(fields, zap.String("client", presented))
	}
	c.s.log.Warn("data-plane connection refused", fields...)
	c.writeControl(frameRefused, refusalPayload(code, msg))
}

// writeChunk bounds each Write so that the idle deadline measures silence,
// not the time a whole frame takes on a slow link.
const writeChunk = 64 << 10

func (c *serverConn) writeLocked(b []byte) error {
	if c.werr != nil {
		return c.werr
	}
	for len(b) > 0 {
		k := min(len(b), writeChunk)
		c.raw.SetWriteDeadline(time.Now().Add(c.s.idle))
		n, err := c.tc.Write(b[:k])
		c.wire += int64(n)
		c.flow.AddWire(int64(n))
		if err != nil {
			c.werr = err
			c.cancel()
			return err
		}
		b = b[k:]
	}
	c.lastWrite = time.Now()
	return nil
}

func (c *serverConn) write(frame []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(frame)
}

func (c *serverConn) writeControl(t frameType, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ctrl = appendFrame(c.ctrl[:0], t, payload)
	return c.writeLocked(c.ctrl)
}

// startKeepalive sends a keepalive whenever nothing was written for a third
// of the idle timeout: while Open or the source is slow, while the stream is
// rate-limited, while the prefix is skipped for a resume.
func (c *serverConn) startKeepalive() (stop func()) {
	interval := max(c.s.idle/3, 5*time.Millisecond)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	c.wmu.Lock()
	c.lastWrite = time.Now()
	c.wmu.Unlock()
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-c.ctx.Done():
				return
			case <-t.C:
			}
			if !c.wmu.TryLock() {
				continue // a write is in progress: that is activity enough
			}
			if time.Since(c.lastWrite) >= interval {
				c.ctrl = appendFrame(c.ctrl[:0], frameKeepalive, nil)
				c.writeLocked(c.ctrl)
			}
			c.wmu.Unlock()
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}
