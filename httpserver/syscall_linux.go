//go:build linux

package httpserver

import (
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
