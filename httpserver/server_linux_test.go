//go:build linux

package httpserver_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"

	"trackd/httpserver"
	"trackd/httpserver/httpservertest"
	"trackd/internal/race"

	"golang.org/x/sys/unix"
)

// TestServerAllocs: the whole path, socket to socket, allocates nothing per
// request once warm, with a Handler that allocates nothing: keep-alive,
// and a new connection per request; with the connection bounds on, as
// trackd runs. (frontend/http's TestServerAllocs counts the same path
// with the tracker's Handler.)
func TestServerAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("allocation counts mean nothing under the race detector")
	}
	s := httpservertest.Start(t, httpserver.Listen, httpserver.EchoHandler, httpserver.Options{
		Loops: 1, MaxConns: httpserver.DefaultMaxConns, MaxConnsPerIP: httpserver.DefaultMaxConnsPerIP,
	})
	httpservertest.ZeroAllocs(t, s, testAnnounce)
}

// TestServerRemoteAddress: the Handler sees the client's address, over
// IPv4, IPv6, and IPv4 on a dual-stack socket.
func TestServerRemoteAddress(t *testing.T) {
	h := httpserver.HandlerFunc(func(ctx context.Context, w *httpserver.Response, r *httpserver.Request) {
		w.Body = r.Remote.Addr().AppendTo(w.Body)
	})
	httpservertest.ForEachFamily(t, h, testAnnounce, func(t *testing.T, client netip.Addr, body []byte) {
		a, err := netip.ParseAddr(string(body))
		if err != nil {
			t.Fatalf("reply %q", body)
		}
		if a.Unmap() != client {
			t.Errorf("remote %v, want %v", a, client)
		}
	})
}

// BenchmarkServer measures a request over loopback, client and server in
// this process, with a Handler that echoes the target (the server's own
// cost): on a keep-alive connection, and on a new connection each (the
// client's work included in both).
func BenchmarkServer(b *testing.B) {
	s := httpservertest.Start(b, httpserver.Listen, httpserver.EchoHandler, httpserver.Options{
		MaxConns: httpserver.DefaultMaxConns, MaxConnsPerIP: httpserver.DefaultMaxConnsPerIP,
	})
	httpservertest.BenchmarkRequests(b, s, testAnnounce)
}

// TestServerReplyCarriesFIN: on a connection closed after its reply
// (HTTP/1.0, or Connection: close), the reply and the FIN reach the client
// in one segment (writeFD's msgLast on the epoll loops, corkLast with a
// goroutine per connection), whatever the reply's size up to a segment:
// the client receives its SYN-ACK and that one segment, nothing else but,
// at most, an acknowledgment of its request. Read from the client's
// TCP_INFO.
func TestServerReplyCarriesFIN(t *testing.T) {
	httpservertest.ForEach(t, func(t *testing.T, listen httpservertest.ListenFunc) {
		for _, size := range []int{0, 100, 8000} {
			body := strings.Repeat("x", size)
			h := httpserver.HandlerFunc(func(ctx context.Context, w *httpserver.Response, r *httpserver.Request) {
				w.Body = append(w.Body, body...)
			})
			s := httpservertest.Start(t, listen, h, httpserver.Options{})
			for _, req := range []string{
				"GET /a HTTP/1.0\r\n\r\n",
				"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			} {
				c := httpservertest.Dial(t, s.Addr())
				if _, err := c.Write([]byte(req)); err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(c)
				if err != nil || !bytes.HasSuffix(b, []byte(body)) {
					t.Fatalf("%q: reply %q, %v", req, b, err)
				}
				raw, err := c.(*net.TCPConn).SyscallConn()
				if err != nil {
					t.Fatal(err)
				}
				var info *unix.TCPInfo
				var ierr error
				raw.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
				if ierr != nil {
					t.Fatal(ierr)
				}
				// Segments without data: the SYN-ACK, perhaps an ACK of
				// the request, and a FIN of its own if it was not sent
				// with the reply.
				if bare := info.Segs_in - info.Data_segs_in; info.Data_segs_in != 1 || bare > 2 {
					t.Errorf("%d bytes, %q: %d segments in, %d with data; want the reply and the FIN in one", size, req, info.Segs_in, info.Data_segs_in)
				}
			}
		}
	})
}
