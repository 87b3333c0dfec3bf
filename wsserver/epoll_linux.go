//go:build linux

package wsserver

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The event-loop transport. Each connection's descriptor is duplicated
// out of its net.Conn (which is closed), made non-blocking and put into
// one loop's epoll set. A loop reads into its own buffer and keeps per
// connection only what it could not finish: an incomplete frame
// (partial), a fragmented message (reassembly) and the bytes the socket
// did not take (out). An idle connection holds its econn (about 250
// bytes) and its Session, nothing else: no goroutine, no buffer.
//
// Writes: Send (from any goroutine) takes the connection's lock. While
// the connection's loop is in a pass (between the return of one
// epoll_wait and the next call), the frame is appended to the
// connection's out and the connection to the loop's dirty list; at the
// end of the pass the loop writes each dirty connection's out with one
// system call. So the messages one pass sends to one connection (the
// answers to one offerer that arrive in one batch, a reply and the
// relays behind it) cost one write, not one each; the loop's own Sends
// (a Session's Message runs on it) are all deferred so. A Send while
// the loop waits in epoll_wait (from another goroutine: another loop, a
// goroutine-per-connection session) writes the frame at once if nothing
// is queued before it: no wake-up of the loop is ever needed. What the
// socket does not take is kept in out, bounded by MaxQueueBytes, and
// written by the loop on EPOLLOUT: MaxQueueBytes bounds the bytes the
// socket has refused, so a deferred out over the bound is first offered
// to the socket, and only what it does not take counts. Over the bound
// the connection is shut down (shutdown(2) from the sender: the loop
// then reads the end of stream and closes the descriptor; only the loop
// closes descriptors, under the lock, so that no send can reach a
// number reused since).

// loops are a Server's event loops.
type loops struct {
	s    *Server
	ls   []*loop
	next atomic.Uint32
}

// Sizes of a loop's buffers.
const (
	// readSize is what a loop reads at once, besides the partial frame
	// it copies before it.
	readSize = 32 << 10
	// eventBatch is the most events one epoll_wait returns.
	eventBatch = 256
	// keepPartial is the largest partial-frame buffer a connection keeps
	// once it has no partial frame.
	keepPartial = 256
	// outSize is the capacity of a new write buffer (a connection's out):
	// a reply and a few relayed offers, or the answers to them, without
	// growing it (which would allocate again).
	outSize = 16 << 10
	// keepOut is the largest write buffer a loop keeps for reuse
	// (rather than allocate one per connection written to in each
	// pass). How many it keeps follows the need: the sweep frees those
	// that no pass has used since the sweep before (trimFree), so a loop
	// holds about outSize × the most connections one of its passes
	// wrote to in the last second or so (about 100 under the paced load
	// of docs/benchmarks.md, some 1.6 MiB).
	keepOut = 64 << 10
	// endPassRounds bounds the times endPass takes the dirty list.
	endPassRounds = 4
)

// startLoops starts s's event loops; nil (every connection on a
// goroutine of its own) if they cannot be made.
func startLoops(s *Server) *loops {
	ls := &loops{s: s}
	for range s.opts.Loops {
		l, err := newLoop(s)
		if err != nil {
			s.opts.Logger.Error("websocket: event loop", "err", err)
			for _, l := range ls.ls {
				l.killed.Store(true)
				l.wake()
			}
			return nil
		}
		ls.ls = append(ls.ls, l)
	}
	for _, l := range ls.ls {
		s.wg.Add(1)
		go l.run()
	}
	return ls
}

func (ls *loops) kill() {
	for _, l := range ls.ls {
		l.killed.Store(true)
		l.wake()
	}
}

func (ls *loops) closeAll(e *closeErr) {
	for _, l := range ls.ls {
		l.closeReq.Store(e)
		l.wake()
	}
}

// pick is the loop a new connection is served by, in turn.
func (ls *loops) pick() *loop { return ls.ls[int(ls.next.Add(1))%len(ls.ls)] }

