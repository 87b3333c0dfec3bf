package loadgen

import "golang.org/x/sys/unix"

// The generator's and the canned server's batched UDP I/O is package
// trackd/mmsg's (recvmmsg and sendmmsg, no allocation per datagram).

// setReusePort lets several sockets bind the same address; the kernel
// spreads datagrams over them by source.
func setReusePort(fd uintptr) error {
	return unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
}
