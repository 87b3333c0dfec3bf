package loadgen

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// The generator's and the canned server's batched UDP I/O is package
// trackd/mmsg's (recvmmsg and sendmmsg, no allocation per datagram).

// setReusePort lets several sockets bind the same address; the kernel
// spreads datagrams over them by source.
func setReusePort(fd uintptr) error {
	return unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
}

// bindNoPort sets IP_BIND_ADDRESS_NO_PORT, so that a socket bound to a
// source address gets its port at connect time, by the whole 4-tuple:
// each source address then has the whole ephemeral range per target.
func bindNoPort(network, address string, c syscall.RawConn) error {
	c.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	return nil
}
