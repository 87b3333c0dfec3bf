package httpserver

import (
	"context"
	"crypto/tls"
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
// Listen gives outside Linux, with Options.GoroutinePerConn (a Handler
// whose store may block), and with Options.TLSConfig (crypto/tls reads
// and writes the connection).

// tcpListenConfig is the base of every Server's listening sockets: plain
// TCP. Go makes a ListenConfig's sockets MPTCP (RFC 8684) by default where
// the kernel has it (since Go 1.24): a client that does not speak MPTCP,
// which is every BitTorrent client, then gets a TCP connection through
// MPTCP's fallback, and each accept takes the MPTCP listener's lock too.
// A tracker's one-request connections have nothing to gain from several
// paths, and opentracker's sockets are plain TCP. (Measured on Linux 6.18:
// a profile of a new connection per request had 7 % of its samples
// spinning on that lock, 1.4 % with plain TCP; per CPU-second the
// difference was within the noise: docs/benchmarks.md, "The reply and the
// FIN in one segment".)
func tcpListenConfig() net.ListenConfig {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	return lc
}

// listenPortable binds addr and serves h with a goroutine per connection.
func listenPortable(addr string, h Handler, opts Options) (*Server, error) {
	lc := portableListenConfig(&opts)
	ln, err := lc.Listen(context.Background(), "tcp", addr)
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
	b.peers = newPeerTable(&opts, func() portableList { return portableList{byAddr: true} })
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
	h       Handler
	opts    Options
	ctx     context.Context
	slots   chan struct{} // MaxConns semaphore; nil: no limit
	bufSize int
	pool    sync.Pool // *portableConn

	wg       sync.WaitGroup
	stopOnce sync.Once
	stop     chan struct{} // closed by drain and kill

	// peers counts connections by address (nil: no MaxConnsPerIP); its
	// entries' idle lists are guarded by mu.
	peers *peerTable[portableList]

	mu    sync.Mutex
	conns map[*portableConn]struct{}
	idle  portableList // keep-alive connections waiting for a request, longest-idle first
	// fresh: new connections waiting for their first request that have
	// sent nothing yet, or nothing but empty lines, longest-waiting
	// first; evicted after the idle ones.
	fresh    portableList
	draining bool
}

// portableConn is a connection and its buffers (pooled without the
// connection).
type portableConn struct {
	// c is the accepted connection: what eviction and Shutdown close
	// (under the backend's lock), never the TLS connection over it,
	// whose Close may wait to write a close_notify alert.
	c       net.Conn
	resp    *responder
	in, out []byte
	// Guarded by mu: waiting is set while the connection holds nothing
	// of a request but perhaps empty lines (keepAlive: not its first
	// request); it is then on the idle lists (prev, next; aprev, anext on
	// its address's) if keepAlive, else on fresh (prev, next). evicted:
	// closed to make room.
	waiting, keepAlive, evicted bool
	prev, next, aprev, anext    *portableConn
	// peer is the connection's count under MaxConnsPerIP (nil: none).
	peer *peerEntry[portableList]
}

// portableList is a list of idle connections, longest-idle first: the
// backend's (byAddr false) or one address's.
type portableList struct {
	head, tail *portableConn
	byAddr     bool
}

func (pl *portableList) links(pc *portableConn) (prev, next **portableConn) {
	if pl.byAddr {
		return &pc.aprev, &pc.anext
	}
	return &pc.prev, &pc.next
}

func (pl *portableList) push(pc *portableConn) {
	prev, next := pl.links(pc)
	*prev, *next = pl.tail, nil
	if pl.tail != nil {
		_, tn := pl.links(pl.tail)
		*tn = pc
	} else {
		pl.head = pc
	}
	pl.tail = pc
}

func (pl *portableList) remove(pc *portableConn) {
	prev, next := pl.links(pc)
	if *prev != nil {
		_, pn := pl.links(*prev)
		*pn = *next
	} else {
		pl.head = *next
	}
	if *next != nil {
		np, _ := pl.links(*next)
		*np = *prev
	} else {
		pl.tail = *prev
	}
	*prev, *next = nil, nil
}

func (b *portableBackend) drain() {
	b.stopAccepting()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.draining = true
	for pc := range b.conns {
		if pc.waiting {
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

// acceptLoop accepts connections and starts a goroutine for each. A
// connection from an address at MaxConnsPerIP takes the place of the
// address's longest-idle keep-alive connection, or is closed at once. At
// MaxConns, a new connection takes the place of the longest-idle
// keep-alive connection, or else of the connection that has sent nothing
// (or nothing but empty lines) the longest; if there is none it waits,
// unserved, until a connection closes, and the connections after it wait
// in the kernel's accept queue.
func (b *portableBackend) acceptLoop() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
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
		var remote netip.AddrPort
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			remote = ta.AddrPort()
		}
		var peer *peerEntry[portableList]
		if b.peers != nil {
			var ok bool
			if peer, ok = b.peers.acquire(remote.Addr()); !ok {
				b.mu.Lock()
				v := peer.ext.head
				if v != nil {
					// v's count is the new connection's.
					b.evict(v)
					v.peer = nil
				}
				b.mu.Unlock()
				if v == nil {
					b.opts.Metrics.ConnRefused(BoundPerIP)
					c.Close()
					continue
				}
				b.opts.Metrics.ConnEvicted(BoundPerIP)
			}
		}
		if !b.acquireSlot() {
			c.Close()
			if peer != nil {
				b.peers.release(peer)
			}
			return
		}
		pc, _ := b.pool.Get().(*portableConn)
		if pc == nil {
			pc = &portableConn{
				resp: newResponder(b.ctx, b.h, &b.opts),
				in:   make([]byte, b.bufSize),
				out:  make([]byte, 0, 4<<10),
			}
		}
		pc.c, pc.peer = c, peer
		b.mu.Lock()
		if b.draining {
			b.mu.Unlock()
			c.Close()
			b.done(pc)
			return
		}
		b.conns[pc] = struct{}{}
		b.mu.Unlock()
		b.wg.Go(func() { b.serve(pc, remote) })
	}
}

// acquireSlot takes a place under MaxConns, evicting the longest-idle
// keep-alive connection if there is none free, or else the fresh one
// that has waited longest, or waiting until one closes. It reports false
// if the Server stopped first.
func (b *portableBackend) acquireSlot() bool {
	b.s.limit.acquire() // counts; the bound is slots
	if b.slots == nil {
		return true
	}
	for {
		select {
		case b.slots <- struct{}{}:
			return true
		default:
		}
		b.mu.Lock()
		v := b.idle.head
		if v == nil {
			v = b.fresh.head
		}
		if v != nil {
			b.evict(v)
			b.opts.Metrics.ConnEvicted(BoundMaxConns)
		}
		b.mu.Unlock()
		// The evicted connection's goroutine frees its slot as it
		// returns; without one, a connection that becomes idle may be
		// evicted on the next round.
		select {
		case b.slots <- struct{}{}:
			return true
		case <-b.stop:
			b.s.limit.release()
			return false
		case <-time.After(evictRetry):
		}
	}
}

// evictRetry is how often the portable Server, at MaxConns with no idle
// connection to evict, looks again.
const evictRetry = 50 * time.Millisecond

// evict closes an idle or fresh connection to make room, taking it off
// the lists. b.mu is held.
func (b *portableBackend) evict(pc *portableConn) {
	b.unidle(pc)
	pc.evicted = true
	pc.c.Close()
}

// unidle takes pc off the idle lists or fresh, if it is on them. b.mu is
// held.
func (b *portableBackend) unidle(pc *portableConn) {
	switch {
	case !pc.waiting || pc.evicted:
	case pc.keepAlive:
		b.idle.remove(pc)
		if pc.peer != nil {
			pc.peer.ext.remove(pc)
		}
	default:
		b.fresh.remove(pc)
	}
	pc.waiting = false
}

func (b *portableBackend) done(pc *portableConn) {
	if pc.peer != nil {
		b.peers.release(pc.peer)
	}
	pc.c, pc.peer = nil, nil
	pc.waiting, pc.keepAlive, pc.evicted = false, false, false
	b.pool.Put(pc)
	b.s.limit.release()
	if b.slots != nil {
		<-b.slots
	}
}

// serve serves one connection until it closes.
func (b *portableBackend) serve(pc *portableConn, remote netip.AddrPort) {
	c := pc.c
	if b.opts.TLSConfig != nil {
		c = tls.Server(c, b.opts.TLSConfig)
	}
	// take, when set, takes the connection over (Response.Takeover),
	// with reply to write and rest, the bytes read past the request.
	var take func(net.Conn)
	var reply, rest []byte
	defer func() {
		b.mu.Lock()
		b.unidle(pc)
		delete(b.conns, pc) // out of kill's reach
		b.mu.Unlock()
		if take != nil {
			go handOver(c, reply, rest, b.opts.WriteTimeout, take)
		} else {
			c.Close()
		}
		b.done(pc)
	}()
	o := &b.opts
	n := 0           // bytes in pc.in: the start of the next request
	scanned := 0     // of which searched for the end of a head in vain
	first := true    // no reply yet: the read-header timeout runs from the start
	waiting := false // pc is marked waiting (setIdle): pc.in[:n] is blank
	for {
		// A connection that holds nothing of a request but perhaps empty
		// lines may be evicted (setIdle), and stays so until it sends
		// something else: only such a connection takes the lock here
		// more than once per request.
		if !waiting && onlyBlank(pc.in[:n]) {
			if !b.setIdle(pc, true, !first) {
				return
			}
			waiting = true
		}
		if n == 0 {
			t := o.IdleTimeout
			if first {
				t = o.ReadHeaderTimeout
			}
			setDeadline(c.SetReadDeadline, t)
		}
		m, err := c.Read(pc.in[n:])
		if n == 0 && m > 0 && !first {
			// A request's first bytes: its head has until then.
			setDeadline(c.SetReadDeadline, o.ReadHeaderTimeout)
		}
		if m == 0 && err != nil {
			if o.TLSConfig != nil && first {
				if raw := plainHTTPOverTLS(err); raw != nil {
					b.refusePlainHTTP(pc, raw)
				}
			}
			return
		}
		n += m
		if waiting && !onlyBlank(pc.in[:n]) {
			if !b.setIdle(pc, false, false) {
				return // evicted while its request arrived: not served
			}
			waiting = false
		}
		answered := false
		for {
			res := pc.resp.respond(pc.in[:n], scanned, remote, pc.out[:0], b.isDraining(), time.Now())
			pc.out = res.out[:0]
			if res.take != nil {
				take = res.take
				reply = append([]byte(nil), res.out...)
				rest = append([]byte(nil), pc.in[res.n:n]...)
				return
			}
			if res.stream != nil {
				setDeadline(c.SetWriteDeadline, o.WriteTimeout)
				if _, err := c.Write(res.out); err == nil {
					copyStream(c, res.stream, res.streamLen, o.WriteTimeout)
				}
				res.stream.Close()
				return
			}
			if len(res.out) > 0 || len(res.tail) > 0 {
				first, answered = false, true
				if res.close && !res.linger {
					corkLast(pc.c)
				}
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

// setIdle marks the connection waiting for a request (it holds nothing
// of one but perhaps empty lines), a keep-alive one (not its first
// request) with keepAlive, or not waiting. It reports
// false if the connection is to close: the Server is shutting down, or
// it was evicted.
func (b *portableBackend) setIdle(pc *portableConn, waiting, keepAlive bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if pc.evicted {
		return false
	}
	if !waiting {
		b.unidle(pc)
		return true
	}
	if b.draining {
		return false
	}
	pc.waiting, pc.keepAlive = true, keepAlive
	if keepAlive {
		b.idle.push(pc)
		if pc.peer != nil {
			pc.peer.ext.push(pc)
		}
	} else {
		b.fresh.push(pc)
	}
	return true
}

func (b *portableBackend) isDraining() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.draining
}

// plainHTTPOverTLS returns the connection under TLS if err is that of a
// handshake whose first bytes were a plain HTTP request (http:// to the
// HTTPS port, a common mistake), or nil.
func plainHTTPOverTLS(err error) net.Conn {
	var re tls.RecordHeaderError
	if !errors.As(err, &re) || re.Conn == nil {
		return nil
	}
	switch string(re.RecordHeader[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return re.Conn
	}
	return nil
}

// refusePlainHTTP answers a plain HTTP request to an HTTPS Server with 400
// and why, in plain HTTP (as net/http does), and closes the connection
// after lingering, so that the client reads the reply.
func (b *portableBackend) refusePlainHTTP(pc *portableConn, raw net.Conn) {
	rb := batch{out: pc.out[:0]}
	pc.resp.refuse(&rb, errPlainHTTP, time.Now())
	pc.out = rb.out[:0]
	setDeadline(raw.SetWriteDeadline, b.opts.WriteTimeout)
	if _, err := raw.Write(rb.out); err == nil {
		linger(raw)
	}
}
