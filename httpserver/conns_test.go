package httpserver_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"trackd/httpserver"
	"trackd/httpserver/httpservertest"
)

// announceOnce sends one announce on c and reads its reply.
func announceOnce(t testing.TB, c net.Conn, br *bufio.Reader) error {
	t.Helper()
	if _, err := io.WriteString(c, httpservertest.Get(testAnnounce)); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, res.Body)
	return err
}

// closedWithin reports whether the server closes c (with no reply)
// within d, and after how long.
func closedWithin(c net.Conn, d time.Duration) (bool, time.Duration) {
	start := time.Now()
	c.SetReadDeadline(start.Add(d))
	var buf [512]byte
	for {
		n, err := c.Read(buf[:])
		if n > 0 && strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
			return false, time.Since(start)
		}
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return false, time.Since(start)
			}
			return true, time.Since(start)
		}
	}
}

// TestServerBlankLineDribbler: a client that sends only empty lines is
// closed once the read-header timeout has passed since the first of them,
// whether on a new connection or on a keep-alive one between requests:
// the lines postpone nothing, neither that timeout nor the idle one.
func TestServerBlankLineDribbler(t *testing.T) {
	const rht = 200 * time.Millisecond
	httpservertest.ForEach(t, func(t *testing.T, listen httpservertest.ListenFunc) {
		s := httpservertest.Start(t, listen, httpserver.EchoHandler, httpserver.Options{ReadHeaderTimeout: rht, IdleTimeout: 5 * time.Second})
		for _, tt := range []struct {
			name      string
			keepAlive bool   // one request first
			line      string // sent every 50 ms
		}{
			{"new connection, CRLF", false, "\r\n"},
			{"new connection, LF", false, "\n"},
			{"keep-alive connection, CRLF", true, "\r\n"},
			{"keep-alive connection, LF", true, "\n"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				c := httpservertest.Dial(t, s.Addr())
				if tt.keepAlive {
					if err := announceOnce(t, c, bufio.NewReader(c)); err != nil {
						t.Fatal(err)
					}
				}
				start := time.Now()
				done := make(chan struct{})
				go func() {
					defer close(done)
					// Bounded: 40 lines, 2 s.
					for range 40 {
						if _, err := io.WriteString(c, tt.line); err != nil {
							return
						}
						time.Sleep(50 * time.Millisecond)
					}
				}()
				closed, _ := closedWithin(c, 3*time.Second)
				d := time.Since(start)
				c.Close()
				<-done
				if !closed || d > rht+time.Second {
					t.Errorf("closed %v after %v, want closed after about %v", closed, d, rht)
				}
			})
		}
	})
}

