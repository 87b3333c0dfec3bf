package relay

import (
	"context"
	"encoding/json"
	"net/netip"
	"sync"
	"testing"
	"time"

	"trackd/bittorrent"
	wsfrontend "trackd/frontend/ws"
	"trackd/store"
	"trackd/store/memory"
	"trackd/tracker"
)

// wsConn is a wsserver.Conn that keeps the JSON objects sent to it.
type wsConn struct {
	mu  sync.Mutex
	got []map[string]any
}

func (c *wsConn) Send(msg []byte) bool {
	var m map[string]any
	if err := json.Unmarshal(msg, &m); err != nil {
		m = map[string]any{"not json": string(msg)}
	}
	c.mu.Lock()
	c.got = append(c.got, m)
	c.mu.Unlock()
	return true
}

func (c *wsConn) Close()                     {}
func (c *wsConn) RemoteAddr() netip.AddrPort { return netip.MustParseAddrPort("127.0.0.1:1") }

// with returns the objects sent that have key.
func (c *wsConn) with(key string) []map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]any
	for _, m := range c.got {
		if _, ok := m[key]; ok {
			out = append(out, m)
		}
	}
	return out
}

// binstr is b as the WebTorrent protocol writes a binary string.
func binstr(b []byte) string {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

func jsonOf(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestThroughFrontend: the WebTorrent protocol across two instances, each
// a frontend/ws Handler on a relay Registry: a browser's offer on one
// reaches a browser on the other as the protocol's offer message, its
// answer comes back as the answer message, and a closed connection
// leaves the swarm on both.
func TestThroughFrontend(t *testing.T) {
	_, nodes := newFleet(t, 2, testOptions())
	handlers := make([]*wsfrontend.Handler, 2)
	for i, nd := range nodes {
		s := memory.New(store.Options{PeerLifetime: time.Hour})
		t.Cleanup(func() { s.Close() })
		handlers[i] = wsfrontend.NewHandler(tracker.New(tracker.Config{}, s), wsfrontend.Options{Registry: nd.Registry})
	}
	ih := bittorrent.InfoHash{0xde, 0xad, 19: 1}
	idP, idQ := pid(1), pid(2)
	offerID := [20]byte{7, 19: 7}
	cp, cq := &wsConn{}, &wsConn{}
	sp, sq := handlers[0].Open(cp), handlers[1].Open(cq)
	ctx := context.Background()

	sq.Message(ctx, jsonOf(t, map[string]any{"action": "announce", "info_hash": binstr(ih[:]), "peer_id": binstr(idQ[:]), "left": 100, "numwant": 0}))
	eventually(t, "instance 0 has q", func() bool { return peers(nodes[0].Registry, ih) == 1 })

	offer := map[string]any{"type": "offer", "sdp": "v=0\r\n"}
	sp.Message(ctx, jsonOf(t, map[string]any{
		"action": "announce", "info_hash": binstr(ih[:]), "peer_id": binstr(idP[:]), "left": 100, "numwant": 5,
		"offers": []any{map[string]any{"offer_id": binstr(offerID[:]), "offer": offer}},
	}))
	if got := cp.with("complete"); len(got) != 1 || got[0]["incomplete"] != 2.0 {
		t.Fatalf("p's announce reply: %v, want 2 leechers", got)
	}
	eventually(t, "offer at q", func() bool { return len(cq.with("offer")) == 1 })
	o := cq.with("offer")[0]
	if o["peer_id"] != binstr(idP[:]) || o["offer_id"] != binstr(offerID[:]) || o["info_hash"] != binstr(ih[:]) {
		t.Errorf("offer at q: %v", o)
	}

	answer := map[string]any{"type": "answer", "sdp": "v=0\r\nanswer"}
	sq.Message(ctx, jsonOf(t, map[string]any{
		"action": "announce", "info_hash": binstr(ih[:]), "peer_id": binstr(idQ[:]),
		"to_peer_id": binstr(idP[:]), "offer_id": binstr(offerID[:]), "answer": answer,
	}))
	eventually(t, "answer at p", func() bool { return len(cp.with("answer")) == 1 })
	a := cp.with("answer")[0]
	if a["peer_id"] != binstr(idQ[:]) || a["offer_id"] != binstr(offerID[:]) {
		t.Errorf("answer at p: %v", a)
	}
	if m, ok := a["answer"].(map[string]any); !ok || m["sdp"] != "v=0\r\nanswer" {
		t.Errorf("answer at p: %v", a)
	}

	sq.Closed()
	eventually(t, "q left both", func() bool {
		return peers(nodes[0].Registry, ih) == 1 && peers(nodes[1].Registry, ih) == 1
	})
}
