//go:build !linux

package wsserver

import (
	"errors"
	"net"
	"net/netip"
)

// loops are the event loops, on Linux only: elsewhere every connection
// is served on a goroutine of its own.
type loops struct{ ls []*loop }

type loop struct{ evict evictList }

func startLoops(*Server) *loops { return nil }

func (*loops) kill()              {}
func (*loops) closeAll(*closeErr) {}
func (*loops) pick() *loop        { return nil }
func (*loops) add(l *loop, tc *net.TCPConn, rest []byte, remote netip.AddrPort, sl *slot) error {
	tc.Close()
	return errors.ErrUnsupported
}
