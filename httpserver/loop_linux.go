//go:build linux

package httpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

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
	opts  Options
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

func newLoop(ctx context.Context, s *Server, be *epollBackend, h Handler, lfd int, opts Options) (*loop, error) {
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
	l.lingering.timeout = LingerTime
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
		l.opts.Metrics.ConnEvicted(BoundMaxConns)
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