// add serves tc on l: its descriptor is duplicated and tc closed.
// rest are the bytes the client sent after the handshake.
func (ls *loops) add(l *loop, tc *net.TCPConn, rest []byte, remote netip.AddrPort, sl *slot) error {
	rc, err := tc.SyscallConn()
	if err != nil {
		tc.Close()
		return err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(f uintptr) {
		fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		derr = err
	}
	tc.Close()
	if derr != nil {
		return fmt.Errorf("dup: %w", derr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return err
	}
	c := &econn{l: l, fd: fd, remote: remote, slot: sl}
	if len(rest) > 0 {
		c.partial = append([]byte(nil), rest...)
	}
	sl.closer = c
	ls.s.link(sl) // evictable: a close frame may be written before Open
	c.sess = ls.s.h.Open(c)
	l.addMu.Lock()
	if l.stopped {
		l.addMu.Unlock()
		c.mu.Lock()
		c.state, c.fd = stateDead, -1
		c.mu.Unlock()
		unix.Close(fd)
		c.sess.Closed()
		ls.s.release(sl)
		return nil
	}
	l.adds = append(l.adds, c)
	l.addMu.Unlock()
	l.wake()
	return nil
}

// A loop is one event loop; everything but its atomics and the fields
// under addMu belongs to its goroutine.
type loop struct {
	s      *Server
	ep     int
	wakefd int
	evbuf  []unix.EpollEvent
	buf    []byte
	conns  []*econn // by descriptor
	nconns int
	gen    int32

	addMu   sync.Mutex
	adds    []*econn // connections handed over, to register
	stopped bool     // the loop has exited: add closes

	killed   atomic.Bool
	closeReq atomic.Pointer[closeErr] // closeAll's request
	woken    atomic.Bool              // a wake-up is pending

	now, nextSweep time.Duration // since s.start
	tick           time.Duration

	// evict are the loop's connections in eviction order.
	evict evictList

	// Deferred writes, under dmu.
	dmu    sync.Mutex
	inPass bool     // between an epoll_wait's return and the next call
	dirty  []*econn // connections with deferred bytes to write
	free   [][]byte // empty write buffers to reuse
	// freeLow is the fewest buffers free since the last sweep: those
	// were not needed.
	freeLow int
	spare   []*econn     // the loop's: a drained dirty list, for reuse
	writes  atomic.Int64 // send system calls to the loop's connections, counted before each
}

func newLoop(s *Server) (*loop, error) {
	l := &loop{
		s:      s,
		ep:     -1,
		wakefd: -1,
		evbuf:  make([]unix.EpollEvent, eventBatch),
		buf:    make([]byte, s.opts.MaxMessageBytes+maxHeader+readSize),
		inPass: true, // until the first epoll_wait
	}
	// The sweep (pings, timeouts, lingering closes) runs a few times per
	// PingInterval, IdleTimeout or MessageTimeout, whichever is shortest.
	l.tick = min(s.opts.PingInterval, s.opts.IdleTimeout, s.opts.MessageTimeout) / 8
	l.tick = max(min(l.tick, time.Second), 5*time.Millisecond)
	var err error
	if l.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if l.wakefd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		unix.Close(l.ep)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(l.wakefd)}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, l.wakefd, &ev); err != nil {
		unix.Close(l.ep)
		unix.Close(l.wakefd)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	return l, nil
}

// wake makes the loop look at its adds and flags; any goroutine may
// call it.
func (l *loop) wake() {
	if l.woken.Swap(true) {
		return
	}
	one := [8]byte{1}
	unix.Write(l.wakefd, one[:])
}

func (l *loop) clock() { l.now = time.Since(l.s.start) }

func (l *loop) run() {
	defer l.s.wg.Done()
	defer l.exit()
	l.clock()
	l.nextSweep = l.now + l.tick
	for {
		if l.killed.Load() {
			return
		}
		l.register()
		if e := l.closeReq.Swap(nil); e != nil {
			for _, c := range l.conns {
				if c != nil {
					c.closeWith(e)
				}
			}
		}
		l.endPass()
		wait := max(l.nextSweep-l.now, 0)
		n, err := unix.EpollWait(l.ep, l.evbuf, int((wait+time.Millisecond-1)/time.Millisecond))
		l.dmu.Lock()
		l.inPass = true
		l.dmu.Unlock()
		if err != nil && !errors.Is(err, unix.EINTR) {
			l.s.opts.Logger.Error("websocket: event loop failed", "err", err)
			return
		}
		l.clock()
		for i := range n {
			ev := &l.evbuf[i]
			if int(ev.Fd) == l.wakefd {
				var b [8]byte
				l.woken.Store(false)
				unix.Read(l.wakefd, b[:])
				continue
			}
			l.event(int(ev.Fd), ev.Pad, ev.Events)
		}
		if l.now >= l.nextSweep {
			l.trimFree()
			l.sweep()
			l.nextSweep = l.now + l.tick
		}
	}
}

// endPass writes what the pass deferred: each dirty connection's out,
// in one system call each. Sends from other goroutines may add to the
// dirty list meanwhile: it is taken again until it is empty, a few
// times at most (so that other goroutines' Sends cannot keep the loop
// from its connections); the last time, the pass ends with the taking
// (inPass false: Sends write at once again, and a Send to a connection
// still on the list taken appends to its out, which is written next).
func (l *loop) endPass() {
	for round := 0; ; round++ {
		l.dmu.Lock()
		d := l.dirty
		l.dirty = l.spare[:0]
		last := len(d) == 0 || round == endPassRounds-1
		if last {
			l.inPass = false
		}
		l.dmu.Unlock()
		for i, c := range d {
			d[i] = nil
			c.mu.Lock()
			c.dirty = false
			var err error
			switch {
			case c.state == stateDead:
			case len(c.out) > 0:
				err = c.writeOut()
			default: // written before the end of the pass
				c.putOut()
			}
			c.mu.Unlock()
			if err != nil {
				l.closeConn(c)
			}
		}
		l.spare = d[:0]
		if last {
			return
		}
	}
}

// deferred defers c's writes to the end of the loop's pass, if the loop
// is in one: c joins the dirty list and gets a write buffer. c.mu is
// held, c.out is empty and c is not dirty.
func (l *loop) deferred(c *econn) bool {
	l.dmu.Lock()
	defer l.dmu.Unlock()
	if !l.inPass {
		return false
	}
	l.dirty = append(l.dirty, c)
	c.dirty = true
	if cap(c.out) == 0 {
		c.out = l.getOut()
	}
	return true
}

// getOut returns an empty write buffer. l.dmu is held.
func (l *loop) getOut() []byte {
	if n := len(l.free); n > 0 {
		b := l.free[n-1]
		l.free[n-1] = nil
		l.free = l.free[:n-1]
		l.freeLow = min(l.freeLow, n-1)
		return b
	}
	return make([]byte, 0, outSize)
}

// putOut gives c's empty write buffer back to its loop, or to the
// garbage collector. c.mu is held.
func (c *econn) putOut() {
	b := c.out[:0]
	c.out = nil
	if cap(b) == 0 || cap(b) > keepOut {
		return
	}
	l := c.l
	l.dmu.Lock()
	l.free = append(l.free, b)
	l.dmu.Unlock()
}

// trimFree frees the write buffers that stayed free since the last call:
// the loop keeps about as many as its busiest pass of the last sweep
// interval wrote to connections at once.
func (l *loop) trimFree() {
	l.dmu.Lock()
	defer l.dmu.Unlock()
	n := len(l.free) - l.freeLow
	clear(l.free[n:])
	l.free = l.free[:n]
	if cap(l.free) > 2*n+16 {
		l.free = append([][]byte(nil), l.free...)
	}
	l.freeLow = n
}

// register puts the connections handed over into the epoll set and
// reads what came with their handshake.
func (l *loop) register() {
	l.addMu.Lock()
	adds := l.adds
	l.adds = nil
	l.addMu.Unlock()
	for _, c := range adds {
		if l.gen++; l.gen == 0 {
			l.gen++
		}
		for c.fd >= len(l.conns) {
			l.conns = append(l.conns, nil)
		}
		l.conns[c.fd] = c
		l.nconns++
		c.lastRead, c.lastPing = l.now, l.now
		c.mu.Lock()
		c.gen = l.gen
		c.events = unix.EPOLLIN | unix.EPOLLRDHUP
		if len(c.out) > 0 {
			c.events |= unix.EPOLLOUT
		}
		ev := unix.EpollEvent{Events: c.events, Fd: int32(c.fd), Pad: c.gen}
		err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, c.fd, &ev)
		c.registered = err == nil
		c.mu.Unlock()
		if err != nil {
			l.s.opts.Logger.Error("websocket: epoll_ctl", "err", err)
			l.closeConn(c)
			continue
		}
		if len(c.partial) > 0 {
			l.process(c, nil)
		}
	}
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
	if events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		if !l.flush(c) {
			return
		}
	}
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		l.readable(c)
	}
}

