package http

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"trackd/bencode"
	"trackd/bittorrent"
	"trackd/internal/race"
	"trackd/internal/ratelog"
	"trackd/store"
	"trackd/store/memory"
	"trackd/tracker"
)

type fixture struct {
	h     *Handler
	clock *testClock
}

// testClock is a clock that moves only when told to.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newFixture(t *testing.T, cfg tracker.Config, opts Options) *fixture {
	t.Helper()
	return newFixtureOf(t, cfg, opts, false)
}

// plainStore hides every ability of the store it wraps, among them
// store.CompactAnnouncer: the tracker then hands out bittorrent.Peer
// values, as from the Redis store.
type plainStore struct{ store.Store }

// newFixtureOf is newFixture, on a plainStore if plain.
func newFixtureOf(t *testing.T, cfg tracker.Config, opts Options, plain bool) *fixture {
	t.Helper()
	clock := &testClock{now: time.Unix(1_700_000_000, 0)}
	var s store.Store = memory.New(store.Options{PeerLifetime: time.Hour, PeerIDs: cfg.PeerIDs, Now: clock.Now})
	t.Cleanup(func() { s.Close() })
	if plain {
		s = plainStore{s}
	}
	opts.Now = clock.Now
	h := NewHandler(tracker.New(cfg, s), opts)
	t.Cleanup(func() { h.Close() })
	return &fixture{h: h, clock: clock}
}

// get performs a request from remote ("ip:port") and decodes the reply.
func (f *fixture) get(t *testing.T, remote, target string, hdr ...string) (map[string]any, *http.Response) {
	t.Helper()
	r := httptest.NewRequest("GET", target, nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	res := w.Result()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		return nil, res
	}
	if res.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	v, err := bencode.Decode(body)
	if err != nil {
		t.Fatalf("%s: reply %q is not canonical bencode: %v", target, body, err)
	}
	d, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: reply %q is not a dictionary", target, body)
	}
	return d, res
}

func announceURL(ih, pid [20]byte, port string, extra string) string {
	return "/announce?info_hash=" + esc(ih) + "&peer_id=" + esc(pid) + "&port=" + port + "&uploaded=0&downloaded=0&left=" + extra
}

func failure(d map[string]any) string {
	s, _ := d["failure reason"].(string)
	return s
}

// TestAnnounceCompactBothFamilies checks compact replies (BEP 23, BEP 7),
// from a store that hands out compact peers (store.CompactAnnouncer) and
// from one that does not.
func TestAnnounceCompactBothFamilies(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprintf("plain=%v", plain), func(t *testing.T) {
			testAnnounceCompactBothFamilies(t, newFixtureOf(t, tracker.Config{}, Options{}, plain))
		})
	}
}

func testAnnounceCompactBothFamilies(t *testing.T, f *fixture) {
	ih := hash20("torrent")
	// An IPv4 and an IPv6 leecher.
	d, _ := f.get(t, "10.0.0.1:5000", announceURL(ih, hash20("p1"), "6881", "5&compact=1"))
	if failure(d) != "" {
		t.Fatal(failure(d))
	}
	f.get(t, "[2001:db8::1]:5000", announceURL(ih, hash20("p2"), "6882", "5&compact=1"))
	// A third peer, over IPv4, sees both.
	d, _ = f.get(t, "10.0.0.3:5000", announceURL(ih, hash20("p3"), "6883", "5&compact=1"))
	if got, want := d["peers"], "\x0a\x00\x00\x01\x1a\xe1"; got != want {
		t.Errorf("peers = %q, want %q", got, want)
	}
	want6 := string(netip.MustParseAddr("2001:db8::1").AsSlice()) + "\x1a\xe2"
	if got := d["peers6"]; got != want6 {
		t.Errorf("peers6 = %q, want %q", got, want6)
	}
	if d["external ip"] != "\x0a\x00\x00\x03" {
		t.Errorf("external ip = %q", d["external ip"])
	}
	if d["complete"] != int64(0) || d["incomplete"] != int64(3) || d["interval"] != int64(60) || d["min interval"] != int64(30) {
		t.Errorf("counts/intervals wrong: %v", d)
	}
	// The IPv6 peer sees the IPv4 ones in peers, and its external ip is 16 bytes.
	d, _ = f.get(t, "[2001:db8::1]:5000", announceURL(ih, hash20("p2"), "6882", "5&compact=1"))
	if p, _ := d["peers"].(string); len(p) != 12 {
		t.Errorf("v6 requester got peers %q, want 2 IPv4 peers", p)
	}
	if _, ok := d["peers6"]; ok {
		t.Errorf("peers6 should be absent when there are no other IPv6 peers: %q", d["peers6"])
	}
	if ip, _ := d["external ip"].(string); len(ip) != 16 {
		t.Errorf("external ip %q is not 16 bytes", ip)
	}
}

