package wsserver

import (
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// The portable transport: a goroutine per connection reads and
// dispatches its frames; Send appends to the connection's queue and, if
// no write is under way, starts a goroutine that writes the queue out
// and ends. It serves TLS connections, systems other than Linux, and
// Options.GoroutinePerConn.

// pconn is a connection on a goroutine of its own.
type pconn struct {
	s      *Server
	nc     net.Conn
	remote netip.AddrPort
	slot   *slot
	sess   Session

	// Guarded by mu.
	mu      sync.Mutex
	out     []byte // queued bytes, not yet handed to a writer
	writing bool   // a writer goroutine runs
	state   connState
	// closeNext: once out is written, shut down the sending side and
	// wait for the client to close until lingerUntil (closeLinger).
	closeNext   bool
	lingerUntil time.Time

	// The reader goroutine's.
	buf      []byte
	re       reassembly
	lastRead time.Time
	lastPing time.Time
	pending  time.Duration // since s.start; see econn.pending
}

// connState is where a connection stands.
type connState uint8

const (
	stateOpen connState = iota
	// stateClosing: a close frame is queued; nothing more is sent, and
	// messages read are dropped.
	stateClosing
	// stateDead: the connection is being torn down (its queue
	// overflowed, or the server closed it): nothing is sent.
	stateDead
)

// readSizePortable is a portable connection's first read buffer; it
// grows for a longer frame, up to MaxMessageBytes and a header.
const readSizePortable = 4 << 10

func (s *Server) servePortable(nc net.Conn, rest []byte, remote netip.AddrPort, sl *slot) {
	c := &pconn{s: s, nc: nc, remote: remote, slot: sl}
	sl.closer = c
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		s.release(sl)
		nc.Close()
		return
	}
	s.pconns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	s.link(sl) // evictable: a close frame may be queued before Open
	c.sess = s.h.Open(c)
	c.run(rest)
}

func (c *pconn) RemoteAddr() netip.AddrPort { return c.remote }

func (c *pconn) Send(msg []byte) bool { return c.send(opText, msg) }

func (c *pconn) Close() { c.closeWith(errNormal) }

// send queues a frame; past MaxQueueBytes the connection is torn down.
func (c *pconn) send(op byte, p []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen {
		return false
	}
	if len(c.out)+len(p)+10 > c.s.opts.MaxQueueBytes && len(c.out) > 0 {
		c.state = stateDead
		hardClose(c.nc)
		return false
	}
	c.out = appendFrame(c.out, op, p)
	c.startWriter()
	return true
}

// closeWith queues a close frame for e; the connection closes after it.
func (c *pconn) closeWith(e *closeErr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen {
		return
	}
	c.state = stateClosing
	c.out = appendClose(c.out, e)
	c.closeNext = true
	c.startWriter()
}

// startWriter starts the writer unless it runs; c.mu is held.
func (c *pconn) startWriter() {
	if !c.writing {
		c.writing = true
		go c.write()
	}
}

// write writes the queue out, then ends.
func (c *pconn) write() {
	var b []byte
	for {
		c.mu.Lock()
		if len(c.out) == 0 || c.state == stateDead {
			c.writing = false
			closeNext := c.closeNext && c.state != stateDead
			c.closeNext = false
			if closeNext {
				c.lingerUntil = time.Now().Add(closeLinger)
			}
			c.mu.Unlock()
			if closeNext {
				if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
					cw.CloseWrite()
				}
				c.nc.SetReadDeadline(c.lingerUntil)
			}
			return
		}
		b, c.out = c.out, b[:0]
		c.mu.Unlock()
		// The idle timeout bounds a write that makes no progress.
		c.nc.SetWriteDeadline(time.Now().Add(c.s.opts.IdleTimeout))
		if _, err := c.nc.Write(b); err != nil {
			c.mu.Lock()
			c.state = stateDead
			c.writing = false
			c.mu.Unlock()
			hardClose(c.nc)
			return
		}
		if cap(b) > c.s.opts.MaxQueueBytes {
			b = nil
		}
	}
}