// flush writes what is queued for c, as much as the socket takes; it
// reports false if it closed c.
func (l *loop) flush(c *econn) bool {
	c.mu.Lock()
	if c.state == stateDead || len(c.out) == 0 {
		c.mu.Unlock()
		return true
	}
	err := c.writeOut()
	c.mu.Unlock()
	if err != nil {
		l.closeConn(c)
		return false
	}
	return true
}

// readable reads what the client sent and handles its whole frames.
func (l *loop) readable(c *econn) {
	n0 := copy(l.buf, c.partial)
	m, err := readFD(c.fd, l.buf[n0:])
	switch {
	case m > 0:
	case err == unix.EAGAIN:
		return
	default: // end of stream or error: the client is gone
		l.closeConn(c)
		return
	}
	c.lastRead = l.now
	l.process(c, l.buf[:n0+m])
}

// process handles the whole frames in data, which starts with c's
// partial frame (nil: process c.partial alone), and keeps the rest.
func (l *loop) process(c *econn, data []byte) {
	if data == nil {
		data = append(l.buf[:0], c.partial...)
	}
	if c.discarding {
		c.partial = nil
		return
	}
	k, err, stop := readFrames(data, &c.re, l.s.opts.MaxMessageBytes, c)
	if err != nil {
		c.closeWith(err)
	}
	if err != nil || stop {
		// The close handshake has begun: what follows is dropped until
		// the client closes, or closeLinger.
		c.discarding = true
		c.partial, c.re, c.pending = nil, reassembly{}, 0
		return
	}
	rest := data[k:]
	c.pending = pendingSince(c.pending, l.now, &c.re, k, len(rest))
	switch {
	case len(rest) > 0:
		c.partial = append(c.partial[:0], rest...)
	case cap(c.partial) > keepPartial:
		c.partial = nil
	default:
		c.partial = c.partial[:0]
	}
}

