//go:build linux

package http

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"trackd/internal/ratelog"
	"trackd/metrics"
)

// The Linux Server: one event loop per CPU. Each loop is a goroutine that
// owns a listening socket of the SO_REUSEPORT group on the address, an
// epoll instance, and the connections accepted from its socket.
//
// The epoll instance is not waited on in a system call of the loop's own,
// which would tie up an OS thread and have the runtime hand the loop's P
// to another thread each time it blocks: its descriptor is itself
// registered with Go's netpoller (an epoll descriptor is readable when
// events are ready), and the loop sleeps like any goroutine blocked on a
// socket, until events are ready or its next deadline passes (a read
// deadline on that descriptor). Awake, it takes the ready events with a
// non-blocking epoll_wait.
//
// A connection costs the loop nothing until it has a request: the
// listening socket has TCP_DEFER_ACCEPT, so accept4 returns connections
// whose first bytes have arrived. The loop reads them at once, answers,
// and, if the client asked to close (or spoke HTTP/1.0), closes the
// connection: accept4, read, write, close, and no epoll registration.
// Keep-alive connections, requests that arrive in pieces and replies the
// socket cannot take at once are registered (level-triggered) and carry
// their unfinished bytes in a conn.

// listen binds the loops' sockets and starts them.
func listen(addr string, h *Handler, opts ServerOptions) (*Server, error) {
	n := opts.Loops
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	fds, laddr, err := bindGroup(addr, n, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		addr:   laddr,
		log:    opts.Logger,
		limit:  connLimit{max: int64(opts.MaxConns)},
		cancel: cancel,
		done:   make(chan struct{}),
		errc:   make(chan error, 1),
	}
	be := &epollBackend{}
	peers := newPeerTable(&opts, func() []addrList { return make([]addrList, len(fds)) })
	for i, fd := range fds {
		l, err := newLoop(ctx, s, be, h, fd, opts)
		if err == nil {
			l.idx, l.peers = i, peers
		}
		if err != nil {
			for _, l := range be.loops {
				l.release()
			}
			for _, fd := range fds[i:] {
				unix.Close(fd)
			}
			cancel()
			return nil, err
		}
		be.loops = append(be.loops, l)
	}
	s.be = be
	var wg sync.WaitGroup
	for _, l := range be.loops {
		wg.Go(l.run)
	}
	go func() {
		wg.Wait()
		s.stopped()
	}()
	return s, nil
}

// bindTries bounds the attempts to bind a port-0 address (see bindGroup).
const bindTries = 10

// bindGroup binds n listening sockets to addr with SO_REUSEPORT and
// returns their descriptors (non-blocking) and the address bound. As the
// UDP frontend does, it first binds a probe socket without SO_REUSEPORT,
// which fails if anything holds the port and, for port 0, gets one that
// nothing holds (the kernel's port-0 search counts ports held by
// SO_REUSEPORT sockets of the same user as free, so a group that bound
// port 0 directly could join another process's group); then, with the
// probe closed, the group on the probe's address.
func bindGroup(addr string, n int, opts ServerOptions) ([]int, net.Addr, error) {
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	port, err := net.LookupPort("tcp", portStr)
	if err != nil {
		return nil, nil, err
	}
	for try := 0; ; try++ {
		probe, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, err
		}
		// The probe's address has the port, and the address family Go
		// chose (the IPv6 wildcard for a dual-stack socket).
		laddr := probe.Addr()
		probe.Close()
		fds, err := bindReusePort(laddr.String(), n, opts)
		if err == nil {
			return fds, laddr, nil
		}
		// A port the system picked may be taken between the probe and
		// the group's bind: pick another.
		if port != 0 || try+1 >= bindTries {
			return nil, nil, err
		}
	}
}

