// Package httpservertest runs an httpserver.Handler on both kinds of
// httpserver.Server (epoll loops on Linux, a goroutine per connection)
// over loopback, and talks raw HTTP/1.1 to it, for tests and benchmarks:
// what net/http/httptest is to net/http. The Server's own tests and those
// of the handlers it serves (the tracker's HTTP frontend) share it.
//
// The helpers report on the testing.TB they are given (a helper that
// cannot go on calls Fatal); what they start or dial is closed when the
// test ends. The package imports only the standard library and
// httpserver, so that any package's tests may use it.
package httpservertest

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"trackd/httpserver"
)

// A ListenFunc starts a Server, as httpserver.Listen does.
type ListenFunc func(addr string, h httpserver.Handler, opts httpserver.Options) (*httpserver.Server, error)

// A Backend is one kind of Server: a name for subtests, and how to start
// one.
type Backend struct {
	Name   string
	Listen ListenFunc
}

// Backends returns the kinds of Server on this system, as Listen chooses
// them: a goroutine per connection (Options.GoroutinePerConn), and on
// Linux, epoll loops.
func Backends() []Backend {
	b := []Backend{{"goroutine per connection", func(addr string, h httpserver.Handler, o httpserver.Options) (*httpserver.Server, error) {
		o.GoroutinePerConn = true
		return httpserver.Listen(addr, h, o)
	}}}
	if runtime.GOOS == "linux" {
		b = append(b, Backend{"epoll", httpserver.Listen})
	}
	return b
}

// ForEach runs test as a subtest per Backend, named for it.
func ForEach(t *testing.T, test func(t *testing.T, listen ListenFunc)) {
	for _, b := range Backends() {
		t.Run(b.Name, func(t *testing.T) { test(t, b.Listen) })
	}
}

// Timeout is the read-header, idle and write timeout Start gives a Server
// whose Options leave it zero: long enough never to cut a test short on
// a loaded machine, short enough that no connection outlives a test by
// much.
const Timeout = 10 * time.Second

// Start starts a Server for h with listen on 127.0.0.1 (a port of the
// system's choosing), with Timeout for each timeout opts leaves zero, and
// closes it when the test ends.
func Start(t testing.TB, listen ListenFunc, h httpserver.Handler, opts httpserver.Options) *httpserver.Server {
	t.Helper()
	if opts.ReadHeaderTimeout == 0 {
		opts.ReadHeaderTimeout = Timeout
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = Timeout
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = Timeout
	}
	return listenOn(t, listen, "127.0.0.1:0", h, opts)
}

func listenOn(t testing.TB, listen ListenFunc, addr string, h httpserver.Handler, opts httpserver.Options) *httpserver.Server {
	t.Helper()
	s, err := listen(addr, h, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Dial connects to addr (within 5 s), with a deadline of 10 s for all
// that follows, and closes the connection when the test ends.
func Dial(t testing.TB, addr net.Addr) net.Conn {
	t.Helper()
	return DialFrom(t, addr, "")
}

// DialFrom is Dial from the local address local ("127.0.0.3"; "" for
// the system's choice). Each address of 127.0.0.0/8 is a client of its
// own: a Server's bounds per address (Options.MaxConnsPerIP) are tested
// so.
func DialFrom(t testing.TB, addr net.Addr, local string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// Get returns the text of a GET request for target, with a Host field
// and then the extra header lines ("Name: value\r\n" each).
func Get(target string, extra ...string) string {
	return "GET " + target + " HTTP/1.1\r\nHost: tracker\r\n" + strings.Join(extra, "") + "\r\n"
}

// ReadAll reads replies to GET requests from c until the server closes
// the connection or d has passed; eof reports that the server closed it
// (an EOF, or a reset).
func ReadAll(t testing.TB, c net.Conn, d time.Duration) (replies []*http.Response, bodies []string, eof bool) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	br := bufio.NewReader(c)
	for {
		res, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return replies, bodies, false
			}
			// EOF, or a reset after the server closed.
			return replies, bodies, true
		}
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("reading a body: %v", err)
		}
		replies = append(replies, res)
		bodies = append(bodies, string(body))
	}
}

// ForEachFamily serves h on each way a client reaches a Server over
// loopback, IPv4, IPv6, and either on a dual-stack socket (":0"), sends
// a GET for target on a new connection that asks to close, and runs check
// in a subtest ("listen 127.0.0.1:0, dial ::1") with the client's address
// and the reply's body. It skips the test without an IPv6 loopback.
func ForEachFamily(t *testing.T, h httpserver.Handler, target string, check func(t *testing.T, client netip.Addr, body []byte)) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	ln.Close()
	for _, tt := range []struct{ listen, dial string }{
		{"127.0.0.1:0", "127.0.0.1"},
		{"[::1]:0", "::1"},
		{":0", "127.0.0.1"},
		{":0", "::1"},
	} {
		t.Run("listen "+tt.listen+", dial "+tt.dial, func(t *testing.T) {
			s := listenOn(t, httpserver.Listen, tt.listen, h, httpserver.Options{})
			port := s.Addr().(*net.TCPAddr).Port
			c := Dial(t, &net.TCPAddr{IP: net.ParseIP(tt.dial), Port: port})
			io.WriteString(c, Get(target, "Connection: close\r\n"))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			reply, _ := io.ReadAll(c)
			_, body, _ := strings.Cut(string(reply), "\r\n\r\n")
			check(t, netip.MustParseAddr(tt.dial), []byte(body))
		})
	}
}
