//go:build linux

package httpserver

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

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
// takes, without SIGPIPE. flags are more of send's: 0, or msgLast.
func writeFD(fd int, a, b []byte, flags int) (int, error) {
	for {
		var n int
		var err error
		switch {
		case len(b) == 0 && len(a) == 0:
			return 0, nil
		case len(b) == 0:
			n, err = sendFD(fd, a, flags)
		case len(a) == 0:
			n, err = sendFD(fd, b, flags)
		default:
			// Only for a large shared body (a full scrape): rare.
			n, err = unix.SendmsgBuffers(fd, [][]byte{a, b}, nil, nil, unix.MSG_NOSIGNAL|flags)
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

// msgLast is writeFD's flag for the last bytes before the connection is
// closed (or shut down for writing): MSG_MORE, so that the kernel keeps a
// last segment shorter than the MSS unsent, and the close that follows
// sends it with the FIN in one segment (tcp_send_fin sets FIN on a
// segment not yet sent). A one-request connection's reply and FIN are
// then one packet instead of two, and the client acknowledges both at
// once: a transmission and a reception fewer per connection on each side
// (docs/benchmarks.md, "The reply and the FIN in one segment").
const msgLast = unix.MSG_MORE

// sendFD writes p to a non-blocking socket; len(p) > 0.
func sendFD(fd int, p []byte, flags int) (int, error) {
	n, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), uintptr(unix.MSG_NOSIGNAL|flags), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// corkLast is msgLast for the portable Server: it corks c (TCP_CORK), so
// that what is written to it from now on leaves, up to the last segment
// shorter than the MSS, only when c is closed, with the FIN. Over TLS the
// reply's record and the close_notify alert after it go with the FIN in
// one segment. Best effort: a connection that is not a socket is left as
// it is.
func corkLast(c net.Conn) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_CORK, 1)
	})
}
