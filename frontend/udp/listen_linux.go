package udp

import (
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// reusePortBalances: Linux spreads a port's packets over the sockets that
// share it with SO_REUSEPORT, by a hash of the sender's address.
const reusePortBalances = true

// control sets the socket options before bind: SO_REUSEPORT, which every
// socket of the group needs, and the buffer sizes (best effort).
func (o ServeOptions) control(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); serr != nil {
			serr = fmt.Errorf("SO_REUSEPORT: %w", serr)
			return
		}
		setBuffer(int(fd), unix.SO_RCVBUF, unix.SO_RCVBUFFORCE, o.ReadBuffer)
		setBuffer(int(fd), unix.SO_SNDBUF, unix.SO_SNDBUFFORCE, o.WriteBuffer)
	})
	if err != nil {
		return err
	}
	return serr
}

// setBuffer sets a socket buffer to size: with opt, which the kernel caps
// at its sysctl maximum, and, if that left it smaller, with force, which
// a process with CAP_NET_ADMIN may use to go past the cap. Errors are
// ignored: the size is a wish, and logBuffers reports what came of it.
func setBuffer(fd, opt, force, size int) {
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, size)
	// The kernel reports twice what it set.
	if got, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, opt); err == nil && got >= 2*size {
		return
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, size)
}

// socketBuffers returns the effective SO_RCVBUF and SO_SNDBUF of rc's
// socket (as the kernel reports them: twice the size set).
func socketBuffers(rc controller) (rcv, snd int, err error) {
	var rerr, serr error
	err = rc.Control(func(fd uintptr) {
		rcv, rerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		snd, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
	})
	if err == nil {
		err = rerr
	}
	if err == nil {
		err = serr
	}
	return rcv, snd, err
}

// socketDrops returns how many datagrams the kernel dropped at rc's
// socket because its receive buffer was full (SO_MEMINFO's
// SK_MEMINFO_DROPS).
func socketDrops(rc controller) (uint64, error) {
	var info [unix.SK_MEMINFO_VARS]uint32
	var serr error
	err := rc.Control(func(fd uintptr) {
		n := uint32(unsafe.Sizeof(info))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&n)), 0)
		if e != 0 {
			serr = e
		}
	})
	if err == nil {
		err = serr
	}
	return uint64(info[unix.SK_MEMINFO_DROPS]), err
}
