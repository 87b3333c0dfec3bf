package udp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"trackd/internal/ratelog"
	"trackd/mmsg"
)

// ServeOptions configure a Server. The zero value is a good default.
type ServeOptions struct {
	// Sockets is the number of sockets bound to the one address with
	// SO_REUSEPORT, each read by its own goroutine, so that the kernel
	// spreads the packets over the CPUs (it keeps each client on one
	// socket). Zero means runtime.GOMAXPROCS(0). Where SO_REUSEPORT does
	// not balance load (systems other than Linux) there is one socket.
	Sockets int
	// Batch is the number of packets read by one recvmmsg and written by
	// one sendmmsg. Zero means 32; at most 1024.
	Batch int
	// ReadBuffer and WriteBuffer set SO_RCVBUF and SO_SNDBUF of every
	// socket, in bytes. Zero means 4 MiB. Best effort: the kernel caps
	// them at net.core.rmem_max and wmem_max unless the process may
	// exceed those (CAP_NET_ADMIN), and logs what it got.
	ReadBuffer  int
	WriteBuffer int
	// Logger receives socket errors at debug level and handler panics
	// at error level; nil discards them.
	Logger *slog.Logger
	// Errors logs the replies the kernel refuses to send (kind "write")
	// at a bounded rate and counts them; nil means one of the Server's
	// own, over Logger, that counts nothing.
	Errors *ratelog.Logger
}

const (
	defaultBatch      = 32
	maxBatch          = 1024 // UIO_MAXIOV, the most recvmmsg takes
	defaultSockBuffer = 4 << 20
	// recvBufSize is the buffer for one request. BEP 15 requests are at
	// most 98 bytes plus BEP 41 options (an announce) or 16 + 20 × 74
	// bytes (a full scrape); a longer datagram is cut by the kernel and
	// dropped here.
	recvBufSize = 2048
	// replyBufSize is the buffer for one reply: 20 bytes and 200 IPv6 peers
	// of 18 bytes fit. A handler that needs more grows it by append, and
	// the Server keeps the grown buffer, up to maxReplyKeep.
	replyBufSize = 4096
	maxReplyKeep = 64 << 10
	// bindTries bounds the attempts to bind a port-0 address (see bind).
	bindTries = 10
)