// TestAnnounceDictPeers checks non-compact replies: with peer ids kept
// (peer_ids), each peer's id unless the client sent no_peer_id=1; without,
// never an id.
func TestAnnounceDictPeers(t *testing.T) {
	for _, ids := range []bool{true, false} {
		t.Run(fmt.Sprintf("peer_ids=%v", ids), func(t *testing.T) { testAnnounceDictPeers(t, ids) })
	}
}

func testAnnounceDictPeers(t *testing.T, ids bool) {
	f := newFixture(t, tracker.Config{PeerIDs: ids}, Options{})
	ih := hash20("dict")
	f.get(t, "10.0.0.1:1", announceURL(ih, hash20("\x00seed "), "6881", "0"))
	f.get(t, "[::1]:1", announceURL(ih, hash20("v6"), "7000", "0"))
	d, _ := f.get(t, "10.0.0.2:1", announceURL(ih, hash20("leech"), "6882", "10"))
	peers, ok := d["peers"].([]any)
	if !ok || len(peers) != 2 {
		t.Fatalf("peers = %#v", d["peers"])
	}
	seen := map[string]bool{}
	for _, p := range peers {
		pd := p.(map[string]any)
		seen[pd["ip"].(string)] = true
		id, hasID := pd["peer id"]
		if hasID != ids {
			t.Errorf("peer_ids %v, but peer %v", ids, pd)
		}
		switch pd["ip"] {
		case "10.0.0.1":
			if pd["port"] != int64(6881) || hasID && id != string(func() []byte { h := hash20("\x00seed "); return h[:] }()) {
				t.Errorf("peer %v", pd)
			}
		case "::1":
			if pd["port"] != int64(7000) {
				t.Errorf("peer %v", pd)
			}
		}
	}
	if !seen["10.0.0.1"] || !seen["::1"] {
		t.Errorf("peers %v", peers)
	}
	d, _ = f.get(t, "10.0.0.2:1", announceURL(ih, hash20("leech"), "6882", "10&no_peer_id=1"))
	for _, p := range d["peers"].([]any) {
		if _, ok := p.(map[string]any)["peer id"]; ok {
			t.Errorf("no_peer_id=1 but peer id sent: %v", p)
		}
	}
}

func TestAnnounceFailures(t *testing.T) {
	f := newFixture(t, tracker.Config{RequireCompact: true}, Options{MaxQueryBytes: 300})
	ih, pid := hash20("x"), hash20("y")
	tests := []struct {
		target string
		want   string
	}{
		{"/announce", "missing parameter info_hash"},
		{"/announce?info_hash=abc&peer_id=" + esc(pid) + "&port=1&left=0", "invalid info_hash"},
		{"/announce?info_hash=" + esc(ih) + "&peer_id=" + esc(pid) + "&port=70000&left=0&compact=1", "invalid port"},
		{"/announce?info_hash=%ZZ&peer_id=" + esc(pid) + "&port=1&left=0", "invalid info_hash"},
		{announceURL(ih, pid, "1", "0"), "requires compact"},
		{announceURL(ih, pid, "1", "0&compact=1&pad="+strings.Repeat("a", 300)), "query too long"},
		{"/scrape?info_hash=" + strings.Repeat("a", 400), "query too long"},
		{"/scrape?info_hash=short", "invalid info_hash"},
	}
	for _, tt := range tests {
		d, res := f.get(t, "10.0.0.1:1", tt.target)
		if res.StatusCode != 200 {
			t.Errorf("%s: status %d", tt.target, res.StatusCode)
			continue
		}
		if got := failure(d); !strings.Contains(got, tt.want) {
			t.Errorf("%s: failure reason %q, want %q", tt.target, got, tt.want)
		}
		if len(d) != 1 {
			t.Errorf("%s: failure reply has other keys: %v", tt.target, d)
		}
	}
	// And the tracker still serves.
	d, _ := f.get(t, "10.0.0.1:1", announceURL(ih, pid, "1", "0&compact=1"))
	if failure(d) != "" {
		t.Errorf("valid announce after bad ones failed: %q", failure(d))
	}
}

