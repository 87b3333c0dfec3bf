// Package mmsg reads and writes UDP datagrams in batches, without
// allocating per datagram.
//
// On Linux a Conn receives up to a batch of datagrams with one
// recvmmsg(2) and sends everything queued with one sendmmsg(2) (more when
// the kernel takes only part of it), through the socket's
// syscall.RawConn, so that waiting goes through the runtime's poller as
// for any net.Conn: read and write deadlines apply, and closing the
// socket wakes a Read or Flush blocked on it with net.ErrClosed. All
// buffers, message headers and socket addresses are allocated by New and
// reused; addresses are netip.AddrPort values. golang.org/x/net's
// ReadBatch does the same system call but allocates a net.IP and a
// *net.UDPAddr for every datagram it reads.
//
// A Conn made by Take instead of New owns the socket and keeps it out of
// the runtime's poller: see Take for how it waits, and why a busy server
// wants that.
//
// Elsewhere a Conn reads and writes one datagram per system call, with
// ReadFromUDPAddrPort and WriteToUDPAddrPort (which do not allocate
// either): the same API, without the batching.
//
// Addresses: on an IPv6 socket that also receives IPv4 (a dual-stack
// socket, as net.ListenPacket("udp", ":port") makes), IPv4 senders are
// reported as the kernel gives them, as IPv4-mapped IPv6 addresses
// (::ffff:a.b.c.d); Queue takes either form on such a socket, and the
// mapped form on an IPv4 socket too. On Linux a link-local IPv6
// sender's zone is its interface index in decimal ("fe80::1%2"), which
// Queue takes back, as it does an interface name (elsewhere the zone is
// the name, as package net gives it).
//
// A typical server loop:
//
//	c, _ := mmsg.New(udpConn, 32, 2048)
//	for {
//		n, err := c.Read()
//		if err != nil { ... }
//		for i := range n {
//			req, from := c.Message(i)
//			c.Queue(reply(req, out[i][:0]), from)
//		}
//		c.Flush()
//	}
package mmsg

import (
	"errors"
	"net"
	"net/netip"
)

// Conn does batched I/O on one UDP socket. Its read side (Read, Message,
// Truncated) and its write side (Queue, Flush, Err) each belong to one
// goroutine at a time, which may be two different ones: the two sides
// share no state. The socket itself stays the caller's, to set deadlines
// on and to close.
type Conn struct {
	c       *net.UDPConn
	batch   int
	bufSize int

	// Read side.
	bufs []byte // batch slots of slot bytes: the datagrams read
	slot int    // bufSize, plus one byte where that tells truncation
	n    int    // datagrams of the last Read

	// Write side.
	q    int     // datagrams queued
	errs []error // outcome of each datagram of the last Flush

	sys // the platform's part
}

// New returns a Conn that reads at most batch datagrams at a time, into
// buffers of bufSize bytes each (a longer datagram is cut; see
// Truncated), and queues at most batch datagrams to send. It allocates
// every buffer it will use now: batch × bufSize bytes and the headers.
//
// c may be connected (net.DialUDP) or not. Set its buffer sizes and
// options before or after New as usual; closing it ends the Conn.
func New(c *net.UDPConn, batch, bufSize int) (*Conn, error) {
	if c == nil {
		return nil, errors.New("mmsg.New: nil *net.UDPConn")
	}
	if batch < 1 || bufSize < 1 {
		return nil, errors.New("mmsg.New: batch and bufSize must be positive")
	}
	m := &Conn{
		c:       c,
		batch:   batch,
		bufSize: bufSize,
		slot:    bufSize + slotExtra,
		errs:    make([]error, batch),
	}
	m.bufs = make([]byte, batch*m.slot)
	if err := m.init(); err != nil {
		return nil, err
	}
	return m, nil
}