// sweep pings the connections quiet for PingInterval, and closes those
// quiet for IdleTimeout, those with a message unfinished for
// MessageTimeout and those whose close has lingered long enough.
func (l *loop) sweep() {
	o := &l.s.opts
	for _, c := range l.conns {
		if c == nil {
			continue
		}
		if by := c.closeBy.Load(); by != 0 && l.now >= time.Duration(by) {
			l.closeConn(c)
			continue
		}
		if c.pending != 0 && l.now-c.pending >= o.MessageTimeout {
			c.closeWith(errSlowMessage)
			c.discarding = true
			c.partial, c.re, c.pending = nil, reassembly{}, 0
			continue
		}
		quiet := l.now - c.lastRead
		if quiet >= o.IdleTimeout {
			l.closeConn(c)
			continue
		}
		if quiet >= o.PingInterval && l.now-c.lastPing >= o.PingInterval {
			c.lastPing = l.now
			c.send(opPing, nil)
		}
	}
}

// closeConn closes c's descriptor and tells its Session.
func (l *loop) closeConn(c *econn) {
	c.mu.Lock()
	fd := c.fd
	c.state, c.fd, c.out = stateDead, -1, nil
	c.mu.Unlock()
	if fd < 0 {
		return
	}
	if fd < len(l.conns) && l.conns[fd] == c {
		l.conns[fd] = nil
		l.nconns--
	}
	unix.Close(fd) // out of the epoll set: no duplicate is left
	l.s.release(c.slot)
	c.sess.Closed()
}

