//go:build !linux

package loadgen

import "errors"

// setReusePort: elsewhere SO_REUSEPORT does not spread datagrams over
// the sockets that share a port (or is not there); the canned server
// then has one socket.
func setReusePort(fd uintptr) error { return errors.New("SO_REUSEPORT not supported here") }
