package http

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"trackd/internal/ratelog"
)

// ServerOptions configure a Server. Zero durations and limits mean none.
type ServerOptions struct {
	// ReadHeaderTimeout is the time a client has to send a whole request
	// head, counted from the connection's start or, on a keep-alive
	// connection, from the request's first bytes. A connection that takes
	// longer is closed (slowloris).
	ReadHeaderTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its
	// next request.
	IdleTimeout time.Duration
	// WriteTimeout is the time a reply may take to be written: a client
	// that does not read a long reply is dropped.
	WriteTimeout time.Duration
	// MaxHeaderBytes bounds the request line and header fields of a
	// request; a longer head gets 431. Zero means 16 KiB.
	MaxHeaderBytes int
	// MaxConns bounds the open connections. Beyond it, new connections
	// wait in the kernel's accept queue until one closes.
	MaxConns int
	// Loops is the number of event loops, each with its own listening
	// socket on the address (SO_REUSEPORT, so that the kernel spreads the
	// connections). Zero means runtime.GOMAXPROCS(0). Linux only: elsewhere
	// the Server has one listener and a goroutine per connection.
	Loops int
	// GoroutinePerConn serves each connection on a goroutine of its own,
	// as outside Linux, rather than on event loops. An event loop answers
	// its requests one at a time, which suits a store that answers from
	// memory in microseconds; one that waits on the network (Redis) would
	// hold up every connection of the loop for each round trip.
	GoroutinePerConn bool
	// Logger receives errors (accept failures, for instance), never a
	// line per request; nil discards them.
	Logger *slog.Logger
	// Errors logs the accept failures (kind "accept") at a bounded rate
	// and counts them; nil means one of the Server's own, over Logger,
	// that counts nothing.
	Errors *ratelog.Logger
}

const (
	defaultMaxHeaderBytes = 16 << 10
	// lingerTime is how long a connection closed on a refused request
	// is read (and the input dropped) before it is closed (net/http
	// waits as long): see batch.linger.
	lingerTime = 500 * time.Millisecond
	// acceptPause is how long the Server stops accepting when it is out
	// of descriptors (EMFILE) or memory.
	acceptPause = 100 * time.Millisecond
)

func (o ServerOptions) withDefaults() ServerOptions {
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = defaultMaxHeaderBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Errors == nil {
		o.Errors = ratelog.New(o.Logger, ratelog.Options{})
	}
	return o
}

// Server is a minimal HTTP/1.1 server for a Handler, leaner than
// net/http's: it serves GET /announce and /scrape and nothing else a
// tracker does not need, and it spends as little as it can per
// connection, because many BitTorrent clients open a connection for
// every announce.
//
// On Linux it is a few event loops (epoll), each on its own goroutine
// with its own listening socket: a connection is accepted once its
// request has arrived (TCP_DEFER_ACCEPT), and a one-request connection is
// read, answered and closed without ever being registered for events.
// There is no goroutine per connection or request, and a request
// allocates nothing. Elsewhere, or with GoroutinePerConn, it serves each
// connection on a goroutine.
//
// What it speaks: HTTP/1.1 keep-alive by default, HTTP/1.0 closes unless
// the client asks for keep-alive; "Connection: close" is honoured;
// pipelined requests are answered in order. Every reply has a
// Content-Length. A request with a body is refused (400), a method other
// than GET gets 405, a path other than /announce and /scrape 404, a head
// longer than MaxHeaderBytes 431, a malformed one 400; all of these close
// the connection.
type Server struct {
	addr   net.Addr
	log    *slog.Logger
	limit  connLimit
	be     backend
	cancel context.CancelFunc
	// done is closed once every loop (or connection goroutine) has
	// returned; errc then too.
	done chan struct{}
	errc chan error

	drainOnce, killOnce sync.Once
}

// backend is how a Server polls its connections.
type backend interface {
	// drain stops accepting, closes the connections that wait for a
	// request, and has the others close after their reply.
	drain()
	// kill closes every connection.
	kill()
}

// Listen binds addr ("host:port", as for net.Listen("tcp", addr)) and
// serves h on it until Shutdown or Close.
func Listen(addr string, h *Handler, opts ServerOptions) (*Server, error) {
	opts = opts.withDefaults()
	if opts.GoroutinePerConn {
		return listenPortable(addr, h, opts)
	}
	return listen(addr, h, opts)
}

// Err returns a channel that receives an error if the Server stops
// serving by itself: an event loop failed (which takes a bug, in trackd
// or the system). It is closed once the Server has stopped.
func (s *Server) Err() <-chan error { return s.errc }

// failed reports a loop's failure on errc, unless one is reported already.
func (s *Server) failed(err error) {
	s.log.Error("http: serving failed", "err", err)
	select {
	case s.errc <- err:
	default:
	}
}

// stopped closes done and errc: every goroutine has returned.
func (s *Server) stopped() {
	close(s.done)
	close(s.errc)
}

// Addr returns the address the Server listens on, with the port the
// system picked if Listen was given port 0.
func (s *Server) Addr() net.Addr { return s.addr }

// Shutdown stops accepting connections, closes the idle ones, and waits
// for the replies in flight to be written and their connections closed,
// or for ctx to end; then it closes what is left, as Close does, and
// returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.drainOnce.Do(s.be.drain)
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

// Close closes the listener and every connection at once and waits for
// the Server's goroutines to return. Handler calls in flight see their
// context canceled.
func (s *Server) Close() error {
	s.killOnce.Do(func() {
		s.cancel()
		s.be.kill()
	})
	<-s.done
	return nil
}

// connLimit counts the open connections against MaxConns.
type connLimit struct {
	max int64 // 0: no limit, and no counting
	n   atomic.Int64
}

// acquire counts a new connection, unless the limit is reached.
func (l *connLimit) acquire() bool {
	if l.max <= 0 {
		return true
	}
	for {
		n := l.n.Load()
		if n >= l.max {
			return false
		}
		if l.n.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release uncounts a connection. It reports whether the count was at the
// limit, so that a listener paused for it can resume.
func (l *connLimit) release() bool {
	if l.max <= 0 {
		return false
	}
	return l.n.Add(-1) == l.max-1
}

// full reports whether the limit is reached.
func (l *connLimit) full() bool { return l.max > 0 && l.n.Load() >= l.max }
