package wsserver

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Options, the one source of each: the configuration builds
// its defaults from these.
const (
	// DefaultMaxMessageBytes bounds a message, in one frame or
	// fragmented: 64 KiB, as aquatic_ws's default. A WebTorrent announce
	// carries up to 10 offers, each a browser's SDP offer for a data
	// channel with its ICE candidates (trickle off): an estimate, not
	// measured here, of 0.5-2 KB from Chrome or Firefox, up to ~4 KB
	// with many interfaces and candidates, plus the JSON escapes of its
	// CRLFs. 10 × 4 KB and the announce's other fields fit with room to
	// spare; a client cannot make the server hold more than this per
	// connection while it reads a message.
	DefaultMaxMessageBytes = 64 << 10
	// DefaultMaxQueueBytes bounds the bytes queued for a connection the
	// socket has not taken: a client that does not read is closed once
	// its queue passes it (about 30 relayed offers of 2 KB beyond what
	// the kernel's socket buffer holds), and never holds more.
	DefaultMaxQueueBytes = 64 << 10
	// DefaultPingInterval is how long a connection may go without a
	// frame from the client before the server pings it.
	DefaultPingInterval = 30 * time.Second
	// DefaultIdleTimeout is how long a connection may go without a frame
	// from the client (a message, or the pong its pings ask for) before
	// it is closed: three pings unanswered.
	DefaultIdleTimeout = 100 * time.Second
	// DefaultMessageTimeout bounds the time a message may take to
	// arrive whole, from its first byte: 64 KiB at 20 kbit/s.
	DefaultMessageTimeout = 30 * time.Second
	// DefaultMaxConns bounds the WebSocket connections open at once.
	DefaultMaxConns = 200_000
	// DefaultMaxConnsPerIP bounds one client address's (an IPv4 address
	// or an IPv6 /64): a browser opens one connection per tracker, a
	// household or a NAT a few dozen.
	DefaultMaxConnsPerIP = 256
)

// closeLinger bounds how long a connection waits for the client's close
// (its close frame or end of stream) after the server's close frame is
// written.
const closeLinger = 2 * time.Second

// Options configure a Server. Zero values mean the defaults (Default*);
// a negative MaxConns or MaxConnsPerIP means no bound.
type Options struct {
	// MaxMessageBytes bounds a message from the client, whole or
	// reassembled from fragments; a longer one closes the connection
	// with 1009 (message too big).
	MaxMessageBytes int
	// MaxQueueBytes bounds the bytes Conn.Send may queue for a
	// connection whose socket does not take them: past it, the
	// connection is closed (a client that does not read never stalls
	// the relays of others, nor holds more memory than this). A message
	// is queued whole when the queue is empty, whatever its length. On a
	// goroutine per connection the queue also holds what the writer
	// goroutine has not picked up yet, so a burst of Sends faster than
	// it is scheduled counts against the bound. On an event loop the
	// Sends of one pass are gathered and written at its end, one write
	// per connection; before gathered bytes would pass the bound they
	// are offered to the socket, and only what it refuses counts.
	MaxQueueBytes int
	// PingInterval: a connection without a frame from the client for
	// this long is pinged, and again every PingInterval.
	PingInterval time.Duration
	// IdleTimeout: a connection without a frame from the client for
	// this long is closed.
	IdleTimeout time.Duration
	// MessageTimeout bounds the time from a frame's first byte (or a
	// fragmented message's) until it is whole: a client cannot hold a
	// buffer of up to MaxMessageBytes by trickling its bytes. Past it,
	// the connection is closed with 1008 (policy violation).
	MessageTimeout time.Duration
	// MaxConns bounds the open WebSocket connections. One more is
	// admitted by closing, with 1013 (try again later), the connection
	// that has gone longest without a message from its client (pings and
	// pongs do not count; one that has sent none goes first); it is
	// closed right after its handshake with 1013 only if every other
	// connection is closing already.
	MaxConns int
	// MaxConnsPerIP bounds the open connections of one client address
	// (an IPv4 address, or an IPv6 /64); addresses in TrustedProxies are
	// not bounded, and the address a trusted proxy names in X-Real-IP or
	// X-Forwarded-For is counted instead. One more is admitted by
	// closing, with 1013, the address's own connection that has gone
	// longest without a message, as at MaxConns.
	MaxConnsPerIP int
	// TrustedProxies are the reverse proxies whose X-Real-IP and
	// X-Forwarded-For name the client (Conn.RemoteAddr).
	TrustedProxies []netip.Prefix
	// Loops is the number of event loops serving the connections on
	// Linux; zero means runtime.GOMAXPROCS(0).
	Loops int
	// GoroutinePerConn serves each connection on a goroutine of its own
	// (with a read buffer of its own), as on systems other than Linux
	// and for TLS connections, rather than on the event loops.
	GoroutinePerConn bool
	// Metrics counts the connections evicted at MaxConns and
	// MaxConnsPerIP; nil counts nothing.
	Metrics Metrics
	// Logger receives the transport's errors (an event loop's failure),
	// never a line per connection; nil discards them.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.MaxQueueBytes <= 0 {
		o.MaxQueueBytes = DefaultMaxQueueBytes
	}
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MessageTimeout <= 0 {
		o.MessageTimeout = DefaultMessageTimeout
	}
	if o.MaxConns == 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.MaxConnsPerIP == 0 {
		o.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if o.Loops <= 0 {
		o.Loops = runtime.GOMAXPROCS(0)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = noMetrics{}
	}
	return o
}

