//go:build !linux

package udp

import (
	"errors"
	"net"
	"syscall"
)

// reusePortBalances: elsewhere SO_REUSEPORT does not spread packets over
// the sockets (or is not there), so a Server has one socket.
const reusePortBalances = false

// msgTrunc: golang.org/x/net reads one message at a time here, and its
// flags are not checked; a cut datagram is left to the handler to refuse.
const msgTrunc = 0

// control sets nothing: one socket needs no SO_REUSEPORT, and the buffer
// sizes are left to the system.
func (o ServeOptions) control(network, address string, c syscall.RawConn) error { return nil }

func socketBuffers(c *net.UDPConn) (rcv, snd int, err error) {
	return 0, 0, errors.New("not on this system")
}

// isIPv6Socket tells the family from the bound address: an IPv4 address
// is an IPv4 socket.
func isIPv6Socket(c *net.UDPConn) (bool, error) {
	a, _ := c.LocalAddr().(*net.UDPAddr)
	return a == nil || a.IP.To4() == nil, nil
}
