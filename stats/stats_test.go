package stats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"trackd/bittorrent"
)

// fakeClock is a time source the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func newRecorder(t *testing.T, keep int, src Source, top TopSource) (*Recorder, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	return New(src, top, Options{Period: 10 * time.Second, Keep: keep, Now: clk.Now, TopPeriod: time.Minute}), clk
}

func TestRatesAndRing(t *testing.T) {
	var c Counts
	r, clk := newRecorder(t, 3, func(context.Context) (Counts, error) { return c, nil }, nil)
	ctx := context.Background()
	for i := range 5 {
		c.Torrents = uint64(i + 1)
		c.Seeders, c.Leechers, c.Seeders6 = 10, uint64(5*i), 2
		c.HTTPRequests += 100 // 10/s over 10 s
		c.UDPRequests += 1000 // 100/s
		c.WSRequests += 50    // 5/s
		c.WSSeeders, c.WSLeechers = 1, uint64(i)
		r.Sample(ctx)
		clk.Advance(10 * time.Second)
	}
	s := r.Snapshot()
	if len(s.History) != 3 {
		t.Fatalf("history of %d samples, want the ring's 3", len(s.History))
	}
	for i, h := range s.History {
		if h.Torrents != uint64(i+3) {
			t.Errorf("sample %d: torrents %d, want %d (oldest first)", i, h.Torrents, i+3)
		}
		if h.HTTPRate != 10 || h.UDPRate != 100 || h.WSRate != 5 {
			t.Errorf("sample %d: rates %v, %v, %v; want 10, 100, 5", i, h.HTTPRate, h.UDPRate, h.WSRate)
		}
		if h.WSPeers != uint64(i+3) || h.Peers != 10+uint64(5*(i+2)) {
			t.Errorf("sample %d: %d WebSocket peers, %d peers; want %d, %d (apart)", i, h.WSPeers, h.Peers, i+3, 10+5*(i+2))
		}
	}
	if s.Torrents != 5 || s.Peers != 30 || s.IPv6Peers != 2 || s.IPv4Peers != 28 || s.UDPRate != 100 || s.WSRate != 5 || s.WSPeers != 5 || s.WSSeeders != 1 || s.WSLeechers != 4 {
		t.Errorf("snapshot totals %+v", s)
	}
}

func TestFirstSampleHasNoRateAndCounterReset(t *testing.T) {
	var c Counts
	r, clk := newRecorder(t, 10, func(context.Context) (Counts, error) { return c, nil }, nil)
	ctx := context.Background()
	c.UDPRequests = 5000
	r.Sample(ctx)
	clk.Advance(10 * time.Second)
	c.UDPRequests = 50 // the source restarted
	r.Sample(ctx)
	h := r.Snapshot().History
	if h[0].UDPRate != 0 || h[1].UDPRate != 5 {
		t.Errorf("rates %v, %v; want 0 (first sample), 5 (counting from the reset)", h[0].UDPRate, h[1].UDPRate)
	}
}

func TestSourceErrorSkipsSample(t *testing.T) {
	fail := true
	r, _ := newRecorder(t, 10, func(context.Context) (Counts, error) {
		if fail {
			return Counts{}, errors.New("store down")
		}
		return Counts{Torrents: 1}, nil
	}, nil)
	r.Sample(context.Background())
	if n := len(r.Snapshot().History); n != 0 {
		t.Fatalf("%d samples after a failed read", n)
	}
	fail = false
	r.Sample(context.Background())
	if n := len(r.Snapshot().History); n != 1 {
		t.Fatalf("%d samples", n)
	}
}

func ih(b byte) bittorrent.InfoHash { return bittorrent.InfoHash{b} }

func TestTopFromScrape(t *testing.T) {
	all := map[bittorrent.InfoHash][2]uint32{
		ih(1): {1, 1}, ih(2): {10, 0}, ih(3): {0, 0}, ih(4): {3, 4}, ih(5): {0, 50}, ih(6): {2, 2},
	}
	top := TopFromScrape(func(ctx context.Context, fn func(bittorrent.InfoHash, uint32, uint32) error) error {
		for h, c := range all {
			if err := fn(h, c[0], c[1]); err != nil {
				return err
			}
		}
		return nil
	})
	got, err := top(context.Background(), 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []bittorrent.InfoHash{ih(5), ih(2), ih(4)}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i].InfoHash != want[i] {
			t.Errorf("place %d: %v, want %v", i, got[i].InfoHash, want[i])
		}
	}
	got, _ = top(context.Background(), 10)
	if len(got) != 5 {
		t.Errorf("top 10 of 5 torrents with peers: %d", len(got))
	}
}

func TestTopRefreshPeriod(t *testing.T) {
	calls := 0
	top := func(ctx context.Context, n int) ([]Torrent, error) {
		calls++
		return []Torrent{{InfoHash: ih(byte(calls)), Seeders: 1}}, nil
	}
	r, clk := newRecorder(t, 10, func(context.Context) (Counts, error) { return Counts{}, nil }, top)
	for range 7 { // 60 s at a 10 s period: the list is refreshed at 0 s and 60 s
		r.Sample(context.Background())
		clk.Advance(10 * time.Second)
	}
	if calls != 2 {
		t.Errorf("busiest list read %d times in 60 s, want 2", calls)
	}
	if s := r.Snapshot(); len(s.Top) != 1 || s.Top[0].InfoHash != ih(2).String() || s.Top[0].Peers != 1 {
		t.Errorf("top %+v", s.Top)
	}
}

