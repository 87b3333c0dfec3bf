package server

import (
	"encoding/binary"
	"io"
	"net/http"
	"strings"
	"testing"

	"trackd/store"
)

// TestMemoryBound: max_memory reaches the store, and a store at its bound
// refuses a new torrent over HTTP (a failure reason with "retry in") and a
// new peer over UDP (an error packet), each saying why, while a known
// peer's announces work; /metrics and /stats show that it sheds.
func TestMemoryBound(t *testing.T) {
	cfg := loopbackConfig()
	cfg.MaxMemory = 32 << 20
	srv, _ := start(t, cfg)
	mb := srv.store.(store.MemoryBounded)
	if got := mb.MemoryUsage().Limit; got != 32<<20 {
		t.Fatalf("store bound %d, want max_memory 32MiB", got)
	}
	httpGet := func(query string) string {
		t.Helper()
		res, err := http.Get("http://" + srv.HTTPAddr().String() + query)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	if body := httpGet(announceQuery); !strings.HasPrefix(body, "d8:complete") {
		t.Fatalf("announce under the bound: %q", body)
	}
	mb.SetMemoryLimit(1)
	fresh := strings.Replace(announceQuery, "info_hash=aaaaaaaaaaaaaaaaaaaa", "info_hash=cccccccccccccccccccc", 1)
	if body, want := httpGet(fresh), "d14:failure reason45:tracker is full: no new torrents accepted now8:retry ini2ee"; body != want {
		t.Errorf("new torrent at the bound over HTTP: %q, want %q", body, want)
	}
	if body := httpGet(announceQuery); !strings.HasPrefix(body, "d8:complete") {
		t.Errorf("re-announce at the bound over HTTP: %q", body)
	}
	u := dialUDP(t, srv.UDPAddr())
	id := u.connect()
	reply := u.announce(id, 6999) // a new peer of the known torrent
	if len(reply) < 8 || binary.BigEndian.Uint32(reply) != 3 || string(reply[8:]) != "tracker is full: no new peers accepted now" {
		t.Errorf("new peer at the bound over UDP: %q", reply)
	}
	if reply := u.announce(id, 6881); len(reply) < 20 || binary.BigEndian.Uint32(reply) != 1 {
		t.Errorf("re-announce at the bound over UDP: %x", reply)
	}
	_, page := adminGet(t, srv, "/metrics")
	for series, want := range map[string]float64{
		"trackd_store_refused_announces_total": 2,
		"trackd_store_shedding":                1,
		"trackd_store_memory_limit_bytes":      1,
	} {
		if got := metricValue(page, series); got != want {
			t.Errorf("/metrics: %s %v, want %v", series, got, want)
		}
	}
	if metricValue(page, "trackd_store_memory_bytes") <= 0 {
		t.Errorf("/metrics: trackd_store_memory_bytes %v", metricValue(page, "trackd_store_memory_bytes"))
	}
	srv.stats.Sample(t.Context())
	if _, page := adminGet(t, srv, "/stats"); !strings.Contains(page, `id="t-shedding"`) {
		t.Error("/stats does not say that the store sheds")
	}
}