// A Server is the WebSocket transport: it takes the connections that
// Upgrade hands it from httpserver (ws:// or wss://) after the
// handshake, opens a Session of its Handler for each, and speaks RFC
// 6455 frames to them: text messages in, Conn.Send out, pings, the close
// handshake, timeouts and bounds (Options).
//
// On Linux a connection from httpserver is served by one of a few epoll
// event loops, holding no goroutine and no buffer of its own while idle:
// its descriptor is duplicated out of the net.Conn, which is closed, and
// read into its loop's buffer; only an incomplete frame, a fragmented
// message or unwritten bytes are kept per connection. Elsewhere, for TLS
// connections and with Options.GoroutinePerConn, a goroutine per
// connection does the same.
//
// A Session's Message and Closed are called on the Server's goroutines,
// on an event loop for its connections: they must not block.
type Server struct {
	h      Handler
	opts   Options
	ctx    context.Context
	cancel context.CancelFunc
	start  time.Time

	n     atomic.Int64 // open connections
	peers peerCounts
	// plist are the connections on goroutines of their own, in
	// eviction order.
	plist evictList
	// closing: Shutdown or Close has begun; upgrades are refused.
	closing atomic.Bool

	loops *loops // nil: every connection on a goroutine of its own
	// conns are the connections served on goroutines of their own.
	mu     sync.Mutex
	pconns map[*pconn]struct{}
	wg     sync.WaitGroup // the pconns' goroutines
	// gone is signalled (without blocking) each time a connection closes,
	// for Shutdown's wait.
	gone chan struct{}
}

// New returns a Server that opens h's Sessions on the connections it is
// handed. Its event loops, if any, start at once; Close stops them.
func New(h Handler, opts Options) *Server {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		h:      h,
		opts:   opts,
		ctx:    ctx,
		cancel: cancel,
		start:  time.Now(),
		pconns: make(map[*pconn]struct{}),
		gone:   make(chan struct{}, 1),
	}
	s.peers.m = make(map[[16]byte]*addrConns)
	if !opts.GoroutinePerConn {
		s.loops = startLoops(s) // nil where there are none (not Linux)
	}
	return s
}

// OpenConns returns the number of open WebSocket connections.
func (s *Server) OpenConns() int { return int(s.n.Load()) }

// serve serves c, a connection whose handshake is done, with rest the
// bytes the client sent after its request. It is called on a goroutine
// that may be kept (a connection served on one of its own runs on it).
func (s *Server) serve(c net.Conn, rest []byte, remote netip.AddrPort) {
	if !remote.IsValid() {
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			remote = ta.AddrPort()
		}
	}
	home, l := &s.plist, (*loop)(nil)
	tc, isTCP := c.(*net.TCPConn)
	if s.loops != nil && isTCP {
		l = s.loops.pick()
		home = &l.evict
	}
	sl, ok := s.acquire(remote.Addr(), home)
	if !ok || s.closing.Load() {
		if ok {
			s.release(sl)
		}
		refuse(c, errTryAgainLater)
		return
	}
	if l != nil {
		if err := s.loops.add(l, tc, rest, remote, sl); err == nil {
			return
		}
		// The descriptor could not be taken (the process is out of
		// descriptors): tc is closed.
		s.release(sl)
		return
	}
	s.servePortable(c, rest, remote, sl)
}

// refuse writes a close frame for e to c, briefly, and closes c.
func refuse(c net.Conn, e *closeErr) {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write(appendClose(nil, e))
	c.Close()
}

