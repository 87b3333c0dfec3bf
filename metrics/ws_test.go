package metrics

import (
	"testing"

	"trackd/signaling"
)

// TestWS: a scripted sequence of WebSocket messages, relays and drops
// shows in trackd_ws_messages_total, trackd_requests_total{protocol="ws"},
// Requests(WS), trackd_ws_relayed_total and trackd_ws_dropped_total; the
// gauges read the functions given.
func TestWS(t *testing.T) {
	m := New(Options{})
	for range 3 {
		m.WSMessage(WSActionAnnounce, WSResultOK)
	}
	m.WSMessage(WSActionAnnounce, WSResultRefused)
	m.WSMessage(WSActionAnnounce, WSResultOverloaded)
	m.WSMessage(WSActionAnswer, WSResultOK)
	m.WSMessage(WSActionAnswer, WSResultDropped)
	m.WSMessage(WSActionAnswer, WSResultDropped)
	m.WSMessage(WSActionScrape, WSResultOK)
	m.WSMessage(WSActionInvalid, WSResultRefused)
	m.WSMessage(WSActionInvalid, WSResultRefused)
	m.WSRelayed(WSRelayOffer, 4)
	m.WSRelayed(WSRelayOffer, 1)
	m.WSRelayed(WSRelayAnswer, 1)
	m.WSRelayed(WSRelayAnswer, 0) // nothing
	m.WSDropped(WSDropRateLimited, 5)
	m.WSDropped(WSDropNoPeer, 1)
	m.WSDropped(WSDropSendFailed, 2)
	m.WSConnEvicted(MaxConns)
	m.WSConnEvicted(MaxConns)
	m.WSConnEvicted(PerIP)

	for _, tc := range []struct {
		action, result string
		want           float64
	}{
		{"announce", "ok", 3}, {"announce", "refused", 1}, {"announce", "overloaded", 1}, {"announce", "dropped", 0},
		{"answer", "ok", 1}, {"answer", "dropped", 2}, {"scrape", "ok", 1}, {"scrape", "refused", 0},
		{"invalid", "refused", 2}, {"invalid", "ok", 0},
	} {
		if got := value(t, m, "trackd_ws_messages_total", map[string]string{"action": tc.action, "result": tc.result}); got != tc.want {
			t.Errorf("ws_messages{%s,%s} = %v, want %v", tc.action, tc.result, got, tc.want)
		}
	}
	// as requests: answers are announces, dropped is ok, invalid is not a request
	for _, tc := range []struct {
		action, result string
		want           float64
	}{
		{"announce", "ok", 3 + 1 + 2}, {"announce", "client_error", 1}, {"announce", "server_error", 1},
		{"scrape", "ok", 1}, {"scrape", "client_error", 0}, {"connect", "ok", -1},
	} {
		if got := value(t, m, "trackd_requests_total", map[string]string{"protocol": "ws", "action": tc.action, "result": tc.result}); got != tc.want {
			t.Errorf("requests{ws,%s,%s} = %v, want %v", tc.action, tc.result, got, tc.want)
		}
	}
	if got := value(t, m, "trackd_request_duration_seconds", map[string]string{"protocol": "ws"}); got != -1 {
		t.Errorf("a ws latency series (%v): WSMessage has no duration", got)
	}
	if m.Requests(WS) != 9 || m.Requests(HTTP) != 0 || m.Requests(UDP) != 0 {
		t.Errorf("per protocol: ws %d, http %d, udp %d; want 9, 0, 0", m.Requests(WS), m.Requests(HTTP), m.Requests(UDP))
	}
	for labels, want := range map[[2]string]float64{
		{"trackd_ws_relayed_total", "offer"}: 5, {"trackd_ws_relayed_total", "answer"}: 1,
		{"trackd_ws_dropped_total", "rate_limited"}: 5, {"trackd_ws_dropped_total", "no_peer"}: 1,
		{"trackd_ws_dropped_total", "send_failed"}: 2, {"trackd_ws_dropped_total", "not_member"}: 0,
		{"trackd_ws_connections_evicted_total", "max_conns"}: 2, {"trackd_ws_connections_evicted_total", "per_ip"}: 1,
	} {
		key := "kind"
		if labels[0] != "trackd_ws_relayed_total" {
			key = "reason"
		}
		if got := value(t, m, labels[0], map[string]string{key: labels[1]}); got != want {
			t.Errorf("%s{%s} = %v, want %v", labels[0], labels[1], got, want)
		}
	}

	// the gauges: 0 until their functions are given, then what they read
	for _, name := range []string{"trackd_ws_connections_open", "trackd_ws_torrents", "trackd_ws_seeders", "trackd_ws_leechers"} {
		if got := value(t, m, name, nil); got != 0 {
			t.Errorf("%s = %v before it is wired, want 0", name, got)
		}
	}
	if m.WSConnsOpen() != 0 || m.WSSwarmTotals() != (signaling.Totals{}) {
		t.Errorf("before wiring: %d, %+v", m.WSConnsOpen(), m.WSSwarmTotals())
	}
	conns := 17
	m.WSConns(func() int { return conns })
	m.WSSwarms(func() signaling.Totals { return signaling.Totals{Swarms: 3, Seeders: 4, Leechers: 11} })
	conns = 18
	for name, want := range map[string]float64{"trackd_ws_connections_open": 18, "trackd_ws_torrents": 3, "trackd_ws_seeders": 4, "trackd_ws_leechers": 11} {
		if got := value(t, m, name, nil); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if m.WSConnsOpen() != 18 || m.WSSwarmTotals().Peers() != 15 {
		t.Errorf("read back: %d connections, %d peers; want 18, 15", m.WSConnsOpen(), m.WSSwarmTotals().Peers())
	}
}

func TestWSNilAndOutOfRange(t *testing.T) {
	var m *Metrics
	m.WSMessage(WSActionAnnounce, WSResultOK)
	m.WSRelayed(WSRelayOffer, 1)
	m.WSDropped(WSDropNoPeer, 1)
	m.WSConns(func() int { return 1 })
	m.WSSwarms(func() signaling.Totals { return signaling.Totals{Swarms: 1} })
	if m.Requests(WS) != 0 || m.WSConnsOpen() != 0 || m.WSSwarmTotals().Swarms != 0 {
		t.Error("nil Metrics counted")
	}
	m = New(Options{})
	m.WSMessage(numWSActions, WSResultOK)
	m.WSMessage(WSActionAnnounce, numWSResults)
	m.WSRelayed(numWSRelays, 1)
	m.WSDropped(numWSDrops, 1)
	if m.Requests(WS) != 0 {
		t.Error("an out-of-range value counted")
	}
}

func TestWSZeroAlloc(t *testing.T) {
	m := New(Options{})
	if n := testing.AllocsPerRun(1000, func() {
		m.WSMessage(WSActionAnnounce, WSResultOK)
		m.WSMessage(WSActionInvalid, WSResultRefused)
		m.WSRelayed(WSRelayOffer, 3)
		m.WSDropped(WSDropSendFailed, 1)
	}); n != 0 {
		t.Errorf("%v allocations per message", n)
	}
}

func BenchmarkWSMessage(b *testing.B) {
	m := New(Options{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.WSMessage(WSActionAnnounce, WSResultOK)
			m.WSRelayed(WSRelayOffer, 1)
		}
	})
}