func bindReusePort(addr string, n int, opts ServerOptions) ([]int, error) {
	// TCP_DEFER_ACCEPT takes seconds: the kernel holds a connection
	// that sent nothing this long (then hands it over anyway, and the
	// read-header timeout applies).
	deferSecs := 1
	if opts.ReadHeaderTimeout > time.Second {
		deferSecs = int((opts.ReadHeaderTimeout + time.Second - 1) / time.Second)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); serr != nil {
				serr = fmt.Errorf("SO_REUSEPORT: %w", serr)
				return
			}
			// Best effort both: accepted sockets inherit TCP_NODELAY.
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferSecs)
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	var fds []int
	for range n {
		ln, err := lc.Listen(context.Background(), "tcp", addr)
		if err != nil {
			closeFDs(fds)
			return nil, err
		}
		// The loop polls the socket itself, not through Go's netpoller:
		// keep a descriptor of it and close the net.Listener's.
		fd, err := dupSocket(ln.(*net.TCPListener))
		ln.Close()
		if err != nil {
			closeFDs(fds)
			return nil, err
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

func dupSocket(ln *net.TCPListener) (int, error) {
	rc, err := ln.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("dup: %w", derr)
	}
	// The duplicate shares the file status flags: it is non-blocking
	// already. Make sure.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// epollBackend is the Server's set of loops.
type epollBackend struct {
	loops []*loop
}

func (b *epollBackend) drain() {
	for _, l := range b.loops {
		l.draining.Store(true)
		l.wake()
	}
}

func (b *epollBackend) kill() {
	for _, l := range b.loops {
		l.killed.Store(true)
		l.wake()
	}
}

// resume wakes the loops that paused accepting at MaxConns.
func (b *epollBackend) resume() {
	for _, l := range b.loops {
		if l.paused.Load() {
			l.wake()
		}
	}
}

// Sizes of a loop's buffers.
const (
	// readSize is the read buffer: a whole request head (at most
	// MaxHeaderBytes, with which it grows), and with keep-alive as many
	// pipelined requests as one read brings.
	readSize = 64 << 10
	// eventBatch is the most events one epoll_wait returns.
	eventBatch = 256
	// acceptBatch bounds the connections accepted per event, so that
	// other connections are not starved (the listener stays ready).
	acceptBatch = 64
	// keepBuf is the largest per-connection buffer kept when a conn is
	// recycled; freeConns the most recycled conns a loop keeps.
	keepBuf   = 4 << 10
	freeConns = 1024
)

// A loop is one event loop. Everything but the atomic flags and wakeMu's
// fields belongs to its goroutine.
type loop struct {
	srv   *Server
	be    *epollBackend
	log   *slog.Logger
	opts  ServerOptions
	idx   int                    // the loop's index in be.loops
	peers *peerTable[[]addrList] // nil: no MaxConnsPerIP; the lists by loop
	pfd   [1]unix.PollFd         // for listenerReady

	lfd   int      // listening socket, -1 once closed
	ep    int      // epoll instance
	epf   *os.File // ep, registered with Go's netpoller
	eprc  syscall.RawConn
	evbuf []unix.EpollEvent
	ev    unix.EpollEvent // argument of epoll_ctl
	sa    unix.RawSockaddrAny
	salen uint32
	// readyFn is pollReady as a func value, made once (a closure made
	// at each wait would be allocated each time); ready is what it found.
	readyFn func(uintptr) bool
	ready   int

	// wakefd is an eventfd in the epoll set through which other
	// goroutines wake the loop (shutdown, resume).
	wakeMu sync.Mutex
	wakefd int // -1 once closed

	draining, killed, paused atomic.Bool
	// idleN is the number of idle connections the loop could evict, or
	// 1 when it has none but, at MaxConns, a blank one among the first
	// evictScan of the reading list (victim); readN the number reading a request (which
	// may be blank ones beyond those counted), published before each
	// wait for other loops to read (askEviction); evictReq the number of
	// connections other loops ask this one to evict.
	idleN, readN, evictReq atomic.Int32

	conns  []*conn // by descriptor
	free   []*conn
	nconns int
	gen    int32

	in, out []byte
	resp    *responder

	// Deadlines are durations since start (monotonic).
	start      time.Time
	now        time.Duration
	wall       time.Time     // the time of now, for the Date header
	armed      time.Duration // the epoll descriptor's read deadline; 0: none; expired
	acceptAt   time.Duration // accepting paused until then (EMFILE); 0: not paused
	listenerOn bool          // the listening socket is in the epoll set

	// Connections waiting for something with a deadline, each list in
	// deadline order since its timeout is the same for all.
	reading, idle, writing, lingering connList
}

func newLoop(ctx context.Context, s *Server, be *epollBackend, h *Handler, lfd int, opts ServerOptions) (*loop, error) {
	l := &loop{
		srv:   s,
		be:    be,
		log:   opts.Logger,
		opts:  opts,
		lfd:   lfd,
		ep:    -1,
		evbuf: make([]unix.EpollEvent, eventBatch),
		in:    make([]byte, max(readSize, opts.MaxHeaderBytes+1)),
		out:   make([]byte, 0, flushSize+4096),
		resp:  newResponder(ctx, h, &opts),
		start: time.Now(),
	}
	l.readyFn = l.pollReady
	l.reading.timeout = opts.ReadHeaderTimeout
	l.idle.timeout = opts.IdleTimeout
	l.writing.timeout = opts.WriteTimeout
	l.lingering.timeout = lingerTime
	var err error
	if l.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if l.wakefd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		unix.Close(l.ep)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := l.ctl(unix.EPOLL_CTL_ADD, l.wakefd, unix.EPOLLIN, 0); err != nil {
		l.closeFiles()
		return nil, err
	}
	if err := l.ctl(unix.EPOLL_CTL_ADD, l.lfd, unix.EPOLLIN, 0); err != nil {
		l.closeFiles()
		return nil, err
	}
	l.listenerOn = true
	// A non-blocking descriptor makes os.NewFile register it with the
	// netpoller.
	if err := unix.SetNonblock(l.ep, true); err != nil {
		l.closeFiles()
		return nil, err
	}
	l.epf = os.NewFile(uintptr(l.ep), "epoll")
	if l.eprc, err = l.epf.SyscallConn(); err != nil {
		l.closeFiles()
		return nil, err
	}
	return l, nil
}

// release closes what newLoop opened, for a loop that never ran, and the
// listening socket.
func (l *loop) release() {
	l.closeFiles()
	if l.lfd >= 0 {
		unix.Close(l.lfd)
		l.lfd = -1
	}
}

func (l *loop) closeFiles() {
	l.wakeMu.Lock()
	if l.wakefd >= 0 {
		unix.Close(l.wakefd)
		l.wakefd = -1
	}
	l.wakeMu.Unlock()
	if l.epf != nil {
		l.epf.Close()
		l.epf = nil
	} else if l.ep >= 0 {
		unix.Close(l.ep)
	}
	l.ep = -1
}

// wake makes the loop look at its flags. Any goroutine may call it.
func (l *loop) wake() {
	l.wakeMu.Lock()
	defer l.wakeMu.Unlock()
	if l.wakefd >= 0 {
		one := [8]byte{1}
		unix.Write(l.wakefd, one[:])
	}
}

// ctl adds or modifies fd's registration. The event's data carries the
// descriptor and the conn's generation, so that an event of a connection
// closed earlier in the same batch is not taken for one of a new
// connection that got the same descriptor.
func (l *loop) ctl(op, fd int, events uint32, gen int32) error {
	l.ev = unix.EpollEvent{Events: events, Fd: int32(fd), Pad: gen}
	if err := unix.EpollCtl(l.ep, op, fd, &l.ev); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// run is the loop's goroutine.
func (l *loop) run() {
	defer l.exit()
	for {
		l.clock()
		l.expire()
		if l.killed.Load() || (l.draining.Load() && l.nconns == 0) {
			return
		}
		n := l.idle.n
		if n == 0 && l.srv.limit.full() && l.victim() != nil {
			// A blank connection to evict: other loops need to know
			// there is one, not how many (askEviction), and the scan
			// stops at the first.
			n = 1
		}
		if n := int32(n); n != l.idleN.Load() {
			l.idleN.Store(n)
		}
		if n := int32(l.reading.n); n != l.readN.Load() {
			l.readN.Store(n)
		}
		n, err := l.wait()
		if err != nil {
			l.srv.failed(fmt.Errorf("event loop: %w", err))
			return
		}
		l.clock() // it may have slept
		for i := range n {
			ev := &l.evbuf[i]
			switch fd := int(ev.Fd); fd {
			case l.lfd:
				l.accept()
			case l.wakefd:
				l.woken()
			default:
				l.event(fd, ev.Pad, ev.Events)
			}
		}
	}
}

// wait returns the number of ready events in l.evbuf, sleeping until
// there are some if there are none yet, or 0 once the loop's next
// deadline has passed. RawConn.Read calls pollReady first, and waits for
// the epoll descriptor only if it found nothing.
func (l *loop) wait() (int, error) {
	if err := l.arm(); err != nil {
		return 0, err
	}
	l.ready = 0
	err := l.eprc.Read(l.readyFn)
	switch {
	case err == nil:
		return l.ready, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		l.armed = expired
		return 0, nil
	}
	return 0, err
}

// pollReady is RawConn.Read's callback: it takes the ready events, and
// reports whether there were any (if not, Read waits for the descriptor
// to become readable and calls it again).
func (l *loop) pollReady(uintptr) bool {
	l.ready = l.poll()
	return l.ready > 0
}

// poll takes the ready events without waiting. It needs no runtime
// bookkeeping for a blocking system call: it never blocks.
func (l *loop) poll() int {
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.ep),
		uintptr(unsafe.Pointer(&l.evbuf[0])), uintptr(len(l.evbuf)), 0, 0, 0)
	if errno != 0 {
		return 0 // EINTR; anything else shows again in the blocking wait
	}
	return int(n)
}

// clock reads the time once per batch of events.
func (l *loop) clock() {
	l.wall = time.Now()
	l.now = l.wall.Sub(l.start)
}

// expired is the value of loop.armed once the deadline has passed: it
// stays set on the descriptor, and every read fails, until arm replaces it.
const expired = time.Duration(-1)

// arm sets the epoll descriptor's read deadline to the earliest deadline
// of the loop, unless one at least as early is set. One set later than
// needed fires early, harmlessly: expire finds nothing due and arm sets
// the next.
func (l *loop) arm() error {
	next := time.Duration(0)
	for _, d := range [...]time.Duration{
		l.reading.next(), l.idle.next(), l.writing.next(), l.lingering.next(), l.acceptAt,
	} {
		if d > 0 && (next == 0 || d < next) {
			next = d
		}
	}
	switch {
	case next == 0 && l.armed == 0:
		return nil
	case next == 0:
		l.armed = 0
		return l.epf.SetReadDeadline(time.Time{})
	case l.armed > 0 && l.armed <= next:
		return nil
	}
	l.armed = next
	return l.epf.SetReadDeadline(l.start.Add(next))
}

// expire closes the connections whose deadline has passed and resumes
// accepting after a pause.
func (l *loop) expire() {
	for _, list := range [...]*connList{&l.reading, &l.idle, &l.writing, &l.lingering} {
		for c := list.head; c != nil && c.deadline <= l.now; c = list.head {
			l.closeConn(c)
		}
	}
	if l.acceptAt != 0 && l.acceptAt <= l.now {
		l.acceptAt = 0
		l.listen(true)
	}
}

// woken handles a wake-up: shutdown or a free connection slot.
func (l *loop) woken() {
	var buf [8]byte
	unix.Read(l.wakefd, buf[:])
	if l.draining.Load() && l.lfd >= 0 {
		l.drain()
	}
	for k := l.evictReq.Swap(0); k > 0; k-- {
		v := l.victim()
		if v == nil {
			break
		}
		l.opts.Metrics.ConnEvicted(metrics.MaxConns)
		l.closeConn(v)
	}
	if l.paused.Load() && !l.srv.limit.full() {
		l.paused.Store(false)
		l.listen(true)
	}
}

// listen adds the listening socket to the epoll set or takes it out.
func (l *loop) listen(on bool) {
	if l.lfd < 0 || on == l.listenerOn || (on && (l.paused.Load() || l.acceptAt != 0)) {
		return
	}
	op := unix.EPOLL_CTL_DEL
	if on {
		op = unix.EPOLL_CTL_ADD
	}
	if err := l.ctl(op, l.lfd, unix.EPOLLIN, 0); err != nil {
		l.log.Error("http: listener", "err", err)
		return
	}
	l.listenerOn = on
}

// drain closes the listening socket and the connections that wait for a
// request; the others close after their reply (the responder is told).
func (l *loop) drain() {
	l.listen(false)
	unix.Close(l.lfd)
	l.lfd = -1
	for c := l.idle.head; c != nil; c = l.idle.head {
		l.closeConn(c)
	}
	// Connections that have not sent a byte of their request yet, but
	// perhaps empty lines.
	for c := l.reading.head; c != nil; {
		next := c.next
		if onlyBlank(c.partial) {
			l.closeConn(c)
		}
		c = next
	}
}

// exit closes everything the loop holds.
func (l *loop) exit() {
	for _, c := range l.conns {
		if c != nil {
			l.closeConn(c)
		}
	}
	if l.lfd >= 0 {
		unix.Close(l.lfd)
		l.lfd = -1
	}
	l.closeFiles()
}

// accept accepts the connections waiting, up to acceptBatch, and serves
// each at once. At MaxConns it makes room for a connection waiting by
// closing one the loop may evict (victim), or, if it has none, stops
// accepting until a connection closes.
func (l *loop) accept() {
	for range acceptBatch {
		if !l.srv.limit.acquire() {
			v := l.victim()
			if v == nil {
				// Ask another loop to make room only if the count is
				// still at the bound (pause may have found a slot free).
				if l.pause(); l.paused.Load() && l.listenerReady() {
					l.askEviction()
				}
				return
			}
			if !l.listenerReady() {
				// Nothing waits; the listener stays on, to evict for
				// the next one.
				return
			}
			// The evicted connection's slot is the new one's.
			l.opts.Metrics.ConnEvicted(metrics.MaxConns)
			l.drop(v, true)
		}
		l.salen = uint32(unsafe.Sizeof(l.sa))
		fd, _, errno := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(l.lfd),
			uintptr(unsafe.Pointer(&l.sa)), uintptr(unsafe.Pointer(&l.salen)),
			unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		if errno != 0 {
			if l.srv.limit.release() {
				l.be.resume()
			}
			switch errno {
			case unix.EAGAIN, unix.EINTR, unix.ECONNABORTED, unix.EPERM, unix.EPROTO:
				if errno == unix.EAGAIN {
					return
				}
				continue
			default:
				// Out of descriptors or memory: stop accepting for a
				// moment rather than spin.
				l.logAcceptError(errno)
				l.acceptAt = l.now + acceptPause
				l.listen(false)
				return
			}
		}
		remote := sockaddrAddrPort(&l.sa)
		var peer *peerEntry[[]addrList]
		if l.peers != nil {
			var ok bool
			if peer, ok = l.peers.acquire(remote.Addr()); !ok {
				// At the address's bound: close its longest-idle
				// keep-alive connection on this loop, whose count is
				// the new one's, or else the new connection.
				v := peer.ext[l.idx].head
				if v == nil {
					l.opts.Metrics.ConnRefused(metrics.PerIP)
					closeFD(int(fd))
					if l.srv.limit.release() {
						l.be.resume()
					}
					continue
				}
				l.opts.Metrics.ConnEvicted(metrics.PerIP)
				v.peer = nil
				l.closeConn(v)
			}
		}
		l.serve(int(fd), remote, peer)
	}
}

// listenerReady reports whether a connection waits to be accepted.
func (l *loop) listenerReady() bool {
	l.pfd[0] = unix.PollFd{Fd: int32(l.lfd), Events: unix.POLLIN}
	var ts unix.Timespec // zero: do not wait
	n, err := unix.Ppoll(l.pfd[:], &ts, nil)
	return err == nil && n > 0 && l.pfd[0].Revents&unix.POLLIN != 0
}

// pause stops accepting while MaxConns connections are open. The paused
// flag is set before the count is looked at again, and a loop that
// closes a connection lowers the count before it looks at the flags
// (epollBackend.resume), so that one of the two sees the other.
func (l *loop) pause() {
	l.paused.Store(true)
	l.listen(false)
	if !l.srv.limit.full() {
		l.paused.Store(false)
		l.listen(true)
	}
}

// evictScan bounds how many connections of the reading list victim looks
// at, so that its cost per accept (or per wait) stays bounded however many
// connections are half-way through a request.
const evictScan = 64

// victim returns the connection to close at MaxConns for a new one: the
// longest-idle keep-alive connection, or else the one that has held
// nothing but blank lines (or nothing) the longest among the first
// evictScan of the reading list (in the order they started reading), or
// nil. A connection that has sent only blank lines has sent nothing
// meaningful: it is as good as idle, and a client that sends one every
// second must not hold its place until the read-header timeout.
func (l *loop) victim() *conn {
	if l.idle.head != nil {
		return l.idle.head
	}
	k := 0
	for c := l.reading.head; c != nil && k < evictScan; c, k = c.next, k+1 {
		if onlyBlank(c.partial) {
			return c
		}
	}
	return nil
}

// askEviction asks the loop with the most connections to evict (idle
// ones, and at MaxConns blank ones: victim) to close one: this loop,
// paused at MaxConns, has none, and a new connection waits on its socket.
// The slot that frees resumes it. A loop counts its blank connections
// only while the Server is at MaxConns, which it may not have been when
// the loop last published them: failing a loop with a connection to
// evict, the one with the most connections reading a request is asked,
// and evicts a blank one if it finds one. This loop is paused until a
// slot frees, so it asks at most once per slot.
func (l *loop) askEviction() {
	var best *loop
	for _, o := range l.be.loops {
		if o != l && o.idleN.Load() > 0 && (best == nil || o.idleN.Load() > best.idleN.Load()) {
			best = o
		}
	}
	if best == nil {
		for _, o := range l.be.loops {
			if o != l && o.readN.Load() > 0 && (best == nil || o.readN.Load() > best.readN.Load()) {
				best = o
			}
		}
	}
	if best != nil {
		best.evictReq.Add(1)
		best.wake()
	}
}

func (l *loop) logAcceptError(err error) {
	l.opts.Errors.Log(context.Background(), slog.LevelError, ratelog.KindAccept, "http: accept failed; pausing", "err", err, "pause", acceptPause)
}

// sockaddrAddrPort converts an accepted peer's address.
func sockaddrAddrPort(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := (*[2]byte)(unsafe.Pointer(&p.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), uint16(port[0])<<8|uint16(port[1]))
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		port := (*[2]byte)(unsafe.Pointer(&p.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(p.Addr), uint16(port[0])<<8|uint16(port[1]))
	}
	return netip.AddrPort{}
}

// connState is where a connection stands.
type connState uint8

const (
	// stateReading: waiting for (the rest of) a request head; on the
	// reading list from the request's first byte or the connection's
	// start.
	stateReading connState = iota
	// stateIdle: a keep-alive connection between requests.
	stateIdle
	// stateWriting: a reply the socket did not take at once is being
	// written on EPOLLOUT; input waits.
	stateWriting
	// stateLingering: the reply is written and the sending side shut
	// down; input is read and dropped until the client closes.
	stateLingering
)

// conn is a connection the loop could not finish at once. Recycled.
type conn struct {
	fd     int
	gen    int32
	remote netip.AddrPort
	state  connState
	events uint32 // epoll interest; 0: not registered

	// partial is the start of a request not yet whole (or, while
	// writing, the requests not yet answered), scanned how much of it was
	// searched for the end of the head.
	partial []byte
	scanned int
	// pending and tail are the unwritten rest of a reply (see batch);
	// closeAfter and linger what to do once it is written.
	pending            []byte
	tail               []byte
	closeAfter, linger bool
	// stream is a body still to copy after pending (batch.stream),
	// streamLeft bytes of it; the connection closes after it.
	stream     io.ReadCloser
	streamLeft int64

	// peer is the connection's count under MaxConnsPerIP (nil: none),
	// and, while it is idle, aprev and anext link it in its address's
	// idle list on this loop (alist).
	peer         *peerEntry[[]addrList]
	alist        *addrList
	aprev, anext *conn

	list       *connList
	prev, next *conn
	deadline   time.Duration
}

// serve serves a connection just accepted.
func (l *loop) serve(fd int, remote netip.AddrPort, peer *peerEntry[[]addrList]) {
	c := l.newConn(fd, remote)
	c.peer = peer
	l.setReading(c)
	l.readable(c)
}

func (l *loop) newConn(fd int, remote netip.AddrPort) *conn {
	var c *conn
	if n := len(l.free); n > 0 {
		c, l.free = l.free[n-1], l.free[:n-1]
	} else {
		c = new(conn)
	}
	// Generation 0 is that of the listener's and the eventfd's events.
	if l.gen++; l.gen == 0 {
		l.gen++
	}
	*c = conn{fd: fd, gen: l.gen, remote: remote, partial: c.partial[:0], pending: c.pending[:0]}
	for fd >= len(l.conns) {
		l.conns = append(l.conns, nil)
	}
	l.conns[fd] = c
	l.nconns++
	return c
}

// event handles the events of a connection.
func (l *loop) event(fd int, gen int32, events uint32) {
	if fd < 0 || fd >= len(l.conns) {
		return
	}
	c := l.conns[fd]
	if c == nil || c.gen != gen {
		return // closed earlier in this batch
	}
	if c.state == stateWriting {
		// EPOLLOUT, or an error or hang-up, which the write reports.
		l.flush(c)
		return
	}
	l.readable(c)
}

// readable reads what the client sent and answers the whole requests.
func (l *loop) readable(c *conn) {
	if c.state == stateLingering {
		l.discard(c)
		return
	}
	n0 := copy(l.in, c.partial)
	m, err := readFD(c.fd, l.in[n0:])
	switch {
	case m > 0:
	case err == unix.EAGAIN:
		l.want(c, unix.EPOLLIN)
		return
	default: // end of stream or error: the client is gone
		l.closeConn(c)
		return
	}
	l.process(c, l.in[:n0+m])
}

// process answers the whole requests in data, which begins with c's
// partial request (copied into l.in), and keeps the rest for later.
func (l *loop) process(c *conn, data []byte) {
	scanned := c.scanned
	answered := false
	for {
		b := l.resp.respond(data, scanned, c.remote, l.out[:0], l.draining.Load(), l.wall)
		l.out = b.out[:0] // keep it if it grew
		data, scanned = data[b.n:], 0
		if b.stream != nil {
			l.startStream(c, b.out, b.stream, b.streamLen)
			return
		}
		if len(b.out) > 0 || len(b.tail) > 0 {
			answered = true
			switch l.send(c, b.out, b.tail) {
			case sendClosed:
				return
			case sendPending:
				c.partial = append(c.partial[:0], data...)
				c.scanned = 0
				c.closeAfter, c.linger = b.close, b.linger
				return
			}
		}
		if b.close {
			l.finish(c, b.linger)
			return
		}
		if b.n == 0 || len(data) == 0 {
			break
		}
	}
	// What is left is the start of a request: a new one if a reply went
	// out, whose head has its own read-header timeout.
	c.partial = append(c.partial[:0], data...)
	c.scanned = len(data)
	switch {
	case len(data) == 0:
		if l.setIdle(c) {
			return
		}
	case answered:
		c.state = stateReading
		l.reading.push(c, l.now)
		if onlyBlank(data) {
			l.evictable() // the empty lines some clients send after a request
		}
	default:
		l.setReading(c)
	}
	l.want(c, unix.EPOLLIN)
}

// Outcomes of send.
const (
	sendDone    = iota // all written
	sendPending        // the rest waits for EPOLLOUT
	sendClosed         // the connection failed and is closed
)

// send writes out and then tail, and keeps what the socket does not take.
func (l *loop) send(c *conn, out, tail []byte) int {
	n, err := writeFD(c.fd, out, tail)
	if n == len(out)+len(tail) {
		return sendDone
	}
	if err != nil && err != unix.EAGAIN {
		l.closeConn(c)
		return sendClosed
	}
	if n < len(out) {
		c.pending = append(c.pending[:0], out[n:]...)
		c.tail = tail
	} else {
		c.pending = c.pending[:0]
		c.tail = tail[n-len(out):]
	}
	c.state = stateWriting
	l.writing.push(c, l.now)
	if !l.want(c, unix.EPOLLOUT) {
		return sendClosed
	}
	return sendPending
}

// streamBurst bounds the chunks of a streamed body (reply.stream) written
// to one connection per event, so that one fast reader of a long body
// does not hold up the loop's other connections (the socket stays
// writable: the loop comes back).
const streamBurst = 4

// startStream writes head and then the stream, and closes the connection
// once it is all written. The write timeout runs from the last progress:
// a client that reads a long body slowly keeps it, one that stops reading
// is dropped.
func (l *loop) startStream(c *conn, head []byte, stream io.ReadCloser, length int64) {
	c.stream, c.streamLeft = stream, length
	c.pending = append(c.pending[:0], head...)
	c.tail = nil
	c.partial, c.scanned = c.partial[:0], 0 // pipelined requests go unanswered
	c.closeAfter, c.linger = true, false
	c.state = stateWriting
	l.writing.push(c, l.now)
	l.flushStream(c)
}

// flushStream writes what it can of a streamed reply.
func (l *loop) flushStream(c *conn) {
	for range streamBurst {
		if len(c.pending) == 0 {
			if c.streamLeft <= 0 {
				l.finish(c, false)
				return
			}
			buf := c.pending[:cap(c.pending)]
			if len(buf) < streamChunk {
				buf = make([]byte, streamChunk)
			}
			buf = buf[:min(int64(len(buf)), c.streamLeft)]
			n, err := io.ReadFull(c.stream, buf)
			if n == 0 {
				// The body ends short (or fails): close, and the client
				// sees a body shorter than its Content-Length.
				l.log.Debug("http: streamed body ended early", "err", err, "left", c.streamLeft)
				l.closeConn(c)
				return
			}
			c.pending = buf[:n]
			c.streamLeft -= int64(n)
		}
		n, err := writeFD(c.fd, c.pending, nil)
		if n > 0 {
			l.writing.push(c, l.now) // progress: the timeout starts again
			c.pending = c.pending[:copy(c.pending, c.pending[n:])]
		}
		if len(c.pending) > 0 {
			if err != nil && err != unix.EAGAIN {
				l.closeConn(c)
				return
			}
			l.want(c, unix.EPOLLOUT)
			return
		}
	}
	// More to write, and the socket may take it: come back on EPOLLOUT.
	l.want(c, unix.EPOLLOUT)
}

// flush writes more of a pending reply; once it is all written, the
// connection goes on with the requests it holds.
func (l *loop) flush(c *conn) {
	if c.stream != nil {
		l.flushStream(c)
		return
	}
	n, err := writeFD(c.fd, c.pending, c.tail)
	if n < len(c.pending)+len(c.tail) {
		if err != nil && err != unix.EAGAIN {
			l.closeConn(c)
			return
		}
		if n < len(c.pending) {
			c.pending = c.pending[:copy(c.pending, c.pending[n:])]
		} else {
			c.tail = c.tail[n-len(c.pending):]
			c.pending = c.pending[:0]
		}
		return
	}
	c.pending, c.tail = c.pending[:0], nil
	if c.closeAfter {
		l.finish(c, c.linger)
		return
	}
	c.state = stateReading
	l.unlist(c)
	data := l.in[:copy(l.in, c.partial)]
	c.partial, c.scanned = c.partial[:0], 0
	l.process(c, data)
}

// finish closes a connection whose last reply is written, lingering if
// the client may still be sending.
func (l *loop) finish(c *conn, linger bool) {
	if !linger {
		l.closeConn(c)
		return
	}
	if err := unix.Shutdown(c.fd, unix.SHUT_WR); err != nil {
		l.closeConn(c)
		return
	}
	c.state = stateLingering
	l.lingering.push(c, l.now)
	l.want(c, unix.EPOLLIN)
}

// discard reads and drops the input of a lingering connection, and closes
// it when the client has.
func (l *loop) discard(c *conn) {
	for range 4 {
		n, err := readFD(c.fd, l.in)
		if err == unix.EAGAIN {
			return
		}
		if n <= 0 {
			break
		}
	}
	l.closeConn(c)
}

// setReading puts c on the reading list, unless it is on it already: the
// deadline runs from the request's first bytes, not from the latest.
func (l *loop) setReading(c *conn) {
	if c.state == stateReading && c.list == &l.reading {
		return
	}
	c.state = stateReading
	l.reading.push(c, l.now)
}

// setIdle puts c on the idle list, or closes it if the Server is
// shutting down; it reports whether it closed it.
func (l *loop) setIdle(c *conn) bool {
	if l.draining.Load() {
		l.closeConn(c)
		return true
	}
	c.state = stateIdle
	l.idle.push(c, l.now)
	if c.peer != nil {
		c.peer.ext[l.idx].push(c)
	}
	l.evictable()
	return false
}

// evictable is called when a connection becomes one victim may choose:
// a loop paused at MaxConns listens again, with a connection to evict.
func (l *loop) evictable() {
	if l.paused.Load() {
		l.paused.Store(false)
		l.listen(true)
	}
}

// want sets c's epoll interest, registering it the first time. If that
// fails, it closes c and reports false.
func (l *loop) want(c *conn, events uint32) bool {
	if c.events == events {
		return true
	}
	op := unix.EPOLL_CTL_MOD
	if c.events == 0 {
		op = unix.EPOLL_CTL_ADD
	}
	if err := l.ctl(op, c.fd, events, c.gen); err != nil {
		l.log.Error("http: registering a connection", "err", err)
		l.closeConn(c)
		return false
	}
	c.events = events
	return true
}

func (l *loop) unlist(c *conn) {
	if c.list != nil {
		c.list.remove(c)
	}
}

// closeConn closes c and recycles it.
func (l *loop) closeConn(c *conn) { l.drop(c, false) }

// drop closes c and recycles it. With keepSlot, its place under MaxConns
// is left counted, for a connection about to be accepted in its stead.
func (l *loop) drop(c *conn, keepSlot bool) {
	if c.fd < 0 {
		return
	}
	l.unlist(c)
	closeFD(c.fd) // takes it out of the epoll set too
	l.conns[c.fd] = nil
	c.fd = -1
	l.nconns--
	if c.stream != nil {
		c.stream.Close()
		c.stream, c.streamLeft = nil, 0
	}
	if c.peer != nil {
		l.peers.release(c.peer)
		c.peer = nil
	}
	if !keepSlot && l.srv.limit.release() {
		l.be.resume()
	}
	if cap(c.partial) > keepBuf {
		c.partial = nil
	}
	if cap(c.pending) > keepBuf {
		c.pending = nil
	}
	c.partial, c.pending, c.tail = c.partial[:0], c.pending[:0], nil
	c.closeAfter, c.linger, c.scanned = false, false, 0
	if len(l.free) < freeConns {
		l.free = append(l.free, c)
	}
}

// The loop's system calls on sockets never block (the sockets are
// non-blocking; close sends its FIN in the background): they are made
// with RawSyscall, without the runtime's bookkeeping for a call that may
// block (entersyscall, exitsyscall), a few per cent of the CPU time of a
// one-request connection.

// readFD reads from a non-blocking socket; len(p) > 0.
func readFD(fd int, p []byte) (int, error) {
	for {
		n, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch errno {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		}
		return 0, errno
	}
}

// closeFD closes a socket.
func closeFD(fd int) {
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}

// writeFD writes a and then b to a non-blocking socket, as much as it
// takes, without SIGPIPE.
func writeFD(fd int, a, b []byte) (int, error) {
	for {
		var n int
		var err error
		switch {
		case len(b) == 0 && len(a) == 0:
			return 0, nil
		case len(b) == 0:
			n, err = sendFD(fd, a)
		case len(a) == 0:
			n, err = sendFD(fd, b)
		default:
			// Only for a large shared body (a full scrape): rare.
			n, err = unix.SendmsgBuffers(fd, [][]byte{a, b}, nil, nil, unix.MSG_NOSIGNAL)
		}
		if err == unix.EINTR {
			continue
		}
		if n < 0 {
			n = 0
		}
		return n, err
	}
}

// sendFD writes p to a non-blocking socket; len(p) > 0.
func sendFD(fd int, p []byte) (int, error) {
	n, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), unix.MSG_NOSIGNAL, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// connList is a list of connections with the same timeout, so in
// deadline order: pushed at the tail, expired from the head.
type connList struct {
	timeout    time.Duration // 0: none
	head, tail *conn
	n          int
}

// never is the deadline of a list without timeout.
const never = time.Duration(1<<63 - 1)

// push moves c to the tail of l, with the deadline now + l.timeout.
func (cl *connList) push(c *conn, now time.Duration) {
	if c.list != nil {
		c.list.remove(c)
	}
	c.deadline = never
	if cl.timeout > 0 {
		c.deadline = now + cl.timeout
	}
	c.list, c.prev, c.next = cl, cl.tail, nil
	cl.n++
	if cl.tail != nil {
		cl.tail.next = c
	} else {
		cl.head = c
	}
	cl.tail = c
}

func (cl *connList) remove(c *conn) {
	if c.alist != nil {
		c.alist.remove(c) // it was idle
	}
	cl.n--
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		cl.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		cl.tail = c.prev
	}
	c.list, c.prev, c.next = nil, nil, nil
}

// next returns the earliest deadline in the list, 0 if none.
func (cl *connList) next() time.Duration {
	if cl.head == nil || cl.head.deadline == never {
		return 0
	}
	return cl.head.deadline
}

// addrList is a list of one address's idle connections on a loop, in
// the order they became idle (a connection is on it while it is on the
// loop's idle list).
type addrList struct {
	head, tail *conn
}

func (al *addrList) push(c *conn) {
	c.alist, c.aprev, c.anext = al, al.tail, nil
	if al.tail != nil {
		al.tail.anext = c
	} else {
		al.head = c
	}
	al.tail = c
}

func (al *addrList) remove(c *conn) {
	if c.aprev != nil {
		c.aprev.anext = c.anext
	} else {
		al.head = c.anext
	}
	if c.anext != nil {
		c.anext.aprev = c.aprev
	} else {
		al.tail = c.aprev
	}
	c.alist, c.aprev, c.anext = nil, nil, nil
}
