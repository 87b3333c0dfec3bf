//go:build !(linux && (amd64 || arm64))

package loadgen

import (
	"errors"
	"net"

	"golang.org/x/net/ipv4"
)

// batchReader receives datagrams in batches with x/net's ReadBatch
// (recvmmsg on Linux, one datagram per call elsewhere). On linux/amd64
// and linux/arm64 a raw recvmmsg replaces it, which does not allocate.
type batchReader struct {
	pc   *ipv4.PacketConn
	msgs []ipv4.Message
}

func newBatchReader(c *net.UDPConn, bufs [][]byte) (*batchReader, error) {
	r := &batchReader{pc: ipv4.NewPacketConn(c), msgs: make([]ipv4.Message, len(bufs))}
	for i, b := range bufs {
		r.msgs[i].Buffers = [][]byte{b}
	}
	return r, nil
}

func (r *batchReader) read(lens []int) (int, error) {
	k := min(len(lens), len(r.msgs))
	n, err := r.pc.ReadBatch(r.msgs[:k], 0)
	if err != nil {
		return 0, err
	}
	for i := range n {
		lens[i] = r.msgs[i].N
	}
	return n, nil
}

func (r *batchReader) from(i int, a *net.UDPAddr) {
	if u, ok := r.msgs[i].Addr.(*net.UDPAddr); ok {
		a.IP = append(a.IP[:0], u.IP...)
		a.Port = u.Port
		a.Zone = u.Zone
	}
}

func setReusePort(fd uintptr) error { return errors.New("SO_REUSEPORT not supported here") }