// TestAnnounceLenient: announces as real clients send them, through the
// handler, the core and the in-memory store. A stopped announce with
// left=2^64-1 (WebTorrent's "unknown") removes the peer; event=empty
// (BEP 3), event=paused (libtorrent) and qBittorrent's extra fields are
// regular announces.
func TestAnnounceLenient(t *testing.T) {
	f := newFixture(t, tracker.Config{}, Options{})
	ih, pid := hash20("lenient swarm"), hash20("-WW0107-")
	q := func(port, extra string) string {
		return "/announce?info_hash=" + esc(ih) + "&peer_id=" + esc(pid) + "&port=" + port + extra
	}
	for _, step := range []struct {
		name               string
		remote, target     string
		complete, incomplt int64
	}{
		{"seeder, event=empty", "10.0.0.1:1", q("6881", "&left=0&event=empty&compact=1"), 1, 0},
		{"leecher, left=2^64-1 (unknown)", "10.0.0.2:1", q("6882", "&left=18446744073709551615&event=started&compact=1"), 1, 1},
		{"leecher, left junk", "10.0.0.3:1", q("6883", "&left=abc&compact=1"), 1, 2},
		{"qBittorrent extras", "10.0.0.4:1", q("6884", "&uploaded=0&downloaded=0&left=1000&corrupt=0&key=8A3F21C0&event=started&numwant=200&compact=1&no_peer_id=1&supportcrypto=1&redundant=0"), 1, 3},
		{"paused seeder stays", "10.0.0.1:1", q("6881", "&left=0&event=paused&compact=1"), 1, 3},
		{"unknown event", "10.0.0.4:1", q("6884", "&left=1000&event=finished&uploaded=-1&key=%4&compact=1"), 1, 3},
		// the stopped announce carries numbers no count can be
		{"stopped with left=2^64-1", "10.0.0.2:1", q("6882", "&left=18446744073709551615&uploaded=18446744073709551615&event=stopped&compact=1"), 1, 2},
		{"stopped with left=-1", "10.0.0.3:1", q("6883", "&left=-1&event=stopped&compact=1"), 1, 1},
	} {
		d, _ := f.get(t, step.remote, step.target)
		if failure(d) != "" {
			t.Fatalf("%s: failure %q", step.name, failure(d))
		}
		if d["complete"] != step.complete || d["incomplete"] != step.incomplt {
			t.Errorf("%s: complete %v, incomplete %v; want %d, %d", step.name, d["complete"], d["incomplete"], step.complete, step.incomplt)
		}
	}
	// What may still fail, and with which text.
	for _, tc := range []struct{ target, want string }{
		{"/announce?peer_id=" + esc(pid) + "&port=1", "missing parameter info_hash"},
		{"/announce?info_hash=" + esc(ih) + "&port=1", "missing parameter peer_id"},
		{"/announce?info_hash=" + esc(ih) + "&peer_id=" + esc(pid), "missing parameter port"},
		{"/announce?info_hash=abc&peer_id=" + esc(pid) + "&port=1", "invalid info_hash: must be 20 bytes, percent-encoded"},
		{"/announce?info_hash=" + esc(ih) + "&peer_id=abc&port=1", "invalid peer_id: must be 20 bytes, percent-encoded"},
		{"/announce?info_hash=" + esc(ih) + "&peer_id=" + esc(pid) + "&port=0", "invalid port: must be a number from 1 to 65535"},
		{"/announce?info_hash=" + esc(ih) + "&info_hash=" + esc(ih) + "&peer_id=" + esc(pid) + "&port=1", "parameter info_hash given twice"},
	} {
		d, _ := f.get(t, "10.0.0.9:1", tc.target)
		if got := failure(d); got != tc.want {
			t.Errorf("%s: failure %q, want %q", tc.target, got, tc.want)
		}
	}
}

