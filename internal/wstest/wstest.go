// Package wstest is a WebTorrent client's socket to a tracker, for tests:
// JSON messages written and read over a real WebSocket, every error
// failing the test. The server's tests and the end-to-end tests use it.
package wstest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// Peer is one WebTorrent client's socket to the tracker.
type Peer struct {
	T  testing.TB
	C  net.Conn
	ID string // the 20-byte peer_id as a binary string
}

// Dial opens a WebSocket to url (ws:// or wss://, with tlsConfig) for the
// peer id; the test's cleanup closes it.
func Dial(t testing.TB, url string, tlsConfig *tls.Config, id string) *Peer {
	t.Helper()
	d := ws.Dialer{Timeout: 5 * time.Second, TLSConfig: tlsConfig}
	c, _, _, err := d.Dial(context.Background(), url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return &Peer{T: t, C: c, ID: id}
}

// Send writes msg as a JSON text message.
func (p *Peer) Send(msg map[string]any) {
	p.T.Helper()
	b, err := json.Marshal(msg)
	if err != nil {
		p.T.Fatal(err)
	}
	if err := wsutil.WriteClientText(p.C, b); err != nil {
		p.T.Fatalf("send: %v", err)
	}
}

// Recv returns the next message, which must come within 5 s.
func (p *Peer) Recv() map[string]any {
	p.T.Helper()
	p.C.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := wsutil.ReadServerText(p.C)
	if err != nil {
		p.T.Fatalf("peer %q: read: %v", p.ID, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		p.T.Fatalf("peer %q: not JSON: %q", p.ID, b)
	}
	return m
}

// Silent checks that no message comes within d.
func (p *Peer) Silent(d time.Duration) {
	p.T.Helper()
	p.C.SetReadDeadline(time.Now().Add(d))
	if b, err := wsutil.ReadServerText(p.C); err == nil {
		p.T.Errorf("peer %q: unexpected message %s", p.ID, b)
	}
}
