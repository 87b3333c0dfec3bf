package httpservertest

import (
	"bytes"
	"net"
	"syscall"
	"testing"

	"trackd/httpserver"
)

// ZeroAllocs checks that requests for target on s allocate nothing once
// warm (200 requests), the Server's work and its Handler's together: in a
// subtest "keep-alive", all on one connection; in "close", each on a new
// connection that asks to close. The client, on raw sockets, allocates
// nothing itself. s must listen on IPv4. Allocation counts mean nothing
// under the race detector: a caller skips then.
func ZeroAllocs(t *testing.T, s *httpserver.Server, target string) {
	for _, closing := range []bool{false, true} {
		t.Run(modeName(closing), func(t *testing.T) {
			c := newRawClient(t, s.Addr(), target, closing)
			for range 200 {
				c.do()
			}
			if allocs := testing.AllocsPerRun(500, c.do); allocs != 0 {
				t.Errorf("%.2f allocations per request", allocs)
			}
		})
	}
}

// BenchmarkRequests measures a request for target on s over loopback,
// client and server in this process, the client's work included (it
// allocates nothing): in "keep-alive", all on one connection; in
// "close", each on a new connection that asks to close. s must listen on
// IPv4.
func BenchmarkRequests(b *testing.B, s *httpserver.Server, target string) {
	for _, closing := range []bool{false, true} {
		b.Run(modeName(closing), func(b *testing.B) {
			c := newRawClient(b, s.Addr(), target, closing)
			b.ReportAllocs()
			for b.Loop() {
				c.do()
			}
		})
	}
}

func modeName(closing bool) string {
	if closing {
		return "close"
	}
	return "keep-alive"
}

// rawClient is a blocking client on raw sockets, which allocates nothing
// per request: allocation counts are then the server's.
type rawClient struct {
	t       testing.TB
	sa      syscall.Sockaddr
	fd      int
	closing bool // a new connection per request
	req     []byte
	buf     []byte
}

func newRawClient(t testing.TB, addr net.Addr, target string, closing bool) *rawClient {
	ap := addr.(*net.TCPAddr).AddrPort()
	if !ap.Addr().Unmap().Is4() {
		t.Fatalf("%v: not an IPv4 address", addr)
	}
	req := Get(target)
	if closing {
		req = Get(target, "Connection: close\r\n")
	}
	c := &rawClient{
		t: t, sa: &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}, fd: -1,
		closing: closing, req: []byte(req), buf: make([]byte, 64<<10),
	}
	t.Cleanup(c.close)
	return c
}

func (c *rawClient) connect() {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := syscall.Connect(fd, c.sa); err != nil {
		syscall.Close(fd)
		c.t.Fatal(err)
	}
	c.fd = fd
}

func (c *rawClient) close() {
	if c.fd >= 0 {
		syscall.Close(c.fd)
		c.fd = -1
	}
}

// do sends the request and reads one reply, whose body it leaves in c.buf;
// closing, on a new connection closed afterwards.
func (c *rawClient) do() {
	if c.fd < 0 {
		c.connect()
	}
	if _, err := syscall.Write(c.fd, c.req); err != nil {
		c.t.Fatal(err)
	}
	n, head := 0, -1
	for head < 0 || n < head+c.contentLength(head) {
		m, err := syscall.Read(c.fd, c.buf[n:])
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
	if c.closing {
		c.close()
	}
}

// contentLength is the Content-Length of the reply whose head is
// c.buf[:head].
func (c *rawClient) contentLength(head int) int {
	i := bytes.Index(c.buf[:head], []byte("Content-Length: "))
	if i < 0 {
		c.t.Fatalf("no Content-Length in %q", c.buf[:head])
	}
	n := 0
	for _, d := range c.buf[i+len("Content-Length: ") : head] {
		if d < '0' || d > '9' {
			break
		}
		n = n*10 + int(d-'0')
	}
	return n
}
