//go:build linux

package httpserver

import (
	"context"
	"log/slog"
	"net/netip"
	"trackd/internal/ratelog"
	"unsafe"

	"golang.org/x/sys/unix"
)

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
			l.opts.Metrics.ConnEvicted(BoundMaxConns)
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
					l.opts.Metrics.ConnRefused(BoundPerIP)
					closeFD(int(fd))
					if l.srv.limit.release() {
						l.be.resume()
					}
					continue
				}
				l.opts.Metrics.ConnEvicted(BoundPerIP)
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