// exit closes everything the loop holds.
func (l *loop) exit() {
	l.addMu.Lock()
	l.stopped = true
	adds := l.adds
	l.adds = nil
	l.addMu.Unlock()
	for _, c := range adds {
		l.closeConn(c)
	}
	for _, c := range l.conns {
		if c != nil {
			l.closeConn(c)
		}
	}
	unix.Close(l.ep)
	unix.Close(l.wakefd)
}

// econn is a connection on an event loop.
type econn struct {
	l      *loop
	remote netip.AddrPort
	slot   *slot
	sess   Session

	// Guarded by mu.
	mu         sync.Mutex
	fd         int // -1 once closed
	gen        int32
	state      connState
	registered bool   // in the epoll set
	events     uint32 // its epoll interest
	closeNext  bool   // once out is written: shut the sending side down
	dirty      bool   // on its loop's dirty list: out is written at the end of the pass
	out        []byte // bytes deferred, or not taken by the socket yet

	// closeBy is when a connection whose close handshake has begun is
	// closed if the client has not closed it by then (since s.start; 0:
	// not closing): closeLinger bounds the writing of the close frame
	// and the wait for the client's close together.
	closeBy atomic.Int64

	// The loop's.
	partial            []byte // an incomplete frame
	re                 reassembly
	discarding         bool
	lastRead, lastPing time.Duration
	// pending is when the oldest unfinished frame or fragmented message
	// began (0: none): MessageTimeout bounds it.
	pending time.Duration
}

func (c *econn) RemoteAddr() netip.AddrPort { return c.remote }

func (c *econn) Send(msg []byte) bool { return c.send(opText, msg) }

func (c *econn) Close() { c.closeWith(errNormal) }

// send sends or queues a frame.
func (c *econn) send(op byte, p []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen {
		return false
	}
	return c.queue(op, p)
}

// queue writes a frame, or defers it to the end of the loop's pass, or
// queues what the socket does not take; past MaxQueueBytes it shuts the
// connection down. c.mu is held.
func (c *econn) queue(op byte, p []byte) bool {
	var h [10]byte
	hn := putHeader(&h, op, len(p))
	size := hn + len(p)
	if len(c.out) > 0 && len(c.out)+size > c.l.s.opts.MaxQueueBytes && c.dirty {
		// Deferred bytes the socket has not been offered yet: offer
		// them now, and bound what it does not take.
		if err := c.writeOut(); err != nil {
			c.kill()
			return false
		}
	}
	if len(c.out) > 0 && len(c.out)+size > c.l.s.opts.MaxQueueBytes {
		c.kill()
		return false
	}
	if len(c.out) > 0 || c.dirty || c.l.deferred(c) {
		c.out = append(c.out, h[:hn]...)
		c.out = append(c.out, p...)
		return true
	}
	c.l.writes.Add(1)
	n, err := sendv(c.fd, h[:hn], p)
	if n == size {
		return true
	}
	if err != nil && err != unix.EAGAIN {
		c.kill()
		return false
	}
	if c.out == nil {
		c.l.dmu.Lock()
		c.out = c.l.getOut()
		c.l.dmu.Unlock()
	}
	if n < hn {
		c.out = append(c.out, h[n:hn]...)
		c.out = append(c.out, p...)
	} else {
		c.out = append(c.out, p[n-hn:]...)
	}
	c.want(unix.EPOLLOUT)
	return true
}

// kill shuts the connection down at once: the loop reads its end of
// stream and closes it. c.mu is held.
func (c *econn) kill() {
	if c.state == stateDead {
		return
	}
	c.state = stateDead
	c.out = nil
	if c.fd >= 0 {
		unix.Shutdown(c.fd, unix.SHUT_RDWR)
	}
}

