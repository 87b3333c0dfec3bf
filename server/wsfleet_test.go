package server

import (
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"trackd/internal/redistest"
	"trackd/internal/wstest"
)

func dialWSClient(t *testing.T, srv *Server, id string) *wsClient {
	t.Helper()
	return &wsClient{wstest.Dial(t, "ws://"+srv.HTTPAddr().String()+"/announce", nil, id)}
}

// wsClient is a WebTorrent client's socket to a server.
type wsClient struct{ *wstest.Peer }

// announce announces the peer to the swarm ih, with offers if any, and
// returns the reply.
func (p *wsClient) announce(ih string, left int, offers ...any) map[string]any {
	p.T.Helper()
	p.Send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": p.ID,
		"numwant": 5, "uploaded": 0, "downloaded": 0, "left": left, "offers": append([]any{}, offers...)})
	r := p.Recv()
	if r["action"] != "announce" || r["info_hash"] != ih || r["failure reason"] != nil {
		p.T.Fatalf("peer %q: announce reply %v", p.ID, r)
	}
	return r
}

// TestWSRelay: with sync on, two servers on one real redis-server share
// their WebTorrent swarms. A client on A offers; the client on B gets the
// offer and answers; A's client gets the answer. The interval handed out
// counts the fleet's peers (target_announce_rate is the fleet's). A
// closed connection on B leaves the swarm on A; B shutting down says
// goodbye before its Bus closes, so A drops its peers at once rather than
// after the relay's timeout.
func TestWSRelay(t *testing.T) {
	rs := redistest.Start(t)
	cfg := syncConfig(rs.URL())
	cfg.UDP = ""
	// one peer: a 100 s interval, two: 200 s (within 60 s and 30 min)
	cfg.TargetAnnounceRate = 0.01
	a, _ := start(t, cfg)
	b, _ := start(t, cfg)
	if a.relay == nil || b.relay == nil {
		t.Fatal("sync and WebTorrent on, but no relay")
	}
	waitFor(t, "A and B hear from each other", func() bool {
		return a.relay.Stats().Instances == 1 && b.relay.Stats().Instances == 1
	})

	const ih = "\x00info-hash\u00ff\u00e9-1234567"
	x := dialWSClient(t, a, "-WW0001-xxxxxxxx\u00fe\u0001\u0002\u0003")
	y := dialWSClient(t, b, "-WW0001-yyyyyyyy\u00fe\u0001\u0002\u0004")
	if r := y.announce(ih, 1000); r["incomplete"] != 1.0 || r["interval"] != 100.0 {
		t.Fatalf("Y's first announce on B: %v", r)
	}
	waitFor(t, "A holds B's peer", func() bool { return a.relay.Stats().RemotePeers == 1 })

	offer := map[string]any{"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}
	r := x.announce(ih, 0, map[string]any{"offer_id": "offer-id-0123456789x", "offer": offer})
	if r["complete"] != 1.0 || r["incomplete"] != 1.0 || r["interval"] != 200.0 {
		t.Fatalf("X's announce on A: want the fleet's swarm (1 seeder, 1 leecher) and interval 200 s: %v", r)
	}
	got := y.Recv()
	if got["peer_id"] != x.ID || got["offer_id"] != "offer-id-0123456789x" || got["info_hash"] != ih {
		t.Fatalf("offer relayed to Y on B: %v", got)
	}
	if o, _ := got["offer"].(map[string]any); o["sdp"] != offer["sdp"] {
		t.Fatalf("offer's SDP relayed as %v", got["offer"])
	}
	answer := map[string]any{"type": "answer", "sdp": "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\n"}
	y.Send(map[string]any{"action": "announce", "info_hash": ih, "peer_id": y.ID,
		"to_peer_id": x.ID, "offer_id": "offer-id-0123456789x", "answer": answer})
	got = x.Recv()
	if got["peer_id"] != y.ID || got["offer_id"] != "offer-id-0123456789x" {
		t.Fatalf("answer relayed to X on A: %v", got)
	}
	if o, _ := got["answer"].(map[string]any); o["sdp"] != answer["sdp"] {
		t.Fatalf("answer's SDP relayed as %v", got["answer"])
	}
	if r := y.announce(ih, 1000); r["complete"] != 1.0 || r["interval"] != 200.0 {
		t.Fatalf("Y's announce on B: want A's seeder counted and interval 200 s: %v", r)
	}

	_, m := adminGet(t, a, "/metrics")
	for series, least := range map[string]float64{
		"trackd_ws_relay_instances":       1,
		"trackd_ws_relay_remote_peers":    1,
		"trackd_ws_relay_relayed_total":   1,
		"trackd_ws_relay_delivered_total": 1,
	} {
		if v := metricValue(m, series); v < least {
			t.Errorf("A: %s = %v, want at least %v", series, v, least)
		}
	}

	y.C.Close()
	waitFor(t, "Y's closed connection on B leaves the swarm on A", func() bool {
		return a.relay.Stats().RemotePeers == 0 && a.wsHandler.Registry().Totals().Peers() == 1
	})

	z := dialWSClient(t, b, "-WW0001-zzzzzzzz\u00fe\u0001\u0002\u0005")
	z.announce(ih, 1000)
	waitFor(t, "A holds Z", func() bool { return a.relay.Stats().RemotePeers == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	begin := time.Now()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// (most of it the WebSocket transport waiting for Z's client, which
	// does not read, to answer the close frame)
	t.Logf("B's Shutdown took %v", time.Since(begin).Round(time.Millisecond))
	// The relay drops an instance not heard from for 7 s, and B was
	// broadcasting until its Shutdown ended the relay: a drop within 2 s
	// of that is the goodbye's, sent before B's Bus closed.
	ended := time.Now()
	for a.relay.Stats().Instances != 0 || a.relay.Stats().RemotePeers != 0 {
		if time.Since(ended) > 2*time.Second {
			t.Fatalf("2 s after B shut down, A still knows it: %+v", a.relay.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("A dropped B and its peer %v after B's Shutdown returned", time.Since(ended).Round(time.Millisecond))
	if got := a.relay.Stats().InstancesGone; got != 1 {
		t.Errorf("A: InstancesGone = %d, want 1", got)
	}
}

// TestSyncIntervalFleetWide: with sync, the interval policy counts the
// fleet's peers over HTTP and UDP as over WebSocket (TestWSRelay):
// target_announce_rate is the fleet's total.
func TestSyncIntervalFleetWide(t *testing.T) {
	rs := redistest.Start(t)
	cfg := syncConfig(rs.URL())
	cfg.WebSocket = false
	cfg.TargetAnnounceRate = 0.01 // 100 s of interval per peer
	a, _ := start(t, cfg)
	b, _ := start(t, cfg)
	for _, srv := range []*Server{a, b} {
		select {
		case <-srv.sync.node.Ready():
		case <-time.After(10 * time.Second):
			t.Fatal("the sync's Node is not reading after 10s")
		}
	}
	udpInterval := func(srv *Server, port uint16) (interval, seeders uint32) {
		u := dialUDP(t, srv.UDPAddr())
		reply := u.announce(u.connect(), port)
		if len(reply) < 20 || binary.BigEndian.Uint32(reply) != 1 {
			t.Fatalf("UDP announce reply %x", reply)
		}
		return binary.BigEndian.Uint32(reply[8:]), binary.BigEndian.Uint32(reply[16:])
	}
	if iv, _ := udpInterval(a, 6881); iv != 100 {
		t.Fatalf("A's interval for its one peer: %d s, want 100", iv)
	}
	waitFor(t, "B counts A's peer in its UDP reply's interval", func() bool {
		iv, seeders := udpInterval(b, 6882)
		return seeders == 2 && iv == 200
	})
	httpAnnounce(t, b, "ssssssssssssssssssss", 3001, 0)
	waitFor(t, "A counts B's peers in its HTTP reply's interval", func() bool {
		res, err := http.Get("http://" + a.HTTPAddr().String() + "/announce?info_hash=ssssssssssssssssssss&peer_id=-TD0001-000000003002&port=3002&left=0&compact=1")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		// 4 peers: 2 UDP, B's HTTP one and this one
		return strings.Contains(string(body), "8:intervali400e")
	})
}
