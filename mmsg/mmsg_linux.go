package mmsg

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// slotExtra: recvmmsg flags a datagram cut to fit (MSG_TRUNC), so a read
// buffer needs no more than bufSize bytes.
const slotExtra = 0

// sys is the Linux part of a Conn: the recvmmsg and sendmmsg headers,
// pointing into the Conn's buffers (reading) or at the queued data
// (writing), and a sockaddr for each. The callbacks given to RawConn are
// method values made once, so that no call allocates.
type sys struct {
	rc syscall.RawConn
	v6 bool // AF_INET6 socket (dual-stack or not), else AF_INET

	rh    []unix.Mmsghdr
	riov  []unix.Iovec
	rname []unix.RawSockaddrInet6 // large enough for either family
	rfn   func(fd uintptr) bool
	rn    int
	rerr  syscall.Errno

	wh    []unix.Mmsghdr
	wiov  []unix.Iovec
	wname []unix.RawSockaddrInet6
	wfn   func(fd uintptr) bool
	wfrom int // first header of the sendmmsg call
	wto   int // end of the headers of the call
	wn    int
	werr  syscall.Errno

	// A Conn made by Take: its descriptor, in blocking mode. Each use of
	// it holds fdmu shared and checks closing first; Close sets closing,
	// wakes the calls blocked in the kernel, and takes fdmu to close the
	// descriptor once none is left.
	taken   bool
	fd      int
	fdmu    sync.RWMutex
	closing atomic.Bool
}

func (c *Conn) init() error {
	rc, err := c.c.SyscallConn()
	if err != nil {
		return err
	}
	var domain int
	var derr error
	if err := rc.Control(func(fd uintptr) {
		domain, derr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil {
		return err
	}
	if derr != nil {
		return os.NewSyscallError("getsockopt", derr)
	}
	s := &c.sys
	s.rc = rc
	s.v6 = domain == unix.AF_INET6
	s.rh = make([]unix.Mmsghdr, c.batch)
	s.riov = make([]unix.Iovec, c.batch)
	s.rname = make([]unix.RawSockaddrInet6, c.batch)
	s.wh = make([]unix.Mmsghdr, c.batch)
	s.wiov = make([]unix.Iovec, c.batch)
	s.wname = make([]unix.RawSockaddrInet6, c.batch)
	for i := range c.batch {
		s.riov[i].Base = &c.bufs[i*c.slot]
		s.riov[i].SetLen(c.bufSize)
		s.rh[i].Hdr.Iov = &s.riov[i]
		s.rh[i].Hdr.SetIovlen(1)
		s.rh[i].Hdr.Name = (*byte)(unsafe.Pointer(&s.rname[i]))
		s.wh[i].Hdr.Iov = &s.wiov[i]
		s.wh[i].Hdr.SetIovlen(1)
	}
	c.resetRecv(c.batch)
	s.rfn = c.recv
	s.wfn = c.send
	return nil
}

// take dups the socket's descriptor in blocking mode and closes c (the
// runtime's poller forgets the socket when its last descriptor there is
// closed).
func (c *Conn) take() error {
	var fd int
	var derr error
	if err := c.rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return err
	}
	if derr != nil {
		return os.NewSyscallError("fcntl", derr)
	}
	// O_NONBLOCK belongs to the open file, which both descriptors
	// share: c no longer reads or writes once it is cleared.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return os.NewSyscallError("fcntl", err)
	}
	c.c.Close()
	c.taken, c.fd = true, fd
	return nil
}

func (c *Conn) close() error {
	if !c.taken {
		return c.c.Close()
	}
	if c.closing.Swap(true) {
		return net.ErrClosed
	}
	// shutdown wakes a recvmmsg (and a sendmmsg) waiting on the socket;
	// on an unconnected socket it reports ENOTCONN, yet does that.
	_ = unix.Shutdown(c.fd, unix.SHUT_RDWR)
	c.fdmu.Lock()
	defer c.fdmu.Unlock()
	return os.NewSyscallError("close", unix.Close(c.fd))
}

