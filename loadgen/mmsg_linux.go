//go:build linux && (amd64 || arm64)

package loadgen

import (
	"encoding/binary"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// mmsghdr is struct mmsghdr of recvmmsg(2).
type mmsghdr struct {
	hdr syscall.Msghdr
	n   uint32
	_   [4]byte
}

// batchReader receives datagrams in batches with recvmmsg(2) into fixed
// buffers. It is the receiving half of the batched I/O: x/net's ReadBatch
// would do the same system call but allocates a *net.UDPAddr for every
// datagram, which a generator that must not allocate per request cannot
// afford. Sending uses x/net's WriteBatch (sendmmsg), which does not
// allocate. Not safe for concurrent use.
type batchReader struct {
	rc    syscall.RawConn
	hs    []mmsghdr
	iovs  []syscall.Iovec
	names []syscall.RawSockaddrInet6 // large enough for IPv4 and IPv6
	k, n  int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

func newBatchReader(c *net.UDPConn, bufs [][]byte) (*batchReader, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	r := &batchReader{
		rc:    rc,
		hs:    make([]mmsghdr, len(bufs)),
		iovs:  make([]syscall.Iovec, len(bufs)),
		names: make([]syscall.RawSockaddrInet6, len(bufs)),
	}
	for i, b := range bufs {
		r.iovs[i].Base = &b[0]
		r.iovs[i].SetLen(len(b))
		r.hs[i].hdr.Iov = &r.iovs[i]
		r.hs[i].hdr.Iovlen = 1
		r.hs[i].hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
	}
	r.fn = r.recv
	return r, nil
}

func (r *batchReader) recv(fd uintptr) bool {
	for {
		n, _, e := syscall.Syscall6(syscall.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hs[0])), uintptr(r.k), syscall.MSG_DONTWAIT, 0, 0)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait until readable (or the deadline)
		}
		r.n, r.errno = int(n), e
		return true
	}
}

// read receives at least one and at most len(lens) datagrams, waiting
// until one arrives or the connection's read deadline passes, and stores
// their lengths in lens.
func (r *batchReader) read(lens []int) (int, error) {
	r.k = min(len(lens), len(r.hs))
	for i := range r.k {
		r.hs[i].hdr.Namelen = uint32(unsafe.Sizeof(r.names[i]))
		r.hs[i].hdr.Flags = 0
	}
	r.n, r.errno = 0, 0
	if err := r.rc.Read(r.fn); err != nil {
		return 0, err
	}
	if r.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", r.errno)
	}
	for i := range r.n {
		lens[i] = int(r.hs[i].n)
	}
	return r.n, nil
}

// from stores the source address of datagram i of the last read in a,
// reusing a.IP's storage.
func (r *batchReader) from(i int, a *net.UDPAddr) {
	sa := &r.names[i]
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	a.Port = int(binary.BigEndian.Uint16(p[:]))
	switch sa.Family {
	case syscall.AF_INET:
		sa4 := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		a.IP = append(a.IP[:0], sa4.Addr[:]...)
	default:
		a.IP = append(a.IP[:0], sa.Addr[:]...)
	}
	a.Zone = ""
}

// soReusePort is SO_REUSEPORT (the frozen syscall package lacks it).
const soReusePort = 0xf

// setReusePort lets several sockets bind the same address; the kernel
// spreads datagrams over them by source.
func setReusePort(fd uintptr) error {
	return syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
}
