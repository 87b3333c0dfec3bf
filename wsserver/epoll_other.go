//go:build !linux

package wsserver

import (
	"errors"
	"net"
	"net/netip"
)

// loops are the event loops, on Linux only: elsewhere every connection
// is served on a goroutine of its own.
type loops struct{}

func startLoops(*Server) *loops { return nil }

func (*loops) kill()              {}
func (*loops) closeAll(*closeErr) {}
func (*loops) add(tc *net.TCPConn, rest []byte, remote netip.AddrPort, release func()) error {
	tc.Close()
	return errors.ErrUnsupported
}
