package metrics

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"trackd/internal/ratelog"
	"trackd/store"
	"trackd/tracker"
)

// value returns the value of the series name{labels}, or -1 when absent.
func value(t *testing.T, m *Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	series:
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue series
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return s.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				return s.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				return float64(s.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}

func TestRequests(t *testing.T) {
	m := New(Options{})
	for range 3 {
		m.Request(UDP, Connect, OK, 20*time.Microsecond)
	}
	m.Request(UDP, Announce, OK, 50*time.Microsecond)
	m.Request(UDP, Announce, ClientError, 10*time.Microsecond)
	m.Request(HTTP, Announce, OK, time.Millisecond)
	m.Request(HTTP, Scrape, ServerError, time.Second)
	m.FullScrape()
	m.FullScrape()

	for _, tc := range []struct {
		proto, action, result string
		want                  float64
	}{
		{"udp", "connect", "ok", 3},
		{"udp", "announce", "ok", 1},
		{"udp", "announce", "client_error", 1},
		{"udp", "announce", "server_error", 0},
		{"http", "announce", "ok", 1},
		{"http", "scrape", "server_error", 1},
		{"http", "connect", "ok", -1}, // no such series
	} {
		got := value(t, m, "trackd_requests_total", map[string]string{"protocol": tc.proto, "action": tc.action, "result": tc.result})
		if got != tc.want {
			t.Errorf("requests{%s,%s,%s} = %v, want %v", tc.proto, tc.action, tc.result, got, tc.want)
		}
	}
	if got := value(t, m, "trackd_request_duration_seconds", map[string]string{"protocol": "udp", "action": "announce"}); got != 2 {
		t.Errorf("udp announce latency samples %v, want 2", got)
	}
	if got := value(t, m, "trackd_full_scrapes_total", nil); got != 2 {
		t.Errorf("full scrapes %v", got)
	}
	if m.Requests(UDP) != 5 || m.Requests(HTTP) != 2 {
		t.Errorf("per protocol: %d %d", m.Requests(UDP), m.Requests(HTTP))
	}
}

func TestErrors(t *testing.T) {
	m := New(Options{})
	// Every kind has a series from the start, at 0.
	for _, k := range ratelog.Kinds {
		if v := value(t, m, "trackd_errors_total", map[string]string{"kind": k}); v != 0 {
			t.Errorf("kind %s: %v before any error, want 0", k, v)
		}
	}
	m.Error(ratelog.KindStore)
	m.Error(ratelog.KindStore)
	m.Error(ratelog.KindOverload)
	m.Error("other")
	for k, want := range map[string]float64{ratelog.KindStore: 2, ratelog.KindOverload: 1, ratelog.KindWrite: 0, "other": 1} {
		if v := value(t, m, "trackd_errors_total", map[string]string{"kind": k}); v != want {
			t.Errorf("kind %s: %v, want %v", k, v, want)
		}
	}
}

func TestNilRecordsNothing(t *testing.T) {
	var m *Metrics
	m.Request(UDP, Announce, OK, time.Millisecond)
	m.FullScrape()
	m.Error(ratelog.KindStore)
	if m.Requests(UDP) != 0 {
		t.Error("nil Metrics counted")
	}
}

func TestResultOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Result
	}{
		{nil, OK},
		{tracker.ErrPortZero, ClientError},
		{errors.New("redis: connection refused"), ServerError},
	} {
		if got := ResultOf(tc.err); got != tc.want {
			t.Errorf("ResultOf(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestTotalsAndDrops(t *testing.T) {
	up := true
	m := New(Options{
		Totals: func(context.Context) (Totals, error) {
			if !up {
				return Totals{}, errors.New("down")
			}
			return Totals{Torrents: 7, Seeders4: 10, Leechers4: 5, Seeders6: 2, Leechers6: 1, PeersExpired: 99, PeersExpiredObserved: true}, nil
		},
		UDPDropped: func() uint64 { return 42 },
	})
	for name, want := range map[string]float64{"trackd_torrents": 7, "trackd_peers_expired_total": 99, "trackd_store_up": 1, "trackd_udp_packets_dropped_total": 42} {
		if got := value(t, m, name, nil); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for _, tc := range []struct {
		name, family string
		want         float64
	}{{"trackd_seeders", "ipv4", 10}, {"trackd_seeders", "ipv6", 2}, {"trackd_leechers", "ipv4", 5}, {"trackd_leechers", "ipv6", 1}} {
		if got := value(t, m, tc.name, map[string]string{"family": tc.family}); got != tc.want {
			t.Errorf("%s{%s} = %v, want %v", tc.name, tc.family, got, tc.want)
		}
	}
	up = false
	if got := value(t, m, "trackd_store_up", nil); got != 0 {
		t.Errorf("store down: up = %v", got)
	}
	if got := value(t, m, "trackd_torrents", nil); got != -1 {
		t.Errorf("store down: torrents still reported (%v)", got)
	}
}

func TestHandler(t *testing.T) {
	m := New(Options{})
	m.Request(HTTP, Announce, OK, time.Millisecond)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Result().Body)
	for _, want := range []string{
		`trackd_requests_total{action="announce",protocol="http",result="ok"} 1`,
		"go_goroutines", "process_resident_memory_bytes",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func BenchmarkRequest(b *testing.B) {
	m := New(Options{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Request(UDP, Announce, OK, 40*time.Microsecond)
		}
	})
}

// TestMemoryBound: the store's memory bound shows as gauges and counters,
// and not at all for a store without one.
func TestMemoryBound(t *testing.T) {
	observed := true
	m := New(Options{Totals: func(context.Context) (Totals, error) {
		return Totals{MemoryObserved: observed, Memory: store.MemoryUsage{Bytes: 1000, Held: 1200, Limit: 4096, Shedding: true, Evicted: 7, Refused: 3}}, nil
	}})
	for name, want := range map[string]float64{
		"trackd_store_memory_bytes": 1000, "trackd_store_memory_held_bytes": 1200, "trackd_store_memory_limit_bytes": 4096,
		"trackd_store_shedding": 1, "trackd_store_evicted_torrents_total": 7, "trackd_store_refused_announces_total": 3,
	} {
		if got := value(t, m, name, nil); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	observed = false
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "trackd_store_memory") || f.GetName() == "trackd_store_shedding" {
			t.Errorf("%s shown for a store without a memory bound", f.GetName())
		}
	}
}
