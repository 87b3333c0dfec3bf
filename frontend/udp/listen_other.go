//go:build !linux

package udp

import (
	"errors"
	"syscall"
)

// reusePortBalances: elsewhere SO_REUSEPORT does not spread packets over
// the sockets (or is not there), so a Server has one socket.
const reusePortBalances = false

// control sets nothing: one socket needs no SO_REUSEPORT, and the buffer
// sizes are left to the system.
func (o ServeOptions) control(network, address string, c syscall.RawConn) error { return nil }

func socketBuffers(rc controller) (rcv, snd int, err error) {
	return 0, 0, errors.New("not on this system")
}

// socketDrops is not known on this system.
func socketDrops(rc controller) (uint64, error) { return 0, nil }
