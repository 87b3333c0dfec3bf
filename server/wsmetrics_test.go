package server

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"trackd/frontend/ws"
	"trackd/metrics"
)

// TestWSMetricsNames: every value of frontend/ws's Action, Result, Relay
// and Drop maps to package metrics' value of the same name, and the
// tables leave none of frontend/ws's out (its String panics past its last
// value).
func TestWSMetricsNames(t *testing.T) {
	check := func(kind string, n int, wsName, metricsName func(i int) string) {
		t.Helper()
		for i := range n {
			if w, m := wsName(i), metricsName(i); w != m {
				t.Errorf("%s %d: frontend/ws says %q, metrics %q", kind, i, w, m)
			}
		}
		func() {
			defer func() { recover() }()
			t.Errorf("%s: frontend/ws has a value %d (%q) the adapter does not map", kind, n, wsName(n))
		}()
	}
	check("Action", len(wsActions), func(i int) string { return ws.Action(i).String() }, func(i int) string { return wsActions[i].String() })
	check("Result", len(wsResults), func(i int) string { return ws.Result(i).String() }, func(i int) string { return wsResults[i].String() })
	check("Relay", len(wsRelays), func(i int) string { return ws.Relay(i).String() }, func(i int) string { return wsRelays[i].String() })
	check("Drop", len(wsDrops), func(i int) string { return ws.Drop(i).String() }, func(i int) string { return wsDrops[i].String() })
}

// wsConn is a wsserver.Conn that keeps what is sent to it.
type wsConn struct {
	mu   sync.Mutex
	sent []string
}

func (c *wsConn) Send(msg []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent = append(c.sent, string(msg))
	return true
}
func (c *wsConn) Close()                     {}
func (c *wsConn) RemoteAddr() netip.AddrPort { return netip.MustParseAddrPort("127.0.0.1:1") }

func (c *wsConn) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sent
	c.sent = nil
	return s
}

