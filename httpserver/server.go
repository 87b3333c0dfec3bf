// Package httpserver is a lean HTTP/1.1 server for small GET requests:
// epoll event loops on Linux, a goroutine per connection elsewhere. It
// serves a Handler, trackd's HTTP frontend (frontend/http) for one, and
// spends as little as it can per connection and per request: a request
// through it allocates nothing of its own.
//
// The contract is Handler: it gets a Request (method, decoded path, raw
// query, remote address, the header fields) and fills in a Response
// (status, body appended to a buffer of the Server's, extra header fields,
// or a streamed body), and may take the connection over after its reply
// (Response.Takeover), as a WebSocket upgrade needs.
//
// What a client can hold is bounded: connections in all (MaxConns) and
// per address (MaxConnsPerIP), each making room by closing an idle
// connection, and time, by the timeouts (see Options).
package httpserver

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"trackd/internal/ratelog"
)

// Options configure a Server. Zero durations and limits mean none.
type Options struct {
	// ReadHeaderTimeout is the time a client has to send a whole request
	// head, counted from the connection's start or, on a keep-alive
	// connection, from the request's first bytes. A connection that takes
	// longer is closed (slowloris). Empty lines before a request line
	// are that request's bytes: they start its clock, postpone nothing,
	// and more than 8 of them get 400.
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
	// MaxConns bounds the open connections. At the bound, a new
	// connection is admitted by closing the keep-alive connection that
	// has waited longest for its next request, or failing one the
	// connection that has sent nothing but empty lines the longest (on
	// Linux, among the accepting loop's own first, then another loop's);
	// if there is none, new connections wait in the kernel's accept queue
	// until one closes.
	MaxConns int
	// MaxConnsPerIP bounds the open connections of one client address
	// (an IPv4 address, or an IPv6 /64, the block one host is given);
	// addresses in TrustedProxies are not bounded. At the bound, a new
	// connection from the address is admitted by closing that address's
	// own longest-idle keep-alive connection (on Linux, one on the same
	// event loop), or else closed at once.
	MaxConnsPerIP int
	// TrustedProxies are the reverse proxies exempt from MaxConnsPerIP:
	// a proxy carries many clients' connections.
	TrustedProxies []netip.Prefix
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
	// TLSConfig, if not nil, makes the Server an HTTPS one: every
	// connection is served through crypto/tls (tls.Server with this
	// configuration; its GetCertificate may change the certificate at any
	// time) on a goroutine of its own, as with GoroutinePerConn, since its
	// bytes are read by crypto/tls rather than by an event loop. The
	// handshake is part of the first request's head: ReadHeaderTimeout
	// bounds both. It speaks HTTP/1.1 only: set NextProtos to
	// []string{"http/1.1"} (or leave it empty) so that a client does not
	// agree on HTTP/2 by ALPN.
	TLSConfig *tls.Config
	// Logger receives errors (accept failures, for instance), never a
	// line per request; nil discards them.
	Logger *slog.Logger
	// Metrics counts connections evicted and refused; nil counts
	// nothing.
	Metrics Metrics
	// Errors logs the accept failures (kind "accept") at a bounded rate
	// and counts them; nil means one of the Server's own, over Logger,
	// that counts nothing.
	Errors *ratelog.Logger
}

// Metrics counts what the Server does to keep its connection bounds.
// Its methods are called on the Server's goroutines, so they must be safe
// for concurrent use, and quick: an event loop waits for them.
type Metrics interface {
	// ConnEvicted records an idle (or blank) connection closed to admit
	// a new one, at the bound b.
	ConnEvicted(b Bound)
	// ConnRefused records a new connection closed at once, at the bound
	// b.
	ConnRefused(b Bound)
}

// Bound is a connection bound that made a Server evict or refuse a
// connection.
type Bound uint8

const (
	BoundMaxConns Bound = iota // Options.MaxConns: all open connections
	BoundPerIP                 // Options.MaxConnsPerIP: one address's
)

func (b Bound) String() string {
	switch b {
	case BoundMaxConns:
		return "max_conns"
	case BoundPerIP:
		return "per_ip"
	}
	return "unknown"
}

