package transfer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"
)

// ListenAndServe listens on addr (host:port) and serves until Close.
func (s *Server) ListenAndServe(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("transfer: listen on %s: %w", addr, err)
	}
	return s.Serve(l)
}

// Addr is the address of the listener Serve was last given, or nil.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Serve accepts connections on l until Close or Shutdown, then returns
// ErrServerClosed. l is closed when Serve returns.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.addr = l.Addr()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	var delay time.Duration
	for {
		raw, err := l.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// EMFILE and friends: back off and keep serving.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", zap.Error(err), zap.Duration("retry_in", delay))
			select {
			case <-time.After(delay):
			case <-s.ctx.Done():
				return ErrServerClosed
			}
			continue
		}
		delay = 0
		c := s.newConn(raw)
		if c == nil {
			raw.Close()
			continue
		}
		go s.handle(c)
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *Server) closeListenersLocked() {
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
}

// Close stops accepting, cuts every connection (their sessions stay
// resumable until they expire) and waits for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closeListenersLocked()
	for c := range s.conns {
		c.abort()
	}
	s.mu.Unlock()
	s.cancel()
	s.connWG.Wait()
	return nil
}

// Shutdown stops accepting and waits for the transfers in progress to end;
// when ctx is done first it cuts them like Close and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closeListenersLocked()
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}