// TestWSMetricsCount: a frontend/ws Handler wired to a Server's metrics
// as server wires it (the adapter, WSSwarms, WSConns) and a scripted
// sequence of messages: /metrics counts them, with the relays, the drops
// and the swarms, and the stats page samples the same figures.
func TestWSMetricsCount(t *testing.T) {
	srv, _ := start(t, loopbackConfig())
	h := ws.NewHandler(srv.tracker, ws.Options{Metrics: newWSMetrics(srv.metrics)})
	srv.metrics.WSSwarms(h.Registry().Totals)
	srv.metrics.WSConns(func() int { return 2 })

	ca, cb := &wsConn{}, &wsConn{}
	a, b := h.Open(ca), h.Open(cb)
	const ih, idA, idB = `"aaaaaaaaaaaaaaaaaaaa"`, `"AAAAAAAAAAAAAAAAAAAA"`, `"BBBBBBBBBBBBBBBBBBBB"`
	send := func(s interface {
		Message(context.Context, []byte)
	}, msg string) {
		s.Message(t.Context(), []byte(msg))
	}
	send(a, `{"action":"announce","info_hash":`+ih+`,"peer_id":`+idA+`,"numwant":5,"uploaded":0,"downloaded":0,"left":100,"event":"started"}`)
	send(b, `{"action":"announce","info_hash":`+ih+`,"peer_id":`+idB+`,"numwant":2,"uploaded":0,"downloaded":0,"left":0,"event":"started",`+
		`"offers":[{"offer_id":"oooooooooooooooooooo","offer":{"type":"offer","sdp":"v=0"}},{"offer_id":"pppppppppppppppppppp","offer":{"type":"offer","sdp":"v=0"}}]}`)
	if got := ca.take(); len(got) != 2 || !strings.Contains(got[1], `"offer_id":"oooooooooooooooooooo"`) {
		t.Fatalf("a got %q, want its reply and b's first offer", got)
	}
	send(a, `{"action":"announce","info_hash":`+ih+`,"peer_id":`+idA+`,"to_peer_id":`+idB+`,"offer_id":"oooooooooooooooooooo","answer":{"type":"answer","sdp":"v=0"}}`)
	send(a, `{"action":"announce","info_hash":`+ih+`,"peer_id":`+idA+`,"to_peer_id":"CCCCCCCCCCCCCCCCCCCC","offer_id":"oooooooooooooooooooo","answer":{"type":"answer","sdp":"v=0"}}`)
	send(a, `{"action":"scrape","info_hash":`+ih+`}`)
	send(a, `{"action":"announce","info_hash":"short"}`)
	send(a, `{`)

	_, page := adminGet(t, srv, "/metrics")
	for series, want := range map[string]float64{
		`trackd_ws_messages_total{action="announce",result="ok"}`:                      2,
		`trackd_ws_messages_total{action="announce",result="refused"}`:                 1,
		`trackd_ws_messages_total{action="answer",result="ok"}`:                        1,
		`trackd_ws_messages_total{action="answer",result="dropped"}`:                   1,
		`trackd_ws_messages_total{action="scrape",result="ok"}`:                        1,
		`trackd_ws_messages_total{action="invalid",result="refused"}`:                  1,
		`trackd_ws_messages_total{action="scrape",result="overloaded"}`:                0,
		`trackd_requests_total{action="announce",protocol="ws",result="ok"}`:           4,
		`trackd_requests_total{action="announce",protocol="ws",result="client_error"}`: 1,
		`trackd_requests_total{action="scrape",protocol="ws",result="ok"}`:             1,
		`trackd_ws_relayed_total{kind="offer"}`:                                        1,
		`trackd_ws_relayed_total{kind="answer"}`:                                       1,
		`trackd_ws_dropped_total{reason="no_peer"}`:                                    1,
		`trackd_ws_dropped_total{reason="rate_limited"}`:                               0,
		`trackd_ws_connections_open`:                                                   2,
		`trackd_ws_torrents`:                                                           1,
		`trackd_ws_seeders`:                                                            1,
		`trackd_ws_leechers`:                                                           1,
		`trackd_torrents`:                                                              0, // the store's swarms: none
	} {
		if got := metricValue(page, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}

	c, err := srv.statCounts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if c.WSRequests != 6 || c.WSConnections != 2 || c.WSTorrents != 1 || c.WSSeeders != 1 || c.WSLeechers != 1 || c.Seeders+c.Leechers != 0 {
		t.Errorf("stats counts %+v", c)
	}
	srv.stats.Sample(t.Context())
	_, body := adminGet(t, srv, "/stats.json")
	var snap struct {
		WSConnections uint64 `json:"ws_connections"`
		WSPeers       uint64 `json:"ws_peers"`
		WSTorrents    uint64 `json:"ws_torrents"`
		Peers         uint64 `json:"peers"`
	}
	if err := json.Unmarshal([]byte(body), &snap); err != nil || snap.WSConnections != 2 || snap.WSPeers != 2 || snap.WSTorrents != 1 || snap.Peers != 0 {
		t.Errorf("/stats.json %+v (%v): %s", snap, err, body)
	}

	b.Closed() // b leaves its swarm
	if got := srv.metrics.WSSwarmTotals(); got.Peers() != 1 {
		t.Errorf("after b closed: %+v", got)
	}
}

// TestWSMetricsZeroAlloc: the adapter, called through ws.Metrics as
// frontend/ws calls it, allocates nothing.
func TestWSMetricsZeroAlloc(t *testing.T) {
	m := metrics.New(metrics.Options{})
	wm := newWSMetrics(m)
	if n := testing.AllocsPerRun(1000, func() {
		wm.Message(ws.ActionAnnounce, ws.ResultOK)
		wm.Message(ws.ActionAnswer, ws.ResultDropped)
		wm.Message(ws.ActionInvalid, ws.ResultRefused)
		wm.Relayed(ws.RelayOffer, 3)
		wm.Dropped(ws.DropSendFailed, 1)
	}); n != 0 {
		t.Errorf("%v allocations per call", n)
	}
	if m.Requests(metrics.WS) != 2*1001 { // AllocsPerRun runs once more to warm up
		t.Errorf("%d ws requests counted, want %d", m.Requests(metrics.WS), 2*1001)
	}
}

func BenchmarkWSMetrics(b *testing.B) {
	wm := newWSMetrics(metrics.New(metrics.Options{}))
	b.ReportAllocs()
	for b.Loop() {
		wm.Message(ws.ActionAnnounce, ws.ResultOK)
		wm.Relayed(ws.RelayOffer, 1)
	}
}
