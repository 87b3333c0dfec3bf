//go:build linux

package http

import (
	"net/netip"
	"testing"

	"trackd/bencode"
	"trackd/httpserver"
	"trackd/httpserver/httpservertest"
	"trackd/internal/race"
)

// TestServerAllocs: the whole path of an announce, socket to socket,
// through the lean server and the Handler, allocates nothing per request
// once warm: keep-alive, and a new connection per request; with the
// connection bounds on, as trackd runs.
func TestServerAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("allocation counts mean nothing under the race detector")
	}
	s := httpservertest.Start(t, httpserver.Listen, testHandler(t, Options{}), httpserver.Options{
		Loops: 1, MaxConns: httpserver.DefaultMaxConns, MaxConnsPerIP: httpserver.DefaultMaxConnsPerIP,
	})
	httpservertest.ZeroAllocs(t, s, testAnnounce)
}

// TestServerRemoteAddress: the Handler sees the client's address through
// the lean server (its "external ip"), over IPv4, IPv6, and IPv4 on a
// dual-stack socket.
func TestServerRemoteAddress(t *testing.T) {
	httpservertest.ForEachFamily(t, testHandler(t, Options{}), testAnnounce, func(t *testing.T, client netip.Addr, body []byte) {
		v, err := bencode.Decode(body)
		if err != nil {
			t.Fatalf("reply %q", body)
		}
		got := v.(map[string]any)["external ip"].(string)
		if want := client.AsSlice(); got != string(want) {
			t.Errorf("external ip %x, want %x", got, want)
		}
	})
}

// BenchmarkServer measures an announce through the lean server over
// loopback, client and server in this process: on a keep-alive
// connection, and on a new connection each (the client's work included in
// both).
func BenchmarkServer(b *testing.B) {
	s := httpservertest.Start(b, httpserver.Listen, testHandler(b, Options{}), httpserver.Options{
		MaxConns: httpserver.DefaultMaxConns, MaxConnsPerIP: httpserver.DefaultMaxConnsPerIP,
	})
	httpservertest.BenchmarkRequests(b, s, testAnnounce)
}
