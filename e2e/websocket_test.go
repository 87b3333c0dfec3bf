package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"trackd/config"
	"trackd/internal/testcert"
	"trackd/internal/wstest"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// wsPeer is one WebTorrent client's socket to the tracker.
type wsPeer = wstest.Peer

// A binary string: 20 bytes, each a JSON string character U+0000-U+00FF,
// some of them outside ASCII and one a NUL, as real clients send.
const (
	wsInfoHash = "\x00info-hash\u00ff\u00e9-1234567"
	wsPeerA    = "-WW0001-aaaaaaaa\u00fe\u0001\u0002\u0003"
	wsPeerB    = "-WW0001-bbbbbbbb\u00fe\u0001\u0002\u0004"
)

// TestWebSocketSignalling: two WebTorrent peers find each other through
// trackd over real WebSockets, ws:// on the HTTP port and wss:// on the
// HTTPS port: an announce is answered, an offer reaches the other peer, its
// answer comes back, a scrape counts them, "stopped" and a closed socket
// take a peer out of the swarm; a message the tracker cannot read gets a
// failure reason and the socket stays usable.
func TestWebSocketSignalling(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cert := testcert.Write(t, certFile, keyFile, 1)
	srv := startTracker(t, func(c *config.Config) {
		c.HTTPS = "127.0.0.1:0"
		c.TLSCert, c.TLSKey = certFile, keyFile
	})
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	for _, tc := range []struct {
		name, url string
		tls       *tls.Config
	}{
		{"ws", "ws://" + srv.HTTPAddr().String() + "/announce", nil},
		{"wss", "wss://" + srv.HTTPSAddr().String() + "/", &tls.Config{RootCAs: pool}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ih := string([]rune(wsInfoHash)[:19]) + tc.name[:1]
			a := wstest.Dial(t, tc.url, tc.tls, wsPeerA)
			b := wstest.Dial(t, tc.url, tc.tls, wsPeerB)

			a.Send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": a.ID,
				"numwant": 5, "uploaded": 0, "downloaded": 0, "left": 1000, "event": "started", "offers": []any{}})
			r := a.Recv()
			if r["action"] != "announce" || r["info_hash"] != ih || r["interval"] == nil || r["incomplete"] != 1.0 {
				t.Fatalf("A's announce reply %v", r)
			}

			offer := map[string]any{"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}
			b.Send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": b.ID,
				"numwant": 5, "uploaded": 0, "downloaded": 0, "left": 0, "event": "started",
				"offers": []any{map[string]any{"offer_id": "offer-id-0123456789x", "offer": offer}}})
			r = b.Recv()
			if r["action"] != "announce" || r["complete"] != 1.0 || r["incomplete"] != 1.0 {
				t.Fatalf("B's announce reply %v", r)
			}
			got := a.Recv()
			if got["peer_id"] != b.ID || got["offer_id"] != "offer-id-0123456789x" || got["info_hash"] != ih {
				t.Fatalf("offer relayed to A: %v", got)
			}
			if o, _ := got["offer"].(map[string]any); o["sdp"] != offer["sdp"] || o["type"] != "offer" {
				t.Fatalf("offer's SDP relayed as %v", got["offer"])
			}

			answer := map[string]any{"type": "answer", "sdp": "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\n"}
			a.Send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": a.ID,
				"to_peer_id": b.ID, "offer_id": "offer-id-0123456789x", "answer": answer})
			got = b.Recv()
			if got["peer_id"] != a.ID || got["offer_id"] != "offer-id-0123456789x" {
				t.Fatalf("answer relayed to B: %v", got)
			}
			if o, _ := got["answer"].(map[string]any); o["sdp"] != answer["sdp"] {
				t.Fatalf("answer's SDP relayed as %v", got["answer"])
			}

			scrape := func(want [2]float64) {
				t.Helper()
				a.Send(map[string]any{"action": "scrape", "info_hash": []any{ih}})
				r := a.Recv()
				files, _ := r["files"].(map[string]any)
				f, _ := files[ih].(map[string]any)
				if r["action"] != "scrape" || f["complete"] != want[0] || f["incomplete"] != want[1] {
					t.Fatalf("scrape %v, want complete %v, incomplete %v", r, want[0], want[1])
				}
			}
			scrape([2]float64{1, 1})

			// Not JSON: a failure reason, and the socket still serves.
			if err := wsutil.WriteClientText(a.C, []byte("{not json")); err != nil {
				t.Fatal(err)
			}
			if r := a.Recv(); r["failure reason"] == nil {
				t.Fatalf("bad JSON answered with %v", r)
			}
			// An id that is not 20 bytes.
			a.Send(map[string]any{"action": "announce", "info_hash": "short", "peer_id": a.ID})
			if r := a.Recv(); r["failure reason"] == nil {
				t.Fatalf("short info_hash answered with %v", r)
			}

			b.Send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": b.ID,
				"numwant": 5, "uploaded": 0, "downloaded": 0, "left": 0, "event": "stopped"})
			b.Recv()
			scrape([2]float64{0, 1})

			// A closed socket leaves every swarm it joined.
			a.C.Close()
			c := wstest.Dial(t, tc.url, tc.tls, "-WW0001-cccccccc\u00fe\u0001\u0002\u0005")
			deadline := time.Now().Add(5 * time.Second)
			for {
				c.Send(map[string]any{"action": "scrape", "info_hash": ih})
				r := c.Recv()
				files, _ := r["files"].(map[string]any)
				f, _ := files[ih].(map[string]any)
				if f["incomplete"] == 0.0 && f["complete"] == 0.0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after A closed its socket, scrape %v", r)
				}
				time.Sleep(20 * time.Millisecond)
			}
			c.Silent(100 * time.Millisecond)
		})
	}
}

// TestWebSocketOff: with websocket = false an upgrade request is an
// ordinary HTTP request, and the handshake fails.
func TestWebSocketOff(t *testing.T) {
	srv := startTracker(t, func(c *config.Config) { c.WebSocket = false })
	d := ws.Dialer{Timeout: 5 * time.Second}
	_, _, _, err := d.Dial(context.Background(), "ws://"+srv.HTTPAddr().String()+"/announce")
	if err == nil || !strings.Contains(err.Error(), "status") {
		t.Fatalf("upgrade with websocket off: %v, want a refused handshake", err)
	}
}