// Take returns a Conn like New's that takes the socket over: it keeps a
// duplicate of c's descriptor, in blocking mode, and closes c, which
// takes the socket out of the runtime's poller. From then on the socket
// is the Conn's: Close closes it and Control reaches it; deadlines do not
// apply.
//
// On Linux every Read and Flush first tries a system call that does not
// wait, made without telling the runtime (a raw system call: it does not
// sleep, and a batch takes tens of microseconds), and only when there is
// nothing to read, or no room to send, one that waits in the kernel, as
// any blocking system call: the goroutine's thread sleeps in it, and the
// runtime lets other goroutines run meanwhile. On a socket that stays
// busy this saves two costs of New's way, both measured (see
// docs/benchmarks.md, "UDP out of the poller"):
//   - the kernel calls the poller back for every datagram received and
//     every datagram sent, since the poller watches the socket for both
//     directions: two callbacks per request and reply, each taking a lock
//     with interrupts off;
//   - a system call the runtime knows of that lasts longer than the
//     scheduler's monitor tick (20 µs; a sendmmsg of 16 replies over
//     loopback takes longer) loses its P to another thread, which is
//     started only to find nothing to do: thread switches per batch on a
//     busy CPU.
//
// A Conn made by Take holds one thread per goroutine waiting in its Read:
// meant for a few sockets with a reader each, not for many.
//
// Elsewhere than Linux, Take is New, and Close closes c.
func Take(c *net.UDPConn, batch, bufSize int) (*Conn, error) {
	m, err := New(c, batch, bufSize)
	if err != nil {
		return nil, err
	}
	if err := m.take(); err != nil {
		return nil, err
	}
	return m, nil
}

// Close closes the socket of a Conn made by Take. A Read or Flush blocked
// on it returns an error that is net.ErrClosed, as do later ones; Close
// waits for them to leave the socket before it closes the descriptor, so
// that none can reach another socket given the same number. On a Conn
// made by New, Close closes c.
func (c *Conn) Close() error { return c.close() }

// Control runs f with the socket's descriptor, as syscall.RawConn's
// Control: f must not keep it past its return. It returns an error that
// is net.ErrClosed once the Conn (or, for New, c) is closed.
func (c *Conn) Control(f func(fd uintptr)) error { return c.control(f) }

// Batch returns the most datagrams one Read returns and Queue holds.
func (c *Conn) Batch() int { return c.batch }

// Queued returns the number of datagrams queued since the last Flush.
func (c *Conn) Queued() int { return c.q }

// Queue adds a datagram to send to the next Flush, which sends data as
// it is then: data must not change until Flush returns. to is the
// destination; the zero netip.AddrPort means the connected peer, on a
// connected socket. Queue panics if Batch datagrams are already queued.
func (c *Conn) Queue(data []byte, to netip.AddrPort) {
	if c.q == c.batch {
		panic("mmsg: Queue: the queue is full; Flush first")
	}
	c.queue(c.q, data, to)
	c.q++
}

// Err returns the outcome of the i-th datagram (in queue order, from 0)
// of the last Flush: nil if it was sent, else the kernel's reason for
// refusing it, or the error that stopped Flush before it.
func (c *Conn) Err(i int) error { return wrapSendErr(c.errs[i]) }

// Read waits until at least one datagram can be read, then reads as many
// as are there, up to Batch, and returns their number. Message and
// Truncated tell about each; the next Read reuses their buffers.
//
// Read honors the socket's read deadline (an error that is
// os.ErrDeadlineExceeded; not for Take), and returns an error that is
// net.ErrClosed once the socket is closed. Any other error is the
// kernel's (on Linux, an *os.SyscallError "recvmmsg"; on a connected
// socket, say, the ECONNREFUSED of an ICMP port unreachable): no datagram
// was read, and the socket can still be read.
func (c *Conn) Read() (n int, err error) {
	c.n = 0
	n, err = c.read()
	c.n = n
	return n, err
}

// Message returns datagram i of the last Read (0 <= i < n): its bytes,
// which stay valid until the next Read, and its sender. data is at most
// bufSize bytes long; from is as the kernel reports it (see the package
// documentation on IPv4-mapped addresses).
func (c *Conn) Message(i int) (data []byte, from netip.AddrPort) {
	if i < 0 || i >= c.n {
		panic("mmsg: Message: index out of range")
	}
	return c.message(i)
}

// Truncated reports whether datagram i of the last Read was longer than
// bufSize and so was cut to fit.
func (c *Conn) Truncated(i int) bool {
	if i < 0 || i >= c.n {
		panic("mmsg: Truncated: index out of range")
	}
	return c.truncated(i)
}

// Flush sends the datagrams queued, in as few system calls as the kernel
// allows, and empties the queue. It returns how many were sent and, if
// any was not, an error: the one that stopped Flush, if it stopped before
// the end (an error that is net.ErrClosed once the socket is closed, or
// os.ErrDeadlineExceeded past its write deadline, not for Take), or else
// the first of the kernel's refusals. A datagram the kernel refuses
// (EPERM from a firewall, ECONNREFUSED, EMSGSIZE, a destination of the
// wrong address family...) is dropped, and the datagrams after it still
// sent; Err(i) tells which were.
//
// Flush blocks while the socket's send buffer is full.
func (c *Conn) Flush() (sent int, err error) {
	sent, err = c.flush()
	c.q = 0
	return sent, err
}
