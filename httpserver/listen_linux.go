//go:build linux

package httpserver

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The Linux Server: one event loop per CPU. Each loop is a goroutine that
// owns a listening socket of the SO_REUSEPORT group on the address, an
// epoll instance, and the connections accepted from its socket.
//
// The epoll instance is not waited on in a system call of the loop's own,
// which would tie up an OS thread and have the runtime hand the loop's P
// to another thread each time it blocks: its descriptor is itself
// registered with Go's netpoller (an epoll descriptor is readable when
// events are ready), and the loop sleeps like any goroutine blocked on a
// socket, until events are ready or its next deadline passes (a read
// deadline on that descriptor). Awake, it takes the ready events with a
// non-blocking epoll_wait.
//
// A connection costs the loop nothing until it has a request: the
// listening socket has TCP_DEFER_ACCEPT, so accept4 returns connections
// whose first bytes have arrived. The loop reads them at once, answers,
// and, if the client asked to close (or spoke HTTP/1.0), closes the
// connection: accept4, read, write, close, and no epoll registration.
// Keep-alive connections, requests that arrive in pieces and replies the
// socket cannot take at once are registered (level-triggered) and carry
// their unfinished bytes in a conn.

// listen binds the loops' sockets and starts them.
func listen(addr string, h Handler, opts Options) (*Server, error) {
	n := opts.Loops
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	fds, laddr, err := bindGroup(addr, n, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		addr:   laddr,
		log:    opts.Logger,
		limit:  connLimit{max: int64(opts.MaxConns)},
		cancel: cancel,
		done:   make(chan struct{}),
		errc:   make(chan error, 1),
	}
	be := &epollBackend{}
	peers := newPeerTable(&opts, func() []addrList { return make([]addrList, len(fds)) })
	for i, fd := range fds {
		l, err := newLoop(ctx, s, be, h, fd, opts)
		if err == nil {
			l.idx, l.peers = i, peers
		}
		if err != nil {
			for _, l := range be.loops {
				l.release()
			}
			for _, fd := range fds[i:] {
				unix.Close(fd)
			}
			cancel()
			return nil, err
		}
		be.loops = append(be.loops, l)
	}
	s.be = be
	var wg sync.WaitGroup
	for _, l := range be.loops {
		wg.Go(l.run)
	}
	go func() {
		wg.Wait()
		s.stopped()
	}()
	return s, nil
}

// bindTries bounds the attempts to bind a port-0 address (see bindGroup).
const bindTries = 10

// bindGroup binds n listening sockets to addr with SO_REUSEPORT and
// returns their descriptors (non-blocking) and the address bound. As the
// UDP frontend does, it first binds a probe socket without SO_REUSEPORT,
// which fails if anything holds the port and, for port 0, gets one that
// nothing holds (the kernel's port-0 search counts ports held by
// SO_REUSEPORT sockets of the same user as free, so a group that bound
// port 0 directly could join another process's group); then, with the
// probe closed, the group on the probe's address.
func bindGroup(addr string, n int, opts Options) ([]int, net.Addr, error) {
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	port, err := net.LookupPort("tcp", portStr)
	if err != nil {
		return nil, nil, err
	}
	lc := tcpListenConfig()
	for try := 0; ; try++ {
		probe, err := lc.Listen(context.Background(), "tcp", addr)
		if err != nil {
			return nil, nil, err
		}
		// The probe's address has the port, and the address family Go
		// chose (the IPv6 wildcard for a dual-stack socket).
		laddr := probe.Addr()
		probe.Close()
		fds, err := bindReusePort(laddr.String(), n, opts)
		if err == nil {
			return fds, laddr, nil
		}
		// A port the system picked may be taken between the probe and
		// the group's bind: pick another.
		if port != 0 || try+1 >= bindTries {
			return nil, nil, err
		}
	}
}

// deferSeconds is the listening sockets' TCP_DEFER_ACCEPT, which takes
// seconds: the kernel holds a connection that sent nothing this long
// (then hands it over anyway, and the read-header timeout applies).
func deferSeconds(opts *Options) int {
	if opts.ReadHeaderTimeout > time.Second {
		return int((opts.ReadHeaderTimeout + time.Second - 1) / time.Second)
	}
	return 1
}

// portableListenConfig is how the portable Server binds: its socket has
// TCP_DEFER_ACCEPT (best effort), so that a connection's goroutine starts
// once the request (or the TLS ClientHello) has arrived rather than to
// wait for it; and accepted connections get no TCP keep-alive probes,
// which would cost four system calls per connection to set (an idle
// connection is closed after IdleTimeout anyway).
func portableListenConfig(opts *Options) net.ListenConfig {
	deferSecs := deferSeconds(opts)
	lc := tcpListenConfig()
	lc.KeepAlive = -1
	lc.Control = func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferSecs)
		})
	}
	return lc
}

func bindReusePort(addr string, n int, opts Options) ([]int, error) {
	deferSecs := deferSeconds(&opts)
	lc := tcpListenConfig()
	lc.Control = func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); serr != nil {
				serr = fmt.Errorf("SO_REUSEPORT: %w", serr)
				return
			}
			// Best effort both: accepted sockets inherit TCP_NODELAY.
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferSecs)
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}
	var fds []int
	for range n {
		ln, err := lc.Listen(context.Background(), "tcp", addr)
		if err != nil {
			closeFDs(fds)
			return nil, err
		}
		// The loop polls the socket itself, not through Go's netpoller:
		// keep a descriptor of it and close the net.Listener's.
		fd, err := dupSocket(ln.(*net.TCPListener))
		ln.Close()
		if err != nil {
			closeFDs(fds)
			return nil, err
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

func dupSocket(ln *net.TCPListener) (int, error) {
	rc, err := ln.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("dup: %w", derr)
	}
	// The duplicate shares the file status flags: it is non-blocking
	// already. Make sure.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
