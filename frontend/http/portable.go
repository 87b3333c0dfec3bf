package http

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"trackd/internal/ratelog"
)

// The portable Server: a net.Listener and a goroutine per connection,
// speaking the same HTTP through a responder per connection. It is what
// Listen gives outside Linux, and with ServerOptions.GoroutinePerConn (a
// Handler whose store may block).

// listenPortable binds addr and serves h with a goroutine per connection.
func listenPortable(addr string, h *Handler, opts ServerOptions) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		addr:   ln.Addr(),
		log:    opts.Logger,
		cancel: cancel,
		done:   make(chan struct{}),
		errc:   make(chan error, 1),
	}
	b := &portableBackend{
		s:       s,
		ln:      ln,
		h:       h,
		opts:    opts,
		ctx:     ctx,
		stop:    make(chan struct{}),
		conns:   make(map[*portableConn]struct{}),
		bufSize: max(opts.MaxHeaderBytes, 4<<10),
	}
	if opts.MaxConns > 0 {
		b.slots = make(chan struct{}, opts.MaxConns)
	}
	s.be = b
	b.wg.Go(b.acceptLoop)
	go func() {
		b.wg.Wait()
		s.stopped()
	}()
	return s, nil
}

type portableBackend struct {
	s       *Server
	ln      net.Listener
	h       *Handler
	opts    ServerOptions
	ctx     context.Context
	slots   chan struct{} // MaxConns semaphore; nil: no limit
	bufSize int
	pool    sync.Pool // *portableConn

	wg       sync.WaitGroup
	stopOnce sync.Once
	stop     chan struct{} // closed by drain and kill

	mu       sync.Mutex
	conns    map[*portableConn]struct{}
	draining bool
}

// portableConn is a connection and its buffers (pooled without the
// connection).
type portableConn struct {
	c       net.Conn
	idle    bool // blocked reading the first bytes of a request; guarded by mu
	resp    *responder
	in, out []byte
}

func (b *portableBackend) drain() {
	b.stopAccepting()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.draining = true
	for pc := range b.conns {
		if pc.idle {
			pc.c.Close()
		}
	}
}

func (b *portableBackend) kill() {
	b.stopAccepting()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.draining = true
	for pc := range b.conns {
		pc.c.Close()
	}
}

func (b *portableBackend) stopAccepting() {
	b.stopOnce.Do(func() {
		close(b.stop)
		b.ln.Close()
	})
}

func (b *portableBackend) acceptLoop() {
	for {
		if b.slots != nil {
			select {
			case b.slots <- struct{}{}:
			case <-b.stop:
				return
			}
		}
		c, err := b.ln.Accept()
		if err != nil {
			if b.slots != nil {
				<-b.slots
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			b.opts.Errors.Log(b.ctx, slog.LevelError, ratelog.KindAccept, "http: accept failed; pausing", "err", err, "pause", acceptPause)
			select {
			case <-time.After(acceptPause):
			case <-b.stop:
				return
			}
			continue
		}
		pc, _ := b.pool.Get().(*portableConn)
		if pc == nil {
			pc = &portableConn{
				resp: newResponder(b.ctx, b.h, b.opts.MaxHeaderBytes),
				in:   make([]byte, b.bufSize),
				out:  make([]byte, 0, 4<<10),
			}
		}
		pc.c = c
		b.mu.Lock()
		if b.draining {
			b.mu.Unlock()
			c.Close()
			b.done(pc)
			return
		}
		b.conns[pc] = struct{}{}
		b.mu.Unlock()
		b.wg.Go(func() { b.serve(pc) })
	}
}

func (b *portableBackend) done(pc *portableConn) {
	pc.c = nil
	b.pool.Put(pc)
	if b.slots != nil {
		<-b.slots
	}
}

// serve serves one connection until it closes.
func (b *portableBackend) serve(pc *portableConn) {
	c := pc.c
	defer func() {
		b.mu.Lock()
		delete(b.conns, pc)
		b.mu.Unlock()
		c.Close()
		b.done(pc)
	}()
	var remote netip.AddrPort
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		remote = ta.AddrPort()
	}
	o := &b.opts
	n := 0        // bytes in pc.in: the start of the next request
	scanned := 0  // of which searched for the end of a head in vain
	first := true // no reply yet: the read-header timeout runs from the start
	for {
		if n == 0 {
			if !b.setIdle(pc, true) {
				return
			}
			t := o.IdleTimeout
			if first {
				t = o.ReadHeaderTimeout
			}
			setDeadline(c.SetReadDeadline, t)
		}
		m, err := c.Read(pc.in[n:])
		if n == 0 {
			b.setIdle(pc, false)
			if m > 0 && !first {
				// A request's first bytes: its head has until then.
				setDeadline(c.SetReadDeadline, o.ReadHeaderTimeout)
			}
		}
		if m == 0 && err != nil {
			return
		}
		n += m
		answered := false
		for {
			res := pc.resp.respond(pc.in[:n], scanned, remote, pc.out[:0], b.isDraining(), time.Now())
			pc.out = res.out[:0]
			if len(res.out) > 0 || len(res.tail) > 0 {
				first, answered = false, true
				setDeadline(c.SetWriteDeadline, o.WriteTimeout)
				if _, err := c.Write(res.out); err != nil {
					return
				}
				if len(res.tail) > 0 {
					if _, err := c.Write(res.tail); err != nil {
						return
					}
				}
			}
			n = copy(pc.in, pc.in[res.n:n])
			if res.close {
				if res.linger {
					linger(c)
				}
				return
			}
			if res.n == 0 || n == 0 {
				scanned = n
				break
			}
			scanned = 0
		}
		if answered && n > 0 {
			// The next request has begun.
			setDeadline(c.SetReadDeadline, o.ReadHeaderTimeout)
		}
	}
}

// setIdle marks the connection idle (waiting for a request) or not. It
// reports false if the Server is shutting down and the connection is to
// close.
func (b *portableBackend) setIdle(pc *portableConn, idle bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	pc.idle = idle
	return !b.draining || !idle
}

func (b *portableBackend) isDraining() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.draining
}

// setDeadline sets a deadline t from now, or none for t = 0.
func setDeadline(set func(time.Time) error, t time.Duration) {
	if t > 0 {
		set(time.Now().Add(t))
	} else {
		set(time.Time{})
	}
}

// linger shuts down the sending side and reads until the client closes
// or lingerTime passes: see batch.linger.
func linger(c net.Conn) {
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.SetReadDeadline(time.Now().Add(lingerTime))
	var buf [512]byte
	for {
		if _, err := c.Read(buf[:]); err != nil {
			return
		}
	}
}
