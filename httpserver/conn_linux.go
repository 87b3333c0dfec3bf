//go:build linux

package httpserver

import (
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

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
		if b.take != nil {
			l.takeover(c, b.out, data, b.take)
			return
		}
		if b.stream != nil {
			l.startStream(c, b.out, b.stream, b.streamLen)
			return
		}
		if len(b.out) > 0 || len(b.tail) > 0 {
			answered = true
			switch l.send(c, b.out, b.tail, b.close) {
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
// last says that the connection is closed once they are written.
func (l *loop) send(c *conn, out, tail []byte, last bool) int {
	flags := 0
	if last {
		flags = msgLast
	}
	n, err := writeFD(c.fd, out, tail, flags)
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

// streamBurst bounds the chunks of a streamed body (Response.Stream) written
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
		n, err := writeFD(c.fd, c.pending, nil, 0)
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
	n, err := writeFD(c.fd, c.pending, c.tail, 0)
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
	closeFD(c.fd) // takes it out of the epoll set too
	l.forget(c, keepSlot)
}

// forget takes c off the loop's lists and uncounts it (but with keepSlot
// under MaxConns), without closing its descriptor, and recycles it.
func (l *loop) forget(c *conn, keepSlot bool) {
	l.unlist(c)
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

// takeover hands c over to take (Response.Takeover): reply is still to be
// written to it, rest is what the client sent after the request. The
// connection leaves the loop at once, with its slots under MaxConns and
// MaxConnsPerIP; a goroutine of its own makes a net.Conn of it, writes
// the reply and calls take, so that the loop waits for none of it.
func (l *loop) takeover(c *conn, reply, rest []byte, take func(net.Conn)) {
	fd := c.fd
	if c.events != 0 {
		// Out of the epoll set before the descriptor is duplicated: the
		// set holds the open file, not the number, and would report the
		// duplicate's events under this number after the close.
		if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, fd, nil); err != nil {
			l.log.Error("http: taking a connection over", "err", err)
			l.closeConn(c)
			return
		}
	}
	reply = append([]byte(nil), reply...)
	rest = append([]byte(nil), rest...)
	l.forget(c, false)
	writeTimeout := l.opts.WriteTimeout
	go func() {
		f := os.NewFile(uintptr(fd), "")
		nc, err := net.FileConn(f) // a duplicate, in Go's netpoller
		f.Close()
		if err != nil {
			return
		}
		handOver(nc, reply, rest, writeTimeout, take)
	}()
}