func (o ServeOptions) withDefaults() ServeOptions {
	if o.Sockets <= 0 {
		o.Sockets = runtime.GOMAXPROCS(0)
	}
	if !reusePortBalances {
		o.Sockets = 1
	}
	if o.Batch <= 0 {
		o.Batch = defaultBatch
	}
	if o.Errors == nil {
		o.Errors = ratelog.New(o.Logger, ratelog.Options{})
	}
	o.Batch = min(o.Batch, maxBatch)
	if o.ReadBuffer <= 0 {
		o.ReadBuffer = defaultSockBuffer
	}
	if o.WriteBuffer <= 0 {
		o.WriteBuffer = defaultSockBuffer
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Server moves packets between UDP sockets and a PacketHandler: each of
// its sockets has a goroutine that reads a batch of packets with one
// system call, hands each to the handler, and writes the replies back
// with one system call.
//
// Allocations per packet: none but the handler's own, and trackd's
// Handler makes none (TestSocketLoopAllocs counts the whole path, socket
// to socket). The batched I/O is package mmsg's, which reads into buffers
// and headers allocated once per socket and gives the sender as a
// netip.AddrPort; the handler writes its reply into a buffer of the
// socket's, kept from one batch to the next. (golang.org/x/net's
// ReadBatch, used before, allocated a *net.UDPAddr and its net.IP for
// every packet.)
//
// The sockets are mmsg's by Take: out of the runtime's poller, each
// reader's thread waits in the kernel when its socket is idle, and a
// busy socket costs neither a poller callback per packet nor thread
// switches per batch (mmsg.Take says why; docs/benchmarks.md, "UDP out
// of the poller", measures it). Each socket holds one thread.
type Server struct {
	h       PacketHandler
	log     *slog.Logger
	errs    *ratelog.Logger
	addr    net.Addr
	readers []*sockReader
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// Listen binds opts.Sockets UDP sockets to addr and serves h on them
// until Close.
//
// addr is host:port as for net.ListenPacket("udp", addr): ":6969" (or
// "[::]:6969") is one IPv6 socket per slot that also receives IPv4, whose
// senders the handler sees as IPv4-mapped IPv6 addresses;
// "0.0.0.0:6969" and "127.0.0.1:0" are IPv4 only; "[::1]:0" is IPv6
// only. With port 0 the system picks a free port, which every socket
// then shares; Addr tells which.
//
// The port must be free: an address another socket holds is refused
// ("address already in use"), even one that set SO_REUSEPORT, so two
// trackd processes never split one port's traffic by accident.
func Listen(addr string, h PacketHandler, opts ServeOptions) (*Server, error) {
	if h == nil {
		return nil, errors.New("udp.Listen: nil PacketHandler")
	}
	opts = opts.withDefaults()
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := net.LookupPort("udp", portStr)
	if err != nil {
		return nil, err
	}
	var conns []*net.UDPConn
	for try := 0; ; try++ {
		conns, err = bindGroup(host, port, opts)
		// A fixed port that is taken stays taken; a port the system
		// picked may be taken between the probe and the group's bind:
		// pick another.
		if err == nil || port != 0 || try+1 >= bindTries {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{h: h, log: opts.Logger, errs: opts.Errors, addr: conns[0].LocalAddr(), ctx: ctx, cancel: cancel}
	for i, c := range conns {
		r, err := newSockReader(s, c, opts.Batch)
		if err != nil {
			cancel()
			for _, r := range s.readers {
				r.c.Close()
			}
			closeAll(conns[i:])
			return nil, err
		}
		s.readers = append(s.readers, r)
	}
	logBuffers(opts, s.readers[0].c)
	s.wg.Add(len(s.readers))
	for _, r := range s.readers {
		go r.run()
	}
	return s, nil
}

// bind binds the socket group: first a probe socket without SO_REUSEPORT,
// which fails if anything holds the port and, for port 0, gets one that
// nothing holds (the kernel's port-0 search counts ports held by
// SO_REUSEPORT sockets of the same user as free, so a group that bound
// port 0 directly could join another process's group); then, once the
// probe is closed, opts.Sockets sockets with SO_REUSEPORT on the probe's
// address.
func bindGroup(host string, port int, opts ServeOptions) ([]*net.UDPConn, error) {
	probe, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	// The probe's address has the port, and the address family Go chose
	// (the IPv6 wildcard for a dual-stack socket).
	laddr := probe.LocalAddr().String()
	if err := probe.Close(); err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: opts.control}
	var conns []*net.UDPConn
	for range opts.Sockets {
		pc, err := lc.ListenPacket(context.Background(), "udp", laddr)
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		conns = append(conns, pc.(*net.UDPConn))
	}
	return conns, nil
}

func closeAll(conns []*net.UDPConn) {
	for _, c := range conns {
		c.Close()
	}
}

// logBuffers logs the socket buffer sizes the kernel granted, at info
// level when they fall short of what was asked.
func logBuffers(opts ServeOptions, c controller) {
	rcv, snd, err := socketBuffers(c)
	if err != nil {
		opts.Logger.Debug("udp: reading socket buffer sizes", "err", err)
		return
	}
	// Linux reports twice the size set, for its bookkeeping.
	if rcv < 2*opts.ReadBuffer || snd < 2*opts.WriteBuffer {
		opts.Logger.Info("udp: socket buffers smaller than asked; raise net.core.rmem_max and wmem_max",
			"rcvbuf", rcv, "rcvbuf_asked", opts.ReadBuffer, "sndbuf", snd, "sndbuf_asked", opts.WriteBuffer)
		return
	}
	opts.Logger.Debug("udp: socket buffers", "rcvbuf", rcv, "sndbuf", snd)
}

// controller reaches a socket's descriptor: a reader's *mmsg.Conn (a
// syscall.RawConn would do as well).
type controller interface {
	Control(f func(fd uintptr)) error
}

// Addr returns the address the sockets are bound to, with the port the
// system picked if Listen was given port 0.
func (s *Server) Addr() net.Addr { return s.addr }

// Close stops every reader, waits for them to return and closes the
// sockets. Handle calls in flight see their context canceled. Close may be
// called more than once and from several goroutines.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.cancel()
		var errs []error
		for _, r := range s.readers {
			// Closing the socket wakes a reader blocked in recvmmsg
			// or sendmmsg with net.ErrClosed.
			if err := r.c.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		s.wg.Wait()
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// sockReader serves one socket. Its buffers are allocated once.
type sockReader struct {
	s *Server
	c *mmsg.Conn
	// out[i] is the reply buffer for the i-th message of a batch.
	out [][]byte
	// to[k] is the destination of the k-th reply queued, for the log.
	to []netip.AddrPort

	packets atomic.Uint64 // read, for tests
}

func newSockReader(s *Server, c *net.UDPConn, batch int) (*sockReader, error) {
	mc, err := mmsg.Take(c, batch, recvBufSize)
	if err != nil {
		return nil, err
	}
	r := &sockReader{s: s, c: mc, out: make([][]byte, batch), to: make([]netip.AddrPort, batch)}
	for i := range r.out {
		r.out[i] = make([]byte, 0, replyBufSize)
	}
	return r, nil
}

// run reads batches until the Server is closed.
func (r *sockReader) run() {
	defer r.s.wg.Done()
	var backoff time.Duration
	for {
		n, err := r.c.Read()
		if err != nil {
			if r.s.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient (an ICMP error queued on the socket, memory
			// pressure): log, and go on. Errors in a row slow the
			// loop down, so that one that persists cannot spin.
			r.s.log.Debug("udp: read", "err", err)
			backoff = min(max(backoff*2, time.Millisecond), 100*time.Millisecond)
			if r.sleep(backoff) {
				return
			}
			continue
		}
		backoff = 0
		r.packets.Add(uint64(n))
		if r.process(n) > 0 {
			r.write()
		}
	}
}

// sleep waits d, or until the Server is closed, which it reports.
func (r *sockReader) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.s.ctx.Done():
		return true
	case <-t.C:
		return false
	}
}

// process hands the n messages read to the handler and queues the
// replies; it returns their number.
func (r *sockReader) process(n int) int {
	k := 0
	for i := range n {
		if r.c.Truncated(i) {
			continue // longer than recvBufSize: no valid request is
		}
		req, from := r.c.Message(i)
		if !from.IsValid() || from.Port() == 0 {
			continue // no reply could reach port 0
		}
		reply := r.handle(from, req, r.out[i][:0])
		if len(reply) == 0 {
			continue
		}
		if c := cap(reply); c > cap(r.out[i]) && c <= maxReplyKeep {
			r.out[i] = reply[:0] // the handler grew it: keep the bigger one
		}
		r.c.Queue(reply, from)
		r.to[k] = from
		k++
	}
	return k
}

// handle calls the handler, turning a panic into no reply and an error
// log line, as net/http does: one bad packet must not end the tracker.
func (r *sockReader) handle(from netip.AddrPort, req, out []byte) (reply []byte) {
	defer func() {
		if p := recover(); p != nil {
			r.s.log.Error("udp: handler panic", "from", from.String(), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			reply = nil
		}
	}()
	return r.s.h.Handle(r.s.ctx, from, req, out)
}

// write sends the replies queued. A reply the kernel refuses (a
// destination the route or a firewall refuses, say) is dropped and
// logged (rate-limited: kind "write"), and the ones after it still go
// out.
func (r *sockReader) write() {
	k := r.c.Queued()
	sent, err := r.c.Flush()
	if err == nil || r.s.closed.Load() || errors.Is(err, net.ErrClosed) {
		return
	}
	for i := range k {
		if e := r.c.Err(i); e != nil {
			r.s.errs.Log(r.s.ctx, slog.LevelWarn, ratelog.KindWrite, "udp: reply not sent",
				"to", r.to[i], "err", e, "sent", sent, "of", k)
		}
	}
}

// Dropped returns how many datagrams the kernel has dropped at the
// Server's sockets because their receive buffers were full: the load the
// Server shed when requests came faster than it answered. Zero where the
// system does not tell.
func (s *Server) Dropped() uint64 {
	var n uint64
	for _, r := range s.readers {
		d, err := socketDrops(r.c)
		if err == nil {
			n += d
		}
	}
	return n
}