func TestUnknownPath(t *testing.T) {
	f := newFixture(t, tracker.Config{}, Options{})
	for _, p := range []string{"/", "/announce/x", "/favicon.ico", "/scrape.php"} {
		if _, res := f.get(t, "10.0.0.1:1", p); res.StatusCode != 404 {
			t.Errorf("%s: status %d, want 404", p, res.StatusCode)
		}
	}
}

func TestScrapeReply(t *testing.T) {
	f := newFixture(t, tracker.Config{}, Options{FullScrape: true})
	a, b := hash20("a"), hash20("b")
	f.get(t, "10.0.0.1:1", announceURL(a, hash20("1"), "1", "0"))
	f.get(t, "10.0.0.2:1", announceURL(a, hash20("2"), "1", "5"))
	f.get(t, "10.0.0.2:1", announceURL(a, hash20("2"), "1", "0&event=completed"))

	d, _ := f.get(t, "10.0.0.9:1", "/scrape?info_hash="+esc(b)+"&info_hash="+esc(a)+"&info_hash="+esc(a))
	files, ok := d["files"].(map[string]any)
	if !ok || len(files) != 2 {
		t.Fatalf("files = %#v", d["files"])
	}
	fa := files[string(a[:])].(map[string]any)
	if fa["complete"] != int64(2) || fa["incomplete"] != int64(0) || fa["downloaded"] != int64(1) {
		t.Errorf("a: %v", fa)
	}
	fb := files[string(b[:])].(map[string]any)
	if fb["complete"] != int64(0) || fb["incomplete"] != int64(0) || fb["downloaded"] != int64(0) {
		t.Errorf("b: %v", fb)
	}
	flags, _ := d["flags"].(map[string]any)
	if flags["min_request_interval"] != int64(60) {
		t.Errorf("flags = %v", d["flags"])
	}
}

func TestScrapeTooMany(t *testing.T) {
	f := newFixture(t, tracker.Config{MaxScrapeHashes: 2}, Options{})
	q := "/scrape?info_hash=" + esc(hash20("a")) + "&info_hash=" + esc(hash20("b")) + "&info_hash=" + esc(hash20("c"))
	d, _ := f.get(t, "10.0.0.1:1", q)
	if !strings.Contains(failure(d), "at most 2") {
		t.Errorf("failure = %q", failure(d))
	}
}

func TestFullScrapeDisabled(t *testing.T) {
	f := newFixture(t, tracker.Config{}, Options{FullScrape: false})
	d, _ := f.get(t, "10.0.0.1:1", "/scrape")
	if !strings.Contains(failure(d), "full scrape is disabled") {
		t.Errorf("failure = %q", failure(d))
	}
}

func TestClientAddress(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.9.0.0/16")}
	f := newFixture(t, tracker.Config{}, Options{
		TrustedProxies: proxies,
		TrustIPParam:   []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
	})
	tests := []struct {
		name   string
		remote string
		query  string
		hdr    []string
		want   string // external ip
		stored string // address others see
	}{
		{"direct", "198.51.100.7:1", "", nil, "198.51.100.7", "198.51.100.7"},
		{"untrusted proxy headers ignored", "198.51.100.7:1", "", []string{"X-Forwarded-For", "1.2.3.4", "X-Real-IP", "1.2.3.4"}, "198.51.100.7", "198.51.100.7"},
		{"trusted proxy X-Real-IP", "127.0.0.1:1", "", []string{"X-Real-IP", "203.0.113.5"}, "203.0.113.5", "203.0.113.5"},
		{"trusted proxy X-Forwarded-For, nearest untrusted hop", "127.0.0.1:1", "", []string{"X-Forwarded-For", "6.6.6.6, 203.0.113.9, 10.9.1.1"}, "203.0.113.9", "203.0.113.9"},
		{"v4-mapped remote", "[::ffff:198.51.100.8]:1", "", nil, "198.51.100.8", "198.51.100.8"},
		{"ip param untrusted", "198.51.100.7:1", "&ip=203.0.113.77", nil, "198.51.100.7", "198.51.100.7"},
		{"ip param trusted", "192.0.2.1:1", "&ip=203.0.113.77", nil, "192.0.2.1", "203.0.113.77"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ih := hash20(string(rune('A' + i)))
			d, _ := f.get(t, tt.remote, announceURL(ih, hash20("p"), "6881", "1&compact=1"+tt.query), tt.hdr...)
			if failure(d) != "" {
				t.Fatal(failure(d))
			}
			if got := d["external ip"]; got != string(netip.MustParseAddr(tt.want).AsSlice()) {
				t.Errorf("external ip %q, want %s", got, tt.want)
			}
			d, _ = f.get(t, "198.51.100.200:1", announceURL(ih, hash20("q"), "6881", "1&compact=1"))
			want := string(netip.MustParseAddr(tt.stored).AsSlice()) + "\x1a\xe1"
			if d["peers"] != want {
				t.Errorf("stored peer %q, want %q", d["peers"], want)
			}
		})
	}
}

func TestAnnounceAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("allocation counts mean nothing under the race detector")
	}
	f := newFixture(t, tracker.Config{}, Options{})
	ih := hash20("alloc")
	for i := range 60 {
		f.get(t, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 1).String(), announceURL(ih, hash20("p"), "6881", "1&compact=1"))
	}
	r := httptest.NewRequest("GET", announceURL(ih, hash20("p"), "6881", "1&compact=1"), nil)
	r.RemoteAddr = "10.0.0.1:1"
	w := discardWriter{h: http.Header{}}
	allocs := testing.AllocsPerRun(200, func() { f.h.ServeHTTP(w, r) })
	if allocs != 0 {
		t.Errorf("announce allocates %.1f times per request", allocs)
	}
}

type discardWriter struct{ h http.Header }

func (w discardWriter) Header() http.Header         { return w.h }
func (w discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w discardWriter) WriteHeader(int)             {}

func BenchmarkHandlerAnnounce(b *testing.B) {
	s := memory.New(store.Options{PeerLifetime: time.Hour})
	defer s.Close()
	h := NewHandler(tracker.New(tracker.Config{}, s), Options{})
	ih := hash20("bench")
	w := discardWriter{h: http.Header{}}
	for i := range 200 {
		r := httptest.NewRequest("GET", announceURL(ih, hash20("p"), "6881", "1&compact=1"), nil)
		r.RemoteAddr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 1).String()
		h.ServeHTTP(w, r)
	}
	r := httptest.NewRequest("GET", announceURL(ih, hash20("p"), "6881", "1&compact=1&numwant=50"), nil)
	r.RemoteAddr = "10.0.0.1:1"
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

// FuzzHandler sends arbitrary queries to /announce and /scrape: every reply
// must be a canonical bencoded dictionary, a failure or a real answer.
func FuzzHandler(f *testing.F) {
	f.Add(true, "info_hash="+esc(hash20("a"))+"&peer_id="+esc(hash20("b"))+"&port=1&left=0&compact=1")
	f.Add(true, "info_hash="+esc(hash20("a"))+"&peer_id="+esc(hash20("b"))+"&port=1&left=5&numwant=3")
	f.Add(false, "info_hash="+esc(hash20("a")))
	f.Add(false, "")
	f.Add(true, "%%%&&==")
	s := memory.New(store.Options{PeerLifetime: time.Hour})
	f.Cleanup(func() { s.Close() })
	h := NewHandler(tracker.New(tracker.Config{}, s), Options{FullScrape: true})
	f.Cleanup(func() { h.Close() })
	f.Fuzz(func(t *testing.T, announce bool, q string) {
		path := "/scrape"
		if announce {
			path = "/announce"
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.URL.Path, r.URL.RawQuery = path, q
		r.RemoteAddr = "10.1.2.3:4"
		// The full scrape is sent uncompressed as a stream, which
		// ServeHTTP does not copy yet.
		r.Header.Set("Accept-Encoding", "gzip")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			t.Fatalf("status %d", w.Code)
		}
		body := w.Body.Bytes()
		if w.Header().Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if body, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		v, err := bencode.Decode(body)
		if err != nil {
			t.Fatalf("reply %q: %v", body, err)
		}
		d, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("reply %q is not a dictionary", body)
		}
		_, retry := d["retry in"]
		if _, failed := d["failure reason"]; failed && len(d) != 1 && (!retry || len(d) != 2) {
			t.Fatalf("failure with other keys: %q", body)
		}
	})
}

