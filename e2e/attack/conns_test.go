package attack

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Connections that attack by holding: dribblers (blank lines forever) and
// idle keep-alive connections.

// watchClose reads c (through br, if not nil) until the server closes it,
// and returns a channel that receives when. Bytes the server sends (an
// error reply) are dropped. A close by the test itself is not reported.
func watchClose(c net.Conn, br *bufio.Reader) <-chan time.Time {
	closed := make(chan time.Time, 1)
	var r io.Reader = c
	if br != nil {
		r = br
	}
	go func() {
		_, err := io.Copy(io.Discard, r)
		if err == nil || !errors.Is(err, net.ErrClosed) {
			closed <- time.Now()
		}
	}()
	return closed
}

// dribbler is a connection that sends only "\r\n", once per second.
type dribbler struct {
	c         net.Conn
	firstByte time.Time
	closed    <-chan time.Time
	closedAt  time.Time // once received from closed
}

// startDribbler sends blank lines on c, the first at once, until c is
// closed by either side.
func startDribbler(c net.Conn, br *bufio.Reader) *dribbler {
	d := &dribbler{c: c, firstByte: time.Now(), closed: watchClose(c, br)}
	go func() {
		for {
			if _, err := c.Write([]byte("\r\n")); err != nil {
				return
			}
			time.Sleep(time.Second)
		}
	}()
	return d
}

// closedWithin reports whether the server closed d within limit of its
// first byte, waiting until then at most.
func (d *dribbler) closedWithin(limit time.Duration) bool {
	if d.closedAt.IsZero() {
		select {
		case d.closedAt = <-d.closed:
		case <-time.After(time.Until(d.firstByte.Add(limit))):
		}
	}
	return !d.closedAt.IsZero() && d.closedAt.Sub(d.firstByte) <= limit
}

// keepAliveRequest sends a request on c without closing it (HTTP/1.1
// keep-alive) and reads the reply within timeout. It returns the reader to
// keep reading c with.
func keepAliveRequest(c net.Conn, addr, target string, timeout time.Duration) (*bufio.Reader, error) {
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, addr); err != nil {
		return nil, err
	}
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err == nil && res.StatusCode != http.StatusOK {
		err = fmt.Errorf("HTTP status %d", res.StatusCode)
	}
	return br, err
}

// idleConns is a set of keep-alive connections, each of which sent one
// request and then sat idle.
type idleConns struct {
	conns    []net.Conn
	answered int            // requests answered with 200
	errs     map[string]int // the other outcomes, by error
}

// openIdle opens n keep-alive connections to addr, connection i from
// src(i), sends a scrape on each and waits at most replyTimeout for its
// reply, workers at a time. Connections whose request went unanswered are
// kept too (they may still hold a place in the server's accept queue).
func openIdle(addr string, n, workers int, src func(i int) string, replyTimeout time.Duration) *idleConns {
	ic := &idleConns{conns: make([]net.Conn, n), errs: map[string]int{}}
	target := "/scrape?info_hash=" + url.QueryEscape(string(probeHash[:]))
	var (
		next atomic.Int64
		mu   sync.Mutex
		wg   sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c, err := loopbackDialer(src(i), replyTimeout).Dial("tcp", addr)
				if err == nil {
					ic.conns[i] = c
					_, err = keepAliveRequest(c, addr, target, replyTimeout)
				}
				mu.Lock()
				if err == nil {
					ic.answered++
				} else {
					ic.errs[shortErr(err)]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return ic
}

// shortErr groups errors that differ only in addresses and ports.
func shortErr(err error) string {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed by trackd"
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Op + ": " + oe.Err.Error()
	}
	return err.Error()
}

// stillOpen counts the connections the server has neither closed nor
// written to since their reply, as a non-blocking peek sees them (a
// connection still in the server's accept queue counts as open).
func (ic *idleConns) stillOpen() int {
	open := 0
	for _, c := range ic.conns {
		if c != nil && isOpen(c) {
			open++
		}
	}
	return open
}

// isOpen peeks at c without blocking: nothing to read means open; end of
// stream, a reset or bytes (an error reply before a close) mean not.
func isOpen(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	var buf [1]byte
	rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = err == syscall.EAGAIN
		return true
	})
	return open
}

func (ic *idleConns) close() {
	for _, c := range ic.conns {
		if c != nil {
			c.Close()
		}
	}
}