// noMetrics counts nothing: the Metrics of Options without one.
type noMetrics struct{}

func (noMetrics) ConnEvicted(Bound) {}
func (noMetrics) ConnRefused(Bound) {}

// Defaults of the connection bounds, for a tracker on the open internet
// (trackd's configuration starts from them).
const (
	// DefaultMaxConns is a default for Options.MaxConns.
	DefaultMaxConns = 10000
	// DefaultMaxConnsPerIP is a default for Options.MaxConnsPerIP:
	// far more than one BitTorrent client opens to a tracker (one per
	// announce at a time), so that many users behind one carrier-grade
	// NAT address still fit, and few enough that it takes about twenty
	// addresses to fill DefaultMaxConns.
	DefaultMaxConnsPerIP = 512
)

const (
	// DefaultMaxHeaderBytes is what Options.MaxHeaderBytes 0 means.
	DefaultMaxHeaderBytes = 16 << 10
	// LingerTime is how long a connection closed on a refused request
	// is read (and the input dropped) before it is closed (net/http
	// waits as long), so that the client reads the refusal rather than
	// a reset.
	LingerTime = 500 * time.Millisecond
)

const (
	// streamChunk is the most a server reads from a streamed body
	// (Response.Stream) at once.
	streamChunk = 64 << 10
	// acceptPause is how long the Server stops accepting when it is out
	// of descriptors (EMFILE) or memory.
	acceptPause = 100 * time.Millisecond
)

func (o Options) withDefaults() Options {
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if o.Metrics == nil {
		o.Metrics = noMetrics{}
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
// net/http's: it serves small GET requests and nothing else, and it
// spends as little as it can per connection, because many clients (of a
// BitTorrent tracker: most) open a connection for every request.
//
// On Linux it is a few event loops (epoll), each on its own goroutine
// with its own listening socket: a connection is accepted once its
// request has arrived (TCP_DEFER_ACCEPT), and a one-request connection is
// read, answered and closed without ever being registered for events.
// There is no goroutine per connection or request, and a request
// allocates nothing. Elsewhere, with GoroutinePerConn, or over TLS
// (TLSConfig), it serves each connection on a goroutine.
//
// What it speaks: HTTP/1.1 keep-alive by default, HTTP/1.0 closes unless
// the client asks for keep-alive; "Connection: close" is honoured;
// pipelined requests are answered in order. Every reply has a
// Content-Length (but a 1xx or 204). A request with a body is refused
// (400), a method other than GET gets 405, a head longer than
// MaxHeaderBytes 431, a malformed one 400; all of these close the
// connection. What else a request gets is the Handler's answer.
//
// What a client can hold is bounded: MaxConns in all, MaxConnsPerIP per
// address, each making room by closing an idle (or blank) connection
// (see Options), and time, by the timeouts. A streamed
// body (Response.Stream) is copied a chunk at a time as the socket takes it,
// its write timeout counted from the last progress.
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
func Listen(addr string, h Handler, opts Options) (*Server, error) {
	opts = opts.withDefaults()
	if opts.GoroutinePerConn || opts.TLSConfig != nil {
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
// context canceled. Connections taken over (Response.Takeover) are not
// the Server's any more: it closes none of them.
func (s *Server) Close() error {
	s.killOnce.Do(func() {
		s.cancel()
		s.be.kill()
	})
	<-s.done
	return nil
}

// OpenConns returns the number of open connections, not counting those
// taken over.
func (s *Server) OpenConns() int { return int(s.limit.n.Load()) }

// connLimit counts the open connections against MaxConns.
type connLimit struct {
	max int64 // 0: no limit
	n   atomic.Int64
}

// acquire counts a new connection, unless the limit is reached.
func (l *connLimit) acquire() bool {
	if l.max <= 0 {
		l.n.Add(1)
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
	return l.n.Add(-1) == l.max-1 && l.max > 0
}

// full reports whether the limit is reached.
func (l *connLimit) full() bool { return l.max > 0 && l.n.Load() >= l.max }