func (c *Conn) control(f func(fd uintptr)) error {
	if !c.taken {
		return c.rc.Control(f)
	}
	c.fdmu.RLock()
	defer c.fdmu.RUnlock()
	if c.closing.Load() {
		return net.ErrClosed
	}
	f(uintptr(c.fd))
	return nil
}

// call makes the system call trap on the taken descriptor with the
// arguments given and flags: first with flags|nowait as a raw system call,
// which the runtime does not see (it does not sleep), then, if that found
// nothing to do (EAGAIN), once more with flags as a system call that may
// sleep. It returns net.ErrClosed, and no result, once Close has begun.
func (c *Conn) call(trap, hdrs, n, flags, nowait uintptr) (int, syscall.Errno, error) {
	c.fdmu.RLock()
	defer c.fdmu.RUnlock()
	for {
		if c.closing.Load() {
			return 0, 0, net.ErrClosed
		}
		r, _, e := unix.RawSyscall6(trap, uintptr(c.fd), hdrs, n, flags|nowait, 0, 0)
		if e == unix.EAGAIN {
			r, _, e = unix.Syscall6(trap, uintptr(c.fd), hdrs, n, flags, 0, 0)
		}
		if e == unix.EINTR {
			continue
		}
		if c.closing.Load() { // woken by Close's shutdown
			return 0, 0, net.ErrClosed
		}
		return int(r), e, nil
	}
}

// resetRecv readies the first n receive headers for recvmmsg.
func (c *Conn) resetRecv(n int) {
	for i := range n {
		h := &c.rh[i].Hdr
		h.Namelen = uint32(unsafe.Sizeof(c.rname[i]))
		h.Flags = 0
	}
}

// recv is the RawConn.Read callback: one recvmmsg that does not wait.
// It returns false, to wait for the socket to be readable, on EAGAIN.
func (c *Conn) recv(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&c.rh[0])), uintptr(c.batch), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		c.rn, c.rerr = int(n), e
		return true
	}
}

func (c *Conn) read() (int, error) {
	// The kernel changed the headers of the datagrams it gave last time
	// (and only those): reset them.
	c.resetRecv(c.rn)
	c.rn, c.rerr = 0, 0
	if c.taken {
		// MSG_WAITFORONE: wait for the first datagram only.
		n, e, err := c.call(unix.SYS_RECVMMSG, uintptr(unsafe.Pointer(&c.rh[0])), uintptr(c.batch), unix.MSG_WAITFORONE, unix.MSG_DONTWAIT)
		if err != nil {
			return 0, err
		}
		c.rn, c.rerr = n, e
	} else if err := c.rc.Read(c.rfn); err != nil {
		return 0, err
	}
	if c.rerr != 0 {
		c.rn = 0
		return 0, os.NewSyscallError("recvmmsg", c.rerr)
	}
	return c.rn, nil
}

func (c *Conn) message(i int) ([]byte, netip.AddrPort) {
	off := i * c.slot
	l := int(c.rh[i].Len)
	return c.bufs[off : off+l : off+l], c.from(i)
}

// from decodes the sender of datagram i.
func (c *Conn) from(i int) netip.AddrPort {
	sa := &c.rname[i]
	if c.rh[i].Hdr.Namelen < 4 {
		return netip.AddrPort{} // no address (not from a UDP socket)
	}
	port := ntohs(&sa.Port)
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			// strconv keeps the strings of small numbers, and
			// netip interns zones: no allocation for a known one.
			a = a.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, port)
	}
	return netip.AddrPort{}
}

func (c *Conn) truncated(i int) bool { return c.rh[i].Hdr.Flags&unix.MSG_TRUNC != 0 }

func (c *Conn) queue(i int, data []byte, to netip.AddrPort) {
	iov := &c.wiov[i]
	iov.Base = nil
	if len(data) > 0 {
		iov.Base = &data[0]
	}
	iov.SetLen(len(data))
	h := &c.wh[i].Hdr
	h.Name, h.Namelen = nil, 0
	if to.IsValid() {
		h.Name = (*byte)(unsafe.Pointer(&c.wname[i]))
		h.Namelen = c.putName(&c.wname[i], to)
	}
}