// want sets c's epoll interest to EPOLLIN and ev. c.mu is held.
func (c *econn) want(ev uint32) {
	events := unix.EPOLLIN | unix.EPOLLRDHUP | ev
	if !c.registered || events == c.events {
		return
	}
	c.events = events
	e := unix.EpollEvent{Events: events, Fd: int32(c.fd), Pad: c.gen}
	if err := unix.EpollCtl(c.l.ep, unix.EPOLL_CTL_MOD, c.fd, &e); err != nil {
		c.kill()
	}
}

// writeOut writes c.out, as much as the socket takes; once it is all
// written it drops EPOLLOUT, and after a close frame shuts the sending
// side down. What the socket does not take moves to the front of out.
// c.mu is held.
func (c *econn) writeOut() error {
	for len(c.out) > 0 {
		c.l.writes.Add(1)
		n, err := send(c.fd, c.out)
		if err == unix.EAGAIN {
			c.want(unix.EPOLLOUT)
			return nil
		}
		if err != nil {
			return err
		}
		if n < len(c.out) {
			c.out = c.out[:copy(c.out, c.out[n:])]
			continue
		}
		c.out = c.out[:0]
	}
	if !c.dirty {
		c.putOut()
	}
	c.want(0)
	if c.closeNext {
		c.lingerOn()
	}
	return nil
}

// lingerOn shuts the sending side down once the close frame is
// written: the client reads the end of stream after it, and closes its
// end. c.mu is held.
func (c *econn) lingerOn() {
	c.closeNext = false
	unix.Shutdown(c.fd, unix.SHUT_WR)
}

// closeWith sends a close frame for e (nil: one without a status) and
// closes the connection once the client has closed, or after
// closeLinger; from then on nothing is sent and messages are dropped.
func (c *econn) closeWith(e *closeErr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen {
		return
	}
	c.state = stateClosing
	c.closeNext = true
	c.closeBy.Store(int64(time.Since(c.l.s.start) + closeLinger))
	if len(c.out) == 0 {
		var b [2 + 125]byte
		f := appendClose(b[:0], e)
		c.l.writes.Add(1)
		n, err := send(c.fd, f)
		switch {
		case n == len(f):
			c.lingerOn()
			return
		case err != nil && err != unix.EAGAIN:
			c.kill()
			return
		}
		c.out = append(c.out, f[n:]...)
		c.want(unix.EPOLLOUT)
		return
	}
	c.out = appendClose(c.out, e)
}

// message, ping and peerClose make econn an endpoint.
func (c *econn) message(msg []byte) {
	c.mu.Lock()
	open := c.state == stateOpen
	c.mu.Unlock()
	if open {
		c.slot.touch()
		c.sess.Message(c.l.s.ctx, msg)
	}
}

func (c *econn) ping(p []byte) { c.send(opPong, p) }

func (c *econn) peerClose(p []byte) { c.closeWith(closeReply(p)) }

// readFD reads from a non-blocking socket; len(p) > 0. It never blocks,
// so it needs no runtime bookkeeping for a blocking call.
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

// send writes b (not empty) to a non-blocking socket, without SIGPIPE.
func send(fd int, b []byte) (int, error) {
	for {
		r, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), unix.MSG_NOSIGNAL, 0, 0)
		switch errno {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		}
		return 0, errno
	}
}

// sendv writes a and then b (which may be empty; a may not) to a
// non-blocking socket, without SIGPIPE, in one system call.
func sendv(fd int, a, b []byte) (int, error) {
	var iov [2]unix.Iovec
	iov[0].Base = &a[0]
	iov[0].SetLen(len(a))
	n := 1
	if len(b) > 0 {
		iov[1].Base = &b[0]
		iov[1].SetLen(len(b))
		n = 2
	}
	var msg unix.Msghdr
	msg.Iov = &iov[0]
	msg.SetIovlen(n)
	for {
		r, _, errno := unix.RawSyscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_NOSIGNAL)
		switch errno {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		}
		return 0, errno
	}
}
