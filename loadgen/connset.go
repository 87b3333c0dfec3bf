package loadgen

import (
	"errors"
	"net"
	"sync"
	"time"
)

// connSet is the TCP side of the canned servers: each accepted
// connection is served on a goroutine of its own (counted in wg) and
// closed when served, and closeAll closes every one still open.
type connSet struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// accept serves the connections of ln until ln is closed.
func (s *connSet) accept(ln net.Listener, wg *sync.WaitGroup, serve func(net.Conn)) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		if s.conns == nil {
			s.conns = make(map[net.Conn]struct{})
		}
		s.conns[conn] = struct{}{}
		s.mu.Unlock()
		wg.Go(func() {
			serve(conn)
			s.mu.Lock()
			delete(s.conns, conn)
			s.mu.Unlock()
			conn.Close()
		})
	}
}

// closeAll closes the open connections; accept closes any that comes
// after.
func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	for conn := range s.conns {
		conn.Close()
	}
	s.mu.Unlock()
}
