//go:build linux

package httpserver_test

import (
	"context"
	"net/netip"
	"testing"

	"trackd/httpserver"
	"trackd/httpserver/httpservertest"
	"trackd/internal/race"
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