// TestServerDribblersDoNotLockOut: 200 connections from one address that
// send only empty lines, against MaxConns 200, keep reconnecting; a
// well-behaved client from another address is still served, every time.
func TestServerDribblersDoNotLockOut(t *testing.T) {
	const rht = 200 * time.Millisecond
	httpservertest.ForEach(t, func(t *testing.T, listen httpservertest.ListenFunc) {
		s := httpservertest.Start(t, listen, httpserver.EchoHandler, httpserver.Options{ReadHeaderTimeout: rht, MaxConns: 200})
		startDribblers(t, s, 200, 20, 60*time.Millisecond)
		time.Sleep(300 * time.Millisecond) // the dribblers fill the cap
		var slowest time.Duration
		for i := range 8 {
			start := time.Now()
			c := httpservertest.DialFrom(t, s.Addr(), "127.0.0.1")
			io.WriteString(c, httpservertest.Get(testAnnounce, "Connection: close\r\n"))
			res, _, _ := httpservertest.ReadAll(t, c, 3*time.Second)
			c.Close()
			d := time.Since(start)
			slowest = max(slowest, d)
			if len(res) != 1 || res[0].StatusCode != 200 {
				t.Fatalf("probe %d: %d replies after %v", i, len(res), d)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("slowest probe %v", slowest)
	})
}

// TestServerEvictsBlankAtMaxConns: 200 connections from one address that
// send only empty lines ("\r\n" every 300 ms, reconnecting when closed)
// fill MaxConns 200, with a read-header timeout of 10 s that would hold
// their places for seconds: each new client is served at once anyway,
// in the place of the connection that has sent only empty lines the
// longest. Bound: each of 8 probes, a new connection each, answered
// within 1 s of its dial (on loopback it takes milliseconds).
func TestServerEvictsBlankAtMaxConns(t *testing.T) {
	const (
		dribblers = 200
		every     = 300 * time.Millisecond
		bound     = time.Second
	)
	httpservertest.ForEach(t, func(t *testing.T, listen httpservertest.ListenFunc) {
		m := new(countMetrics)
		s := httpservertest.Start(t, listen, httpserver.EchoHandler, httpserver.Options{
			ReadHeaderTimeout: 10 * time.Second, MaxConns: dribblers, Metrics: m,
		})
		startDribblers(t, s, dribblers, 30, every)
		// Bounded: 5 s for the dribblers to fill the cap.
		for deadline := time.Now().Add(5 * time.Second); s.OpenConns() < dribblers; {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections open, want %d", s.OpenConns(), dribblers)
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(2 * every) // each has sent a line or two
		var slowest time.Duration
		for i := range 8 {
			start := time.Now()
			c := httpservertest.DialFrom(t, s.Addr(), "127.0.0.1")
			c.SetDeadline(start.Add(5 * time.Second))
			io.WriteString(c, httpservertest.Get(testAnnounce, "Connection: close\r\n"))
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			d := time.Since(start)
			c.Close()
			if err != nil {
				t.Fatalf("probe %d: %v after %v", i, err, d)
			}
			if res.StatusCode != 200 {
				t.Fatalf("probe %d: status %d", i, res.StatusCode)
			}
			slowest = max(slowest, d)
			time.Sleep(100 * time.Millisecond)
		}
		evicted := m.evicted(httpserver.BoundMaxConns)
		t.Logf("slowest probe %v; %v evicted", slowest, evicted)
		if slowest > bound {
			t.Errorf("slowest probe %v, want at most %v", slowest, bound)
		}
		if evicted < 8 {
			t.Errorf("evicted counter %v, want at least 8", evicted)
		}
	})
}

// TestServerBlankEvictionSparesRequests: at MaxConns, a connection that
// has sent only an empty line is evicted for a new client, even though
// connections that have begun a real request are older; those are not
// evicted, and once none but they are left, a new client waits.
func TestServerBlankEvictionSparesRequests(t *testing.T) {
	httpservertest.ForEach(t, func(t *testing.T, listen httpservertest.ListenFunc) {
		m := new(countMetrics)
		s := httpservertest.Start(t, listen, httpserver.EchoHandler, httpserver.Options{MaxConns: 4, Loops: 1, Metrics: m})
		var held []heldConn
		for _, send := range []string{"GET /ann", "GET /announce?info", "G", "\r\n"} {
			c := httpservertest.DialFrom(t, s.Addr(), "127.0.0.1")
			io.WriteString(c, send)
			held = append(held, heldConn{c, bufio.NewReader(c)})
			time.Sleep(20 * time.Millisecond) // read by the server, in order
		}
		time.Sleep(100 * time.Millisecond)
		c := httpservertest.DialFrom(t, s.Addr(), "127.0.0.3")
		start := time.Now()
		if err := announceOnce(t, c, bufio.NewReader(c)); err != nil {
			t.Fatalf("new client not served at the cap: %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("new client served after %v, want within 1 s", d)
		}
		if !isClosed(held[3]) {
			t.Error("the blank connection was not evicted")
		}
		for i := range 3 {
			if !stillOpen(held[i]) {
				t.Errorf("connection %d, a partial request, evicted", i)
			}
		}
		// The new client is idle now: evicted for the next one.
		c2 := httpservertest.DialFrom(t, s.Addr(), "127.0.0.3")
		if err := announceOnce(t, c2, bufio.NewReader(c2)); err != nil {
			t.Fatalf("second new client not served: %v", err)
		}
		io.WriteString(c2, "GET /ann") // busy
		time.Sleep(50 * time.Millisecond)
		c3 := httpservertest.DialFrom(t, s.Addr(), "127.0.0.3")
		io.WriteString(c3, httpservertest.Get(testAnnounce))
		if res, _, _ := httpservertest.ReadAll(t, c3, 300*time.Millisecond); len(res) != 0 {
			t.Error("served at the cap with only partial requests open")
		}
		for i := range 3 {
			if !stillOpen(held[i]) {
				t.Errorf("connection %d, a partial request, evicted", i)
			}
		}
		if got := m.evicted(httpserver.BoundMaxConns); got != 2 {
			t.Errorf("evicted counter %v, want 2", got)
		}
	})
}

// countMetrics counts what a Server reports to its Metrics.
type countMetrics struct {
	evictions, refusals [2]atomic.Int64
}

func (m *countMetrics) ConnEvicted(b httpserver.Bound) { m.evictions[b].Add(1) }
func (m *countMetrics) ConnRefused(b httpserver.Bound) { m.refusals[b].Add(1) }

func (m *countMetrics) evicted(b httpserver.Bound) float64 { return float64(m.evictions[b].Load()) }
func (m *countMetrics) refused(b httpserver.Bound) float64 { return float64(m.refusals[b].Load()) }

// heldConn is a connection kept open by a test, with its reader.
type heldConn struct {
	c  net.Conn
	br *bufio.Reader
}

// holdIdle opens n keep-alive connections from local, each after one
// request (idle), in order.
func holdIdle(t *testing.T, s *httpserver.Server, local string, n int) []heldConn {
	t.Helper()
	var held []heldConn
	for range n {
		c := httpservertest.DialFrom(t, s.Addr(), local)
		h := heldConn{c, bufio.NewReader(c)}
		if err := announceOnce(t, c, h.br); err != nil {
			t.Fatal(err)
		}
		held = append(held, h)
		time.Sleep(5 * time.Millisecond) // an order of idleness
	}
	return held
}

// isClosed reports whether the server has closed c (within 2 s).
func isClosed(h heldConn) bool {
	h.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := h.br.ReadByte()
	if err == nil {
		return false
	}
	ne, ok := err.(net.Error)
	return !ok || !ne.Timeout()
}

// stillOpen reports whether c is open (no close within 100 ms).
func stillOpen(h heldConn) bool {
	h.c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, err := h.br.ReadByte()
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestServerEvictsIdleAtMaxConns: at MaxConns, a new client is served by
// closing the longest-idle keep-alive connection.
func TestServerEvictsIdleAtMaxConns(t *testing.T) {
	httpservertest.ForEach(t, func(t *testing.T, listen httpservertest.ListenFunc) {
		m := new(countMetrics)
		s := httpservertest.Start(t, listen, httpserver.EchoHandler, httpserver.Options{MaxConns: 4, Loops: 1, Metrics: m})
		held := holdIdle(t, s, "127.0.0.1", 4)
		for i := range 3 {
			// Each new one is kept, idle: the next needs room again.
			c := httpservertest.DialFrom(t, s.Addr(), "127.0.0.3")
			if err := announceOnce(t, c, bufio.NewReader(c)); err != nil {
				t.Fatalf("new client %d not served at the cap: %v", i, err)
			}
			if !isClosed(held[i]) {
				t.Fatalf("connection %d, the longest idle, not evicted", i)
			}
		}
		if !stillOpen(held[3]) {
			t.Error("the most recently idle connection closed too")
		}
		if got := m.evicted(httpserver.BoundMaxConns); got != 3 {
			t.Errorf("evicted counter %v, want 3", got)
		}
		if n := s.OpenConns(); n != 4 {
			t.Errorf("OpenConns %d, want 4", n)
		}
	})
}

// TestServerEvictsAcrossLoops: at MaxConns, a new connection that lands
// on a loop with no idle connection gets one evicted on another loop. The
// kernel spreads connections over the two loops by a hash of their
// addresses; each new connection stays busy (a request begun), so the
// loops' idle connections run out one loop first. Once none is idle, a
// new connection waits.
//
// The held connections are idle keep-alive ones, or connections that have
// sent only an empty line (evicted alike).
func TestServerEvictsAcrossLoops(t *testing.T) {
	for _, blank := range []bool{false, true} {
		name := "idle"
		if blank {
			name = "blank"
		}
		t.Run(name, func(t *testing.T) {
			s := httpservertest.Start(t, httpserver.Listen, httpserver.EchoHandler, httpserver.Options{MaxConns: 8, Loops: 2})
			if blank {
				for range 8 {
					io.WriteString(httpservertest.DialFrom(t, s.Addr(), "127.0.0.1"), "\r\n")
				}
				time.Sleep(100 * time.Millisecond)
			} else {
				holdIdle(t, s, "127.0.0.1", 8)
			}
			for i := range 8 {
				c := httpservertest.DialFrom(t, s.Addr(), "127.0.0.3")
				if err := announceOnce(t, c, bufio.NewReader(c)); err != nil {
					t.Fatalf("new client %d not served at the cap: %v", i, err)
				}
				io.WriteString(c, "GET /ann")
				// Read by the server before the next one comes: until
				// then c is idle, and evicted before a blank one.
				time.Sleep(50 * time.Millisecond)
			}
			c := httpservertest.DialFrom(t, s.Addr(), "127.0.0.3")
			io.WriteString(c, httpservertest.Get(testAnnounce))
			if res, _, _ := httpservertest.ReadAll(t, c, 300*time.Millisecond); len(res) != 0 {
				t.Error("served at the cap with no connection idle")
			}
		})
	}
}

// TestServerMaxConnsPerIP: an address at its bound gets a new connection
// in the place of its own longest-idle keep-alive one, or else the new
// connection is closed at once; other addresses and trusted proxies are
// not affected.
func TestServerMaxConnsPerIP(t *testing.T) {
	const bound = 3
	httpservertest.ForEach(t, func(t *testing.T, listen httpservertest.ListenFunc) {
		for _, tt := range []struct {
			name    string
			trusted []netip.Prefix
			idle    bool // the held connections are idle (else each holds a partial request)
			// want: the new one served, and the oldest held one evicted
			served, evicted bool
		}{
			{name: "idle ones: the oldest evicted", idle: true, served: true, evicted: true},
			{name: "busy ones: the new one refused", idle: false, served: false},
			{name: "trusted proxy: not bounded", trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.4/32")}, idle: false, served: true},
		} {
			t.Run(tt.name, func(t *testing.T) {
				m := new(countMetrics)
				s := httpservertest.Start(t, listen, httpserver.EchoHandler, httpserver.Options{MaxConnsPerIP: bound, TrustedProxies: tt.trusted, Loops: 1, Metrics: m})
				held := holdIdle(t, s, "127.0.0.4", bound)
				if !tt.idle {
					for _, h := range held {
						io.WriteString(h.c, "GET /ann")
					}
					time.Sleep(50 * time.Millisecond)
				}
				// Another address is served whatever this one holds.
				other := httpservertest.DialFrom(t, s.Addr(), "127.0.0.5")
				if err := announceOnce(t, other, bufio.NewReader(other)); err != nil {
					t.Fatalf("another address: %v", err)
				}
				c := httpservertest.DialFrom(t, s.Addr(), "127.0.0.4")
				io.WriteString(c, httpservertest.Get(testAnnounce, "Connection: close\r\n"))
				res, _, closed := httpservertest.ReadAll(t, c, 3*time.Second)
				if served := len(res) == 1; served != tt.served || !closed {
					t.Fatalf("new connection served %v, closed %v; want served %v", served, closed, tt.served)
				}
				if evicted := !stillOpen(held[0]); evicted != tt.evicted || (evicted && !isClosed(held[0])) {
					t.Errorf("oldest connection evicted %v, want %v", evicted, tt.evicted)
				}
				for _, h := range held[1:] {
					if !stillOpen(h) {
						t.Error("a newer connection of the address closed")
					}
				}
				var wantEvicted, wantRefused float64
				if tt.evicted {
					wantEvicted = 1
				}
				if !tt.served {
					wantRefused = 1
				}
				if got := m.evicted(httpserver.BoundPerIP); got != wantEvicted {
					t.Errorf("evicted counter %v, want %v", got, wantEvicted)
				}
				if got := m.refused(httpserver.BoundPerIP); got != wantRefused {
					t.Errorf("refused counter %v, want %v", got, wantRefused)
				}
			})
		}
	})
}

// streamHandler answers every request with the stream the test gives.
func streamHandler(next func() *httpservertest.Stream) httpserver.Handler {
	return httpserver.HandlerFunc(func(ctx context.Context, w *httpserver.Response, r *httpserver.Request) {
		f := next()
		w.Stream, w.StreamLen = f, f.N
	})
}

const streamSize = 50 << 20

// TestServerStream: a streamed body (Response.Stream) reaches a slow but
// steady reader whole, though it takes far longer than the write timeout;
// a client that stops reading is dropped after the write timeout; one
// that goes away, a body that ends early and the Server's Close all end
// the stream; and it is closed once in every case.
func TestServerStream(t *testing.T) {
	const wt = 300 * time.Millisecond
	httpservertest.ForEach(t, func(t *testing.T, listen httpservertest.ListenFunc) {
		var cur atomic.Pointer[httpservertest.Stream]
		h := streamHandler(func() *httpservertest.Stream { return cur.Load() })
		s := httpservertest.Start(t, listen, h, httpserver.Options{WriteTimeout: wt})

		t.Run("slow reader gets it whole", func(t *testing.T) {
			f := &httpservertest.Stream{N: streamSize}
			cur.Store(f)
			c := httpservertest.Dial(t, s.Addr())
			c.SetDeadline(time.Now().Add(60 * time.Second))
			start := time.Now()
			io.WriteString(c, httpservertest.Get("/scrape")+httpservertest.Get(testAnnounce))
			br := bufio.NewReaderSize(httpservertest.SteadyReader(c), 32<<10)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.ContentLength != streamSize || !res.Close {
				t.Fatalf("Content-Length %d, close %v", res.ContentLength, res.Close)
			}
			httpservertest.CheckBody(t, res.Body, streamSize)
			if d := time.Since(start); d < 2*wt {
				t.Logf("read in %v: not slower than the write timeout, which the test means to show", d)
			}
			// The pipelined request is not answered: the connection closes.
			if _, err := br.ReadByte(); err == nil {
				t.Error("data after the streamed body")
			}
			f.WaitClosed(t)
		})
		t.Run("non-reader dropped", func(t *testing.T) {
			f := &httpservertest.Stream{N: streamSize}
			cur.Store(f)
			c := httpservertest.DialSmallWindow(t, s.Addr())
			io.WriteString(c, httpservertest.Get("/scrape"))
			start := time.Now()
			f.WaitClosed(t)
			if d := time.Since(start); d > wt+3*time.Second {
				t.Errorf("dropped after %v", d)
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, _ := io.Copy(io.Discard, c)
			if n >= streamSize {
				t.Errorf("read %d bytes of a dropped body", n)
			}
		})
		t.Run("client goes away", func(t *testing.T) {
			f := &httpservertest.Stream{N: streamSize}
			cur.Store(f)
			c := httpservertest.DialSmallWindow(t, s.Addr())
			io.WriteString(c, httpservertest.Get("/scrape"))
			io.CopyN(io.Discard, c, 1<<20)
			c.Close()
			f.WaitClosed(t)
		})
		t.Run("body ends early", func(t *testing.T) {
			f := &httpservertest.Stream{N: streamSize, Fail: 3 << 20}
			cur.Store(f)
			c := httpservertest.Dial(t, s.Addr())
			io.WriteString(c, httpservertest.Get("/scrape"))
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, _ := io.Copy(io.Discard, c)
			if n > 3<<20+1024 {
				t.Errorf("read %d bytes", n)
			}
			f.WaitClosed(t)
		})
		t.Run("server closed", func(t *testing.T) {
			s := httpservertest.Start(t, listen, h, httpserver.Options{WriteTimeout: time.Minute})
			f := &httpservertest.Stream{N: streamSize}
			cur.Store(f)
			c := httpservertest.DialSmallWindow(t, s.Addr())
			io.WriteString(c, httpservertest.Get("/scrape"))
			time.Sleep(200 * time.Millisecond) // the socket's buffers fill
			s.Close()
			f.WaitClosed(t)
		})
	})
}

// startDribblers starts n clients on 127.0.0.2 that each connect to s and
// send only "\r\n", one every period, and connect again when s closes the
// connection; each makes at most conns connections, and all stop when the
// test ends. A dribbler notices the close by reading between two lines:
// the read times out after period unless s closed the connection.
func startDribblers(t *testing.T, s *httpserver.Server, n, conns int, every time.Duration) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
	})
	for range n {
		wg.Go(func() {
			for range conns {
				d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
				c, err := d.Dial("tcp", s.Addr().String())
				if err != nil {
					return
				}
				var buf [64]byte
				for err == nil {
					select {
					case <-stop:
						c.Close()
						return
					default:
					}
					if _, err = io.WriteString(c, "\r\n"); err != nil {
						break
					}
					c.SetReadDeadline(time.Now().Add(every))
					if _, err = c.Read(buf[:]); errors.Is(err, os.ErrDeadlineExceeded) {
						err = nil
					}
				}
				c.Close()
			}
		})
	}
}