// putName writes to as a sockaddr of the socket's family into sa and
// returns its length. An IPv6 address for an IPv4 socket is written as
// an AF_INET6 sockaddr, which the kernel refuses (EAFNOSUPPORT).
func (c *Conn) putName(sa *unix.RawSockaddrInet6, to netip.AddrPort) uint32 {
	a := to.Addr()
	if !c.v6 {
		if a = a.Unmap(); a.Is4() {
			sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
			*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
			htons(&sa4.Port, to.Port())
			return unix.SizeofSockaddrInet4
		}
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
	htons(&sa.Port, to.Port())
	if z := a.Zone(); z != "" {
		sa.Scope_id = zoneIndex(z)
	}
	return unix.SizeofSockaddrInet6
}

// zoneIndex returns the interface index of an IPv6 zone: a number, or an
// interface name (which costs a lookup).
func zoneIndex(z string) uint32 {
	if n, err := strconv.ParseUint(z, 10, 32); err == nil {
		return uint32(n)
	}
	if ifi, err := net.InterfaceByName(z); err == nil {
		return uint32(ifi.Index)
	}
	return 0
}

// send is the RawConn.Write callback: one sendmmsg of headers
// [wfrom, wto) that does not wait. It returns false, to wait for the
// socket to be writable, on EAGAIN.
func (c *Conn) send(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&c.wh[c.wfrom])), uintptr(c.wto-c.wfrom), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		c.wn, c.werr = int(n), e
		return true
	}
}

// write makes one sendmmsg of headers [wfrom, wto), and returns an error
// only if the socket could not be written at all (closed, or past its
// deadline).
func (c *Conn) write() error {
	if !c.taken {
		return c.rc.Write(c.wfn)
	}
	// MSG_NOSIGNAL: no SIGPIPE for a socket shut down meanwhile.
	n, e, err := c.call(unix.SYS_SENDMMSG, uintptr(unsafe.Pointer(&c.wh[c.wfrom])), uintptr(c.wto-c.wfrom), unix.MSG_NOSIGNAL, unix.MSG_DONTWAIT)
	c.wn, c.werr = n, e
	return err
}

// flush sends headers [0, q). sendmmsg stops at the first datagram it
// cannot send: with an error if it is the first of the call, else
// returning the count before it (and the error is lost). Either way the
// next call starts at the datagram that failed, which then fails first
// and is skipped, so the loop ends after at most q calls.
func (c *Conn) flush() (int, error) {
	sent := 0
	var first, stop error
	i := 0
	for i < c.q {
		c.wfrom, c.wto = i, c.q
		c.wn, c.werr = 0, 0
		if err := c.write(); err != nil {
			stop = err
			for ; i < c.q; i++ {
				c.errs[i] = err
			}
			break
		}
		if c.werr != 0 || c.wn <= 0 {
			e := c.werr
			if e == 0 {
				e = unix.EIO // cannot happen: sendmmsg sent nothing, yet did not fail
			}
			c.errs[i] = e // no allocation: an Errno is a small integer
			if first == nil {
				first = e
			}
			i++
			continue
		}
		n := min(c.wn, c.q-i)
		clear(c.errs[i : i+n])
		sent += n
		i += n
	}
	// Forget the data sent, which is the caller's.
	for j := range c.q {
		c.wiov[j].Base = nil
	}
	if stop != nil {
		return sent, stop
	}
	return sent, wrapSendErr(first)
}

// wrapSendErr names the system call in a bare errno.
func wrapSendErr(err error) error {
	if e, ok := err.(syscall.Errno); ok {
		return os.NewSyscallError("sendmmsg", e)
	}
	return err
}

func htons(p *uint16, v uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(v>>8), byte(v)
}

func ntohs(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}
