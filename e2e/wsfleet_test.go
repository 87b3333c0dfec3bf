package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"trackd/config"
	"trackd/internal/redistest"
	"trackd/internal/wstest"
	"trackd/server"
)

// TestWebSocketAcrossFleet: a WebTorrent swarm spans two trackd instances
// whose swarms are kept in step through one real redis-server (-sync),
// seen from the wire alone: a peer on instance 1 finds a peer of instance
// 2 in its announce's counts and its scrape, its offer reaches that peer
// there, and the answer comes back; "stopped" on one instance and a
// closed socket on the other take the peer out of the swarm on both.
func TestWebSocketAcrossFleet(t *testing.T) {
	rs := redistest.Start(t)
	sync := func(c *config.Config) {
		c.Sync = rs.URL()
		c.UDP = ""
	}
	one, two := startTracker(t, sync), startTracker(t, sync)
	url1 := "ws://" + one.HTTPAddr().String() + "/announce"
	url2 := "ws://" + two.HTTPAddr().String() + "/announce"
	ih := wsInfoHash

	a := wstest.Dial(t, url1, nil, wsPeerA)
	b := wstest.Dial(t, url2, nil, wsPeerB)
	announce := func(p *wsPeer, left int, extra map[string]any) map[string]any {
		t.Helper()
		msg := map[string]any{"action": "announce", "info_hash": ih, "peer_id": p.ID,
			"numwant": 5, "uploaded": 0, "downloaded": 0, "left": left, "offers": []any{}}
		for k, v := range extra {
			msg[k] = v
		}
		p.Send(msg)
		r := p.Recv()
		if r["action"] != "announce" || r["failure reason"] != nil {
			t.Fatalf("peer %q: announce reply %v", p.ID, r)
		}
		return r
	}
	// counts scrapes ih through p until it counts complete and
	// incomplete, for at most 10 s.
	counts := func(p *wsPeer, complete, incomplete float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			p.Send(map[string]any{"action": "scrape", "info_hash": ih})
			r := p.Recv()
			files, _ := r["files"].(map[string]any)
			f, _ := files[ih].(map[string]any)
			if f["complete"] == complete && f["incomplete"] == incomplete {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("peer %q: after 10 s, scrape %v, want complete %v, incomplete %v", p.ID, r, complete, incomplete)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	announce(b, 1000, map[string]any{"event": "started"}) // a leecher on 2
	counts(a, 0, 1)                                       // seen on 1
	offer := map[string]any{"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}
	r := announce(a, 0, map[string]any{"event": "started",
		"offers": []any{map[string]any{"offer_id": "offer-id-0123456789x", "offer": offer}}})
	if r["complete"] != 1.0 || r["incomplete"] != 1.0 {
		t.Fatalf("A's announce on instance 1 does not count the fleet's swarm: %v", r)
	}
	got := b.Recv()
	if got["peer_id"] != a.ID || got["offer_id"] != "offer-id-0123456789x" || got["info_hash"] != ih {
		t.Fatalf("offer relayed to B on instance 2: %v", got)
	}
	if o, _ := got["offer"].(map[string]any); o["sdp"] != offer["sdp"] || o["type"] != "offer" {
		t.Fatalf("offer's SDP relayed as %v", got["offer"])
	}
	answer := map[string]any{"type": "answer", "sdp": "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\n"}
	b.Send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": b.ID,
		"to_peer_id": a.ID, "offer_id": "offer-id-0123456789x", "answer": answer})
	got = a.Recv()
	if got["peer_id"] != b.ID || got["offer_id"] != "offer-id-0123456789x" || got["info_hash"] != ih {
		t.Fatalf("answer relayed to A on instance 1: %v", got)
	}
	if o, _ := got["answer"].(map[string]any); o["sdp"] != answer["sdp"] || o["type"] != "answer" {
		t.Fatalf("answer's SDP relayed as %v", got["answer"])
	}
	counts(b, 1, 1)

	// "stopped" on 2 leaves the swarm on 1.
	announce(b, 1000, map[string]any{"event": "stopped"})
	counts(a, 1, 0)
	// A closed socket on 1 leaves the swarm on 2.
	a.C.Close()
	counts(b, 0, 0)

	// Each delivered one message relayed from the other: the offer on
	// 2, the answer on 1.
	for _, srv := range []*server.Server{one, two} {
		res, err := http.Get("http://" + srv.AdminAddr().String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		for _, want := range []string{"trackd_ws_relay_delivered_total 1\n", "trackd_ws_relay_relayed_total 1\n", "trackd_ws_relay_instances 1\n"} {
			if !strings.Contains(string(body), want) {
				t.Errorf("instance %s: no %q in /metrics", srv.HTTPAddr(), want)
			}
		}
	}
}
