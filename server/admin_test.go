package server

import (
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func adminGet(t *testing.T, srv *Server, path string) (int, string) {
	t.Helper()
	res, err := http.Get("http://" + srv.AdminAddr().String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// metricValue finds the value of the series named exactly as given (name
// and labels as Prometheus prints them) in a /metrics page, -1 if absent.
func metricValue(page, series string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(page)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestMetricsCount: after a scripted sequence of announces and scrapes over
// HTTP and UDP, /metrics on the admin listener counts each by protocol,
// action and result, and shows the swarm totals by family.
func TestMetricsCount(t *testing.T) {
	srv, _ := start(t, loopbackConfig())
	base := "http://" + srv.HTTPAddr().String()
	get := func(path string) string {
		t.Helper()
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	get(announceQuery)                                               // ok
	get(strings.Replace(announceQuery, "port=6881", "port=6882", 1)) // ok
	get(strings.Replace(announceQuery, "port=6881", "port=0", 1))    // client error
	get("/scrape?info_hash=aaaaaaaaaaaaaaaaaaaa")                    // ok
	// full scrape, ok: the first build is made in the background at start
	for i := 0; strings.Contains(get("/scrape"), "failure reason") && i < 500; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	get("/announce?info_hash=short")                                              // client error
	get("/nothing")                                                               // not counted
	get("/announce?info_hash=aaaaaaaaaaaaaaaaaaab&peer_id=bbbbbbbbbbbbbbbbbbbb" + // IPv6 peer by ip= is not trusted:
		"&port=7000&left=5&compact=1&ip=2001:db8::1") // counted as IPv4 from the socket

	u := dialUDP(t, srv.UDPAddr())
	id := u.connect()
	if r := u.announce(id, 9000); len(r) < 20 || binary.BigEndian.Uint32(r) != 1 {
		t.Fatalf("udp announce reply %x", r)
	}
	u.announce(id+1, 9001) // invalid connection id: client error

	code, page := adminGet(t, srv, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for series, want := range map[string]float64{
		`trackd_requests_total{action="announce",protocol="http",result="ok"}`:           3,
		`trackd_requests_total{action="announce",protocol="http",result="client_error"}`: 2,
		`trackd_requests_total{action="scrape",protocol="http",result="ok"}`:             2,
		`trackd_requests_total{action="connect",protocol="udp",result="ok"}`:             1,
		`trackd_requests_total{action="announce",protocol="udp",result="ok"}`:            1,
		`trackd_requests_total{action="announce",protocol="udp",result="client_error"}`:  1,
		`trackd_requests_total{action="announce",protocol="http",result="server_error"}`: 0,
		`trackd_request_duration_seconds_count{action="announce",protocol="http"}`:       5,
		`trackd_full_scrapes_total`:        1,
		`trackd_torrents`:                  2,
		`trackd_seeders{family="ipv4"}`:    3,
		`trackd_leechers{family="ipv4"}`:   1,
		`trackd_seeders{family="ipv6"}`:    0,
		`trackd_store_up`:                  1,
		`trackd_udp_packets_dropped_total`: 0,
		`trackd_peers_expired_total`:       0,
	} {
		if got := metricValue(page, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "go_memstats_heap_alloc_bytes"} {
		if !strings.Contains(page, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if regexp.MustCompile(`info_hash|aaaaaaaa|127\.0\.0\.1`).MatchString(page) {
		t.Error("/metrics has a label value that is a hash or an address")
	}
}

// TestAdminEndpoints: health, readiness and the stats page with what the
// tracker holds.
func TestAdminEndpoints(t *testing.T) {
	srv, _ := start(t, loopbackConfig())
	if code, body := adminGet(t, srv, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := adminGet(t, srv, "/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz: %d %q", code, body)
	}
	if code, _ := adminGet(t, srv, "/debug/pprof/"); code != 404 {
		t.Errorf("pprof is on by default: %d", code)
	}
	res, err := http.Get("http://" + srv.HTTPAddr().String() + announceQuery)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	srv.stats.Sample(t.Context())
	code, body := adminGet(t, srv, "/stats.json")
	var snap struct {
		Torrents, Peers uint64
		History         []json.RawMessage
	}
	if err := json.Unmarshal([]byte(body), &snap); code != 200 || err != nil {
		t.Fatalf("/stats.json: %d %v", code, err)
	}
	if snap.Torrents != 1 || snap.Peers != 1 || len(snap.History) == 0 {
		t.Errorf("/stats.json: %s", body)
	}
	if code, body := adminGet(t, srv, "/stats"); code != 200 || !strings.Contains(body, "chart-peers") {
		t.Errorf("/stats: %d", code)
	}
}