func serve(t *testing.T, r *Recorder, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func filled(t *testing.T) *Recorder {
	var c Counts
	top := func(ctx context.Context, n int) ([]Torrent, error) {
		return []Torrent{{InfoHash: ih(0xab), Seeders: 7, Leechers: 3}}, nil
	}
	r, clk := newRecorder(t, 100, func(context.Context) (Counts, error) { return c, nil }, top)
	for i := range 20 {
		c.Torrents, c.Seeders, c.Leechers, c.Leechers6 = uint64(100+i), 1000, uint64(500+10*i), 40
		c.UDPRequests += uint64(1000 * (i % 5))
		c.HTTPRequests += 200
		c.WSRequests += uint64(300 + 100*(i%3))
		c.WSConnections, c.WSTorrents, c.WSSeeders, c.WSLeechers = 1234, 56, 300, uint64(400+5*i)
		r.Sample(context.Background())
		clk.Advance(10 * time.Second)
	}
	return r
}

func TestPage(t *testing.T) {
	r := filled(t)
	res, body := serve(t, r, "/stats")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d, type %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`id="chart-requests"`, `id="chart-peers"`, `id="chart-torrents"`,
		`data-name="UDP"`, `data-name="HTTP"`, `data-name="WebSocket"`, `data-name="WebSocket peers"`, `<polyline`,
		`id="r-ws">40<`, `id="w-conns">1` + "\u202f" + `234<`, `id="w-peers">795<`, `id="w-torrents">56<`,
		"ab00000000000000000000000000000000000000", // the busiest torrent
		`id="t-torrents">119<`, "IPv6 peers",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script") || strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Error("page loads something from elsewhere")
	}
}

func TestPageEmpty(t *testing.T) {
	r, _ := newRecorder(t, 10, func(context.Context) (Counts, error) { return Counts{}, nil }, nil)
	res, body := serve(t, r, "/stats")
	if res.StatusCode != 200 || !strings.Contains(body, "chart-peers-empty") || !strings.Contains(body, "No torrents yet") {
		t.Fatalf("empty page: %d\n%s", res.StatusCode, body)
	}
}

func TestJSON(t *testing.T) {
	r := filled(t)
	res, body := serve(t, r, "/stats.json")
	if res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("type %q", res.Header.Get("Content-Type"))
	}
	var s Snapshot
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatal(err)
	}
	if s.Torrents != 119 || s.Peers != 1690 || s.IPv6Peers != 40 || len(s.History) != 20 || len(s.Top) != 1 || s.HTTPRate != 20 {
		t.Errorf("decoded %+v", s)
	}
	if s.WSRate != 40 || s.WSConnections != 1234 || s.WSTorrents != 56 || s.WSPeers != 795 || s.WSSeeders != 300 || s.WSLeechers != 495 ||
		s.History[19].WSRate != 40 || s.History[19].WSPeers != 795 {
		t.Errorf("WebSocket figures %+v", s)
	}
	for _, key := range []string{`"ws_requests_per_second"`, `"ws_rps"`, `"ws_connections"`, `"ws_peers"`, `"ws_torrents"`} {
		if !strings.Contains(body, key) {
			t.Errorf("/stats.json lacks %s", key)
		}
	}
}

func TestMethod(t *testing.T) {
	r := filled(t)
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest("POST", "/stats", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{formatCount(0), "0"}, {formatCount(999), "999"}, {formatCount(1234567), "1\u202f234\u202f567"},
		{formatRate(0), "0"}, {formatRate(2.5), "2.5"}, {formatRate(950), "950"}, {formatRate(1234), "1.2k"},
		{formatRate(56789), "57k"}, {formatRate(3.4e6), "3.4M"},
		{formatUptime(40), "40s"}, {formatUptime(600), "10m"}, {formatUptime(3 * 3600), "3h 0m"}, {formatUptime(90000), "1d 1h"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	for in, want := range map[float64]float64{0: 1, 1: 1, 3: 5, 12: 20, 99: 100, 101: 200, 5000: 5000} {
		if got := niceCeil(in); got != want {
			t.Errorf("niceCeil(%v) = %v, want %v", in, got, want)
		}
	}
}

func TestRunStops(t *testing.T) {
	r, _ := newRecorder(t, 10, func(context.Context) (Counts, error) { return Counts{}, nil }, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
}

// TestPageShedding: the totals say when the store sheds, and only then.
func TestPageShedding(t *testing.T) {
	for _, shedding := range []bool{false, true} {
		r, _ := newRecorder(t, 10, func(context.Context) (Counts, error) { return Counts{Torrents: 5, Shedding: shedding}, nil }, nil)
		r.Sample(context.Background())
		_, body := serve(t, r, "/stats")
		if got := strings.Contains(body, `id="t-shedding"`) && strings.Contains(body, "evicting the oldest single-peer torrents"); got != shedding {
			t.Errorf("shedding %v: the page shows it: %v", shedding, got)
		}
		_, js := serve(t, r, "/stats.json")
		if want := fmt.Sprintf(`"shedding": %v`, shedding); !strings.Contains(js, want) {
			t.Errorf("JSON lacks %s", want)
		}
	}
}