// acquire counts a connection from a, to be served from the list home,
// against MaxConns and MaxConnsPerIP: at a bound it evicts the
// longest-silent connection (evict.go), and refuses the new one only if
// there is none to evict. release uncounts it.
func (s *Server) acquire(a netip.Addr, home *evictList) (*slot, bool) {
	c := &slot{s: s, home: home, since: int64(time.Since(s.start))}
	if s.opts.MaxConnsPerIP > 0 && a.IsValid() && !s.trusted(a) {
		c.key, c.perIP = keyOf(a), true
		s.peers.mu.Lock()
		ac := s.peers.m[c.key]
		if ac == nil {
			ac = &addrConns{}
			s.peers.m[c.key] = ac
		}
		if int(ac.n) >= s.opts.MaxConnsPerIP {
			v := ac.victim()
			s.peers.mu.Unlock()
			if v == nil {
				return nil, false
			}
			// v's places, in s.n and in its address's count, are c's.
			s.evict(v, BoundPerIP)
			return c, true
		}
		ac.n++
		s.peers.mu.Unlock()
	}
	for {
		n := s.n.Load()
		if s.opts.MaxConns <= 0 || n < int64(s.opts.MaxConns) {
			if s.n.CompareAndSwap(n, n+1) {
				return c, true
			}
			continue
		}
		v := s.victim()
		if v == nil {
			s.releaseAddr(c)
			return nil, false
		}
		s.evict(v, BoundMaxConns) // v's place is c's
		return c, true
	}
}

// victim claims a connection to evict: the silent one that came first,
// else the one whose last message is oldest, of all lists (evict.go);
// nil if there is none.
func (s *Server) victim() *slot {
	for _, spoke := range [2]bool{false, true} {
		for range 4 { // a head taken meanwhile: look again, a few times
			var best *evictList
			var bestKey int64
			for l := range s.evictLists() {
				if k, ok := l.head(spoke); ok && (best == nil || k < bestKey) {
					best, bestKey = l, k
				}
			}
			if best == nil {
				break
			}
			if v := best.victim(spoke); v != nil {
				return v
			}
		}
	}
	return nil
}

// evictLists yields the Server's eviction lists: its loops', and its
// portable connections'.
func (s *Server) evictLists() func(yield func(*evictList) bool) {
	return func(yield func(*evictList) bool) {
		if s.loops != nil {
			for _, l := range s.loops.ls {
				if !yield(&l.evict) {
					return
				}
			}
		}
		yield(&s.plist)
	}
}

// evict closes v, claimed by a victim call, with 1013.
func (s *Server) evict(v *slot, b Bound) {
	v.unlinkHome()
	v.closer.closeWith(errTryAgainLater)
	s.opts.Metrics.ConnEvicted(b)
}

// release uncounts c, whose connection has closed, and tells Shutdown.
func (s *Server) release(c *slot) {
	c.unlinkHome()
	switch {
	case c.state.CompareAndSwap(slotLive, slotReleased):
		s.releaseAddr(c)
		s.n.Add(-1)
	case c.state.CompareAndSwap(slotEvicted, slotReleased):
		s.releaseAddr(c) // its place in s.n is another's
	default: // evicted at MaxConnsPerIP: both its places are another's
	}
	select {
	case s.gone <- struct{}{}:
	default:
	}
}

// releaseAddr uncounts c from its address.
func (s *Server) releaseAddr(c *slot) {
	if !c.perIP {
		return
	}
	s.peers.mu.Lock()
	defer s.peers.mu.Unlock()
	ac := s.peers.m[c.key]
	if ac == nil {
		return
	}
	if c.linked {
		ac.remove(c)
		c.linked = false
	}
	if ac.n--; ac.n <= 0 {
		delete(s.peers.m, c.key)
	}
}

// keyOf is what a client address is counted under: an IPv4 address, or
// the /64 of an IPv6 address (as httpserver's MaxConnsPerIP).
func keyOf(a netip.Addr) [16]byte {
	a = a.Unmap()
	k := a.As16()
	if !a.Is4() {
		clear(k[8:])
	}
	return k
}

// peerCounts are the open connections of each client address.
type peerCounts struct {
	mu sync.Mutex
	m  map[[16]byte]*addrConns
}

// Shutdown refuses new upgrades and closes every connection with a close
// frame 1001 (going away), then waits for the connections to close (the
// clients' close frames, or closeLinger) or for ctx to end; then it
// closes what is left, as Close does, and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.closeAll(errGoingAway)
	for s.n.Load() > 0 {
		select {
		case <-s.gone:
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
			// A connection handed over as Shutdown began may have
			// missed the close: close it again.
			s.closeAll(errGoingAway)
		}
	}
	s.Close()
	return nil
}

// Close closes every connection at once (their Sessions' Closed are
// called), stops the event loops and waits for the Server's goroutines
// to return. Message calls in flight see their context canceled.
func (s *Server) Close() error {
	s.closing.Store(true)
	s.cancel()
	if s.loops != nil {
		s.loops.kill()
	}
	s.mu.Lock()
	for c := range s.pconns {
		hardClose(c.nc)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// closeAll starts the close handshake of every connection with e.
func (s *Server) closeAll(e *closeErr) {
	if s.loops != nil {
		s.loops.closeAll(e)
	}
	s.mu.Lock()
	for c := range s.pconns {
		c.closeWith(e)
	}
	s.mu.Unlock()
}
