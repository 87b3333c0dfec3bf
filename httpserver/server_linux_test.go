//go:build linux

package httpserver

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"trackd/internal/race"
)

// rawClient is a blocking client on raw sockets, which allocates nothing
// per request: allocation counts are then the server's.
type rawClient struct {
	t   testing.TB
	sa  unix.Sockaddr
	fd  int
	req []byte
	buf []byte
}

func newRawClient(t testing.TB, s *Server, req string) *rawClient {
	ap := s.Addr().(*net.TCPAddr).AddrPort()
	return &rawClient{t: t, sa: &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}, fd: -1, req: []byte(req), buf: make([]byte, 64<<10)}
}

func (c *rawClient) connect() {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := unix.Connect(fd, c.sa); err != nil {
		c.t.Fatal(err)
	}
	c.fd = fd
}

func (c *rawClient) close() {
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
}

// do sends the request and reads one reply; with closing, on a new
// connection closed afterwards. It returns the body (in c's buffer).
func (c *rawClient) do(closing bool) []byte {
	if c.fd < 0 {
		c.connect()
	}
	if _, err := unix.Write(c.fd, c.req); err != nil {
		c.t.Fatal(err)
	}
	n, head := 0, -1
	for head < 0 || n < head+c.contentLength(head) {
		m, err := unix.Read(c.fd, c.buf[n:])
		if m <= 0 {
			c.t.Fatalf("read: %d, %v after %q", m, err, c.buf[:n])
		}
		n += m
		if head < 0 {
			if i := bytes.Index(c.buf[:n], []byte("\r\n\r\n")); i >= 0 {
				head = i + 4
			}
		}
	}
	if closing {
		c.close()
	}
	return c.buf[head:n]
}

func (c *rawClient) contentLength(head int) int {
	i := bytes.Index(c.buf[:head], []byte("Content-Length: "))
	if i < 0 {
		c.t.Fatalf("no Content-Length in %q", c.buf[:head])
	}
	v := c.buf[i+len("Content-Length: "):]
	n := 0
	for _, d := range v {
		if d < '0' || d > '9' {
			break
		}
		n = n*10 + int(d-'0')
	}
	return n
}

// TestServerAllocs: the whole path, socket to socket, allocates nothing per
// request once warm, with a Handler that allocates nothing: keep-alive,
// and a new connection per request; with the connection bounds on, as
// trackd runs. (frontend/http's TestServerAllocs counts the same path
// with the tracker's Handler.)
func TestServerAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("allocation counts mean nothing under the race detector")
	}
	s := startServer(t, Listen, testHandler(), Options{Loops: 1, MaxConns: DefaultMaxConns, MaxConnsPerIP: DefaultMaxConnsPerIP})
	for _, closing := range []bool{false, true} {
		name := "keep-alive"
		req := get(testAnnounce)
		if closing {
			name, req = "close", get(testAnnounce, "Connection: close\r\n")
		}
		t.Run(name, func(t *testing.T) {
			c := newRawClient(t, s, req)
			defer c.close()
			for range 200 {
				c.do(closing)
			}
			allocs := testing.AllocsPerRun(500, func() { c.do(closing) })
			if allocs != 0 {
				t.Errorf("%.2f allocations per request", allocs)
			}
		})
	}
}

// TestServerRemoteAddress: the Handler sees the client's address, over
// IPv4, IPv6, and IPv4 on a dual-stack socket.
func TestServerRemoteAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	ln.Close()
	h := HandlerFunc(func(ctx context.Context, w *Response, r *Request) {
		w.Body = r.Remote.Addr().AppendTo(w.Body)
	})
	for _, tt := range []struct{ listen, dial, want string }{
		{"127.0.0.1:0", "127.0.0.1", "127.0.0.1"},
		{"[::1]:0", "::1", "::1"},
		{":0", "127.0.0.1", "127.0.0.1"},
		{":0", "::1", "::1"},
	} {
		s, err := Listen(tt.listen, h, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		port := s.Addr().(*net.TCPAddr).Port
		c, err := net.Dial("tcp", net.JoinHostPort(tt.dial, strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, get(testAnnounce, "Connection: close\r\n"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		reply, _ := io.ReadAll(c)
		_, body, _ := bytes.Cut(reply, []byte("\r\n\r\n"))
		a, err := netip.ParseAddr(string(body))
		if err != nil {
			t.Fatalf("%s via %s: reply %q", tt.listen, tt.dial, reply)
		}
		if want := netip.MustParseAddr(tt.want); a.Unmap() != want {
			t.Errorf("%s via %s: remote %v, want %v", tt.listen, tt.dial, a, want)
		}
	}
}

// BenchmarkServer measures a request over loopback, client and server in
// this process, with a Handler that echoes the target (the server's own
// cost): on a keep-alive connection, and on a new connection each (the
// client's work included in both).
func BenchmarkServer(b *testing.B) {
	s := startServer(b, Listen, testHandler(), Options{MaxConns: DefaultMaxConns, MaxConnsPerIP: DefaultMaxConnsPerIP})
	for _, closing := range []bool{false, true} {
		name := "keep-alive"
		req := get(testAnnounce)
		if closing {
			name, req = "close", get(testAnnounce, "Connection: close\r\n")
		}
		b.Run(name, func(b *testing.B) {
			c := newRawClient(b, s, req)
			defer c.close()
			b.ReportAllocs()
			for b.Loop() {
				c.do(closing)
			}
		})
	}
}