// gatedStore holds announces until its gate opens.
type gatedStore struct {
	store.Store
	entered chan struct{}
	gate    chan struct{}
}

func (g *gatedStore) Announce(ctx context.Context, a store.Announce, peers []bittorrent.Peer) ([]bittorrent.Peer, bittorrent.Stats, error) {
	g.entered <- struct{}{}
	<-g.gate
	return g.Store.Announce(ctx, a, peers)
}

// TestOverloadRetryIn: a tracker refusing for overload gets a failure
// reason with BEP 31's "retry in", in minutes, and one log line however
// many are refused (rate-limited, kind=overload), each counted.
func TestOverloadRetryIn(t *testing.T) {
	mem := memory.New(store.Options{PeerLifetime: time.Hour})
	defer mem.Close()
	g := &gatedStore{Store: mem, entered: make(chan struct{}, 1), gate: make(chan struct{})}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	var counted atomic.Int64
	h := NewHandler(tracker.New(tracker.Config{MaxPending: 1, RetryIn: 5 * time.Minute}, g),
		Options{Logger: log, Errors: ratelog.New(log, ratelog.Options{Count: func(string) { counted.Add(1) }})})
	f := &fixture{h: h}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.get(t, "10.0.0.1:1", announceURL(hash20("a"), hash20("p"), "1", "0&compact=1"))
	}()
	<-g.entered
	d, _ := f.get(t, "10.0.0.2:1", announceURL(hash20("a"), hash20("q"), "1", "0&compact=1"))
	f.get(t, "10.0.0.3:1", announceURL(hash20("a"), hash20("r"), "1", "0&compact=1"))
	close(g.gate)
	<-done
	if !strings.Contains(failure(d), "overloaded") || d["retry in"] != int64(5) || len(d) != 2 {
		t.Errorf("reply %v, want a failure reason with retry in 5", d)
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 || !strings.Contains(logs.String(), "kind=overload") {
		t.Errorf("logged %q, want one line of kind overload", logs.String())
	}
	if counted.Load() != 2 {
		t.Errorf("%d errors counted, want 2", counted.Load())
	}
}

// downStore fails every call, as Redis does when it is down.
type downStore struct{ store.Store }

var errDown = errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")

func (downStore) Announce(context.Context, store.Announce, []bittorrent.Peer) ([]bittorrent.Peer, bittorrent.Stats, error) {
	return nil, bittorrent.Stats{}, errDown
}

func (downStore) Scrape(context.Context, []bittorrent.InfoHash, []bittorrent.Stats) ([]bittorrent.Stats, error) {
	return nil, errDown
}

// TestStoreFailureLogged: a store failure is the client's "internal
// tracker error"; the first is logged at once (kind=store), the next ones
// within the interval are only counted.
func TestStoreFailureLogged(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	counts := map[string]int{}
	h := NewHandler(tracker.New(tracker.Config{}, downStore{}),
		Options{Logger: log, Errors: ratelog.New(log, ratelog.Options{Count: func(k string) { counts[k]++ }})})
	f := &fixture{h: h}
	for i, target := range []string{
		announceURL(hash20("a"), hash20("p"), "1", "0"),
		"/scrape?info_hash=" + esc(hash20("a")),
		announceURL(hash20("a"), hash20("p"), "1", "0"),
	} {
		logs.Reset()
		d, _ := f.get(t, "10.0.0.1:1", target)
		if failure(d) != "internal tracker error" {
			t.Errorf("%s: %v, want internal tracker error", target, d)
		}
		logged := strings.Contains(logs.String(), "kind=store") && strings.Contains(logs.String(), "connection refused")
		if logged != (i == 0) {
			t.Errorf("failure %d: logged %q", i, logs.String())
		}
	}
	if counts[ratelog.KindStore] != 3 {
		t.Errorf("counted %v, want 3 store errors", counts)
	}
}