// run reads and dispatches frames until the connection ends.
func (c *pconn) run(rest []byte) {
	defer c.finish()
	c.buf = make([]byte, max(readSizePortable, len(rest)))
	n := copy(c.buf, rest)
	c.lastRead = time.Now()
	c.lastPing = c.lastRead
	for {
		if n > 0 {
			k, err, stop := readFrames(c.buf[:n], &c.re, c.s.opts.MaxMessageBytes, c)
			n = copy(c.buf, c.buf[k:n])
			c.pending = pendingSince(c.pending, time.Since(c.s.start), &c.re, k, n)
			if err != nil {
				c.closeWith(err)
			}
			if stop || err != nil {
				c.discard()
				return
			}
		}
		if n == len(c.buf) {
			// A frame longer than the buffer: grow it (parseHeader
			// bounds a frame by MaxMessageBytes).
			c.buf = append(c.buf, make([]byte, len(c.buf))...)
			c.buf = c.buf[:cap(c.buf)]
		}
		c.nc.SetReadDeadline(c.nextDeadline())
		m, err := c.nc.Read(c.buf[n:])
		if m > 0 {
			c.lastRead = time.Now()
			n += m
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			now := time.Now()
			c.mu.Lock()
			linger := c.lingerUntil
			c.mu.Unlock()
			if !linger.IsZero() && !now.Before(linger) {
				return
			}
			if c.pending != 0 && now.Sub(c.s.start)-c.pending >= c.s.opts.MessageTimeout {
				c.closeWith(errSlowMessage)
				c.discard()
				return
			}
			if now.Sub(c.lastRead) >= c.s.opts.IdleTimeout {
				return
			}
			if now.Sub(c.lastRead) >= c.s.opts.PingInterval && now.Sub(c.lastPing) >= c.s.opts.PingInterval {
				c.lastPing = now
				c.send(opPing, nil)
			}
			continue
		}
		if err != nil {
			return
		}
	}
}

// nextDeadline is when the reader next has to ping or time out.
func (c *pconn) nextDeadline() time.Time {
	d := c.lastRead.Add(c.s.opts.IdleTimeout)
	ping := c.lastRead.Add(c.s.opts.PingInterval)
	if p := c.lastPing.Add(c.s.opts.PingInterval); p.After(ping) {
		ping = p
	}
	if ping.Before(d) {
		d = ping
	}
	if c.pending != 0 {
		if m := c.s.start.Add(c.pending + c.s.opts.MessageTimeout); m.Before(d) {
			d = m
		}
	}
	c.mu.Lock()
	if !c.lingerUntil.IsZero() && c.lingerUntil.Before(d) {
		d = c.lingerUntil
	}
	c.mu.Unlock()
	return d
}

// discard reads and drops what the client sends after the close
// handshake began, until it closes or closeLinger passes.
func (c *pconn) discard() {
	c.nc.SetReadDeadline(time.Now().Add(closeLinger))
	for {
		if _, err := c.nc.Read(c.buf[:cap(c.buf)]); err != nil {
			return
		}
	}
}

// finish closes the connection and tells the Session.
func (c *pconn) finish() {
	c.mu.Lock()
	c.state = stateDead
	c.mu.Unlock()
	c.nc.Close()
	c.s.mu.Lock()
	delete(c.s.pconns, c)
	c.s.mu.Unlock()
	c.s.release(c.slot)
	c.sess.Closed()
}

// message, ping and peerClose make pconn an endpoint.
func (c *pconn) message(msg []byte) {
	c.mu.Lock()
	open := c.state == stateOpen
	c.mu.Unlock()
	if open {
		c.slot.touch()
		c.sess.Message(c.s.ctx, msg)
	}
}

func (c *pconn) ping(p []byte) { c.send(opPong, p) }

func (c *pconn) peerClose(p []byte) { c.closeWith(closeReply(p)) }

// hardClose closes nc at once: a TLS connection without its close_notify
// alert, whose write could wait for a client that does not read.
func hardClose(nc net.Conn) {
	if tc, ok := nc.(*tls.Conn); ok {
		tc.NetConn().Close()
		return
	}
	nc.Close()
}
