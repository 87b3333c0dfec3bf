//go:build !linux

package loadgen

import (
	"errors"
	"syscall"
)

// setReusePort: elsewhere SO_REUSEPORT does not spread datagrams over
// the sockets that share a port (or is not there); the canned server
// then has one socket.
func setReusePort(fd uintptr) error { return errors.New("SO_REUSEPORT not supported here") }

// bindNoPort: IP_BIND_ADDRESS_NO_PORT is Linux's; elsewhere a bound
// source address gets its port at bind time.
func bindNoPort(network, address string, c syscall.RawConn) error { return nil }
