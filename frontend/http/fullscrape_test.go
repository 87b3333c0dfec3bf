package http

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"trackd/bencode"
	"trackd/bittorrent"
	"trackd/store"
	"trackd/store/memory"
	"trackd/tracker"
)

// waitFullScrape waits (at most 10 s) for a build of the full scrape
// that began at or after since, and returns it.
func waitFullScrape(t testing.TB, h *Handler, since ...time.Time) *scrapeBuild {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b := h.full.last.Load(); b != nil && (len(since) == 0 || !b.at.Before(since[0])) {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatal("no full scrape built within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// syntheticBuild encodes a full scrape of n torrents with random info
// hashes and counts, without a store.
func syntheticBuild(t testing.TB, n int, seed uint64) *scrapeBuild {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	var c collector
	ctx := context.Background()
	for range n {
		var ih bittorrent.InfoHash
		for i := range ih {
			ih[i] = byte(rng.Uint32())
		}
		s := bittorrent.Stats{Seeders: rng.Uint32N(50), Leechers: rng.Uint32N(50), Downloaded: rng.Uint32N(1000)}
		if err := c.add(ctx, ih, s); err != nil {
			t.Fatal(err)
		}
	}
	b, err := c.encode(ctx, time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fullScrapeReply asks h for the full scrape, accepting gzip or not, and
// returns the reply and its body uncompressed (read from the stream, if
// it is one, which it closes).
func fullScrapeReply(t testing.TB, h *Handler, acceptGzip bool) (reply, []byte) {
	t.Helper()
	r := request{path: "/scrape", remote: netip.MustParseAddrPort("10.0.0.1:1")}
	if acceptGzip {
		r.acceptEncoding = []string{"gzip"}
	}
	rep := h.serve(context.Background(), newState(), &r)
	switch {
	case rep.stream != nil:
		defer rep.stream.Close()
		body, err := io.ReadAll(rep.stream)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(body)) != rep.length {
			t.Fatalf("stream of %d bytes, said %d", len(body), rep.length)
		}
		return rep, body
	case rep.gzip:
		zr, err := gzip.NewReader(bytes.NewReader(rep.body))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		return rep, body
	}
	return rep, rep.body
}

// decodeDict decodes a bencoded dictionary, canonical (keys sorted, once).
func decodeDict(t testing.TB, b []byte) map[string]any {
	t.Helper()
	v, err := bencode.Decode(b)
	if err != nil {
		t.Fatalf("reply %.200q: %v", b, err)
	}
	d, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("reply %.200q is not a dictionary", b)
	}
	return d
}

// referenceFullScrape encodes the full scrape of the given torrents the
// simple way: a map of everything, marshaled by the bencode package.
func referenceFullScrape(t testing.TB, all map[bittorrent.InfoHash]bittorrent.Stats, minInterval int64) []byte {
	t.Helper()
	files := map[string]any{}
	for ih, s := range all {
		files[string(ih[:])] = map[string]any{
			"complete": int64(s.Seeders), "incomplete": int64(s.Leechers), "downloaded": int64(s.Downloaded),
		}
	}
	b, err := bencode.Marshal(map[string]any{
		"files": files,
		"flags": map[string]any{"min_request_interval": minInterval},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFullScrapeEmpty: files is an empty dictionary, not a list.
func TestFullScrapeEmpty(t *testing.T) {
	f := newFixture(t, tracker.Config{}, Options{FullScrape: true, FullScrapeInterval: 30 * time.Second})
	waitFullScrape(t, f.h)
	for _, gz := range []bool{false, true} {
		rep, body := fullScrapeReply(t, f.h, gz)
		if got := string(body); got != "d5:filesde5:flagsd20:min_request_intervali60eee" {
			t.Errorf("gzip %v: empty full scrape = %q", gz, got)
		}
		if rep.gzip != gz || !rep.vary || rep.status != 200 {
			t.Errorf("gzip %v: reply gzip %v vary %v status %d", gz, rep.gzip, rep.vary, rep.status)
		}
	}
	// Through net/http: the header fields.
	d, res := f.get(t, "10.0.0.1:1", "/scrape", "Accept-Encoding", "gzip, deflate")
	if res.Header.Get("Content-Encoding") != "gzip" || res.Header.Get("Vary") != "Accept-Encoding" {
		t.Errorf("header %v", res.Header)
	}
	if _, ok := d["files"].(map[string]any); !ok {
		t.Errorf("reply %v", d)
	}
	r := request{path: "/scrape", remote: netip.MustParseAddrPort("10.0.0.1:1"), acceptEncoding: []string{"gzip;q=0"}}
	if rep := f.h.serve(context.Background(), newState(), &r); rep.stream == nil || rep.gzip {
		t.Error("gzip;q=0: not a plain stream")
	} else {
		rep.stream.Close()
	}
}

// TestFullScrapeReference: the full scrape of a store with hashes of every
// kind (zero bytes, trailing spaces, 0xff, many random ones over several
// blocks) is byte for byte the reference encoding, gzipped or streamed;
// the access list still hides what it refuses.
func TestFullScrapeReference(t *testing.T) {
	clock := &testClock{now: time.Unix(1_700_000_000, 0)}
	mem := memory.New(store.Options{PeerLifetime: time.Hour, Now: clock.Now})
	defer mem.Close()
	denied := bittorrent.InfoHash{0: 'D', 1: 'E', 2: 'N', 3: 'Y'}
	h := NewHandler(tracker.New(tracker.Config{Access: denyOne(denied)}, mem),
		Options{FullScrape: true, FullScrapeInterval: time.Minute, Now: clock.Now})
	defer h.Close()
	waitFullScrape(t, h)

	want := map[bittorrent.InfoHash]bittorrent.Stats{}
	announce := func(ih bittorrent.InfoHash, peer int, left int) {
		t.Helper()
		a := store.Announce{InfoHash: ih, Peer: bittorrent.Peer{
			ID:   bittorrent.PeerID{0: byte(peer), 1: byte(peer >> 8), 2: byte(peer >> 16)},
			Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(peer >> 16), byte(peer >> 8), byte(peer)}), 6881),
		}, Seeder: left == 0}
		if _, _, err := mem.Announce(context.Background(), a, nil); err != nil {
			t.Fatal(err)
		}
	}
	spaces := hash20("0123456789012345678 ")
	spaces[19] = ' '
	special := []bittorrent.InfoHash{{}, spaces, {0: 0xff, 19: 0xff}, {19: 1}, hash20("a")}
	for i, ih := range special {
		for p := range i + 1 {
			announce(ih, 1000*i+p, p%2)
		}
		want[ih] = bittorrent.Stats{Seeders: uint32((i + 2) / 2), Leechers: uint32((i + 1) / 2)}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 3*blockSize + 17 {
		var ih bittorrent.InfoHash
		for j := range ih {
			ih[j] = byte(rng.Uint32())
		}
		announce(ih, i, 0)
		want[ih] = bittorrent.Stats{Seeders: 1}
	}
	announce(denied, 1, 0)

	clock.Advance(time.Minute)
	now := clock.Now()
	if rep, _ := fullScrapeReply(t, h, true); !rep.gzip {
		t.Fatalf("stale cache: %q", rep.body)
	}
	b := waitFullScrape(t, h, now)
	if b.torrents != len(want) {
		t.Errorf("build of %d torrents, want %d", b.torrents, len(want))
	}
	for _, gz := range []bool{true, false} {
		rep, body := fullScrapeReply(t, h, gz)
		// min_request_interval follows the announce rate, high here
		flags, _ := decodeDict(t, body)["flags"].(map[string]any)
		iv, _ := flags["min_request_interval"].(int64)
		if iv < 60 {
			t.Errorf("min_request_interval %v", flags)
		}
		ref := referenceFullScrape(t, want, iv)
		if !bytes.Equal(body, ref) {
			i := 0
			for i < len(body) && i < len(ref) && body[i] == ref[i] {
				i++
			}
			t.Errorf("gzip %v: full scrape of %d bytes differs from the reference of %d at %d: %q vs %q", gz, len(body), len(ref), i, body[max(i-50, 0):min(i+50, len(body))], ref[max(i-50, 0):min(i+50, len(ref))])
		}
		if gz && int64(len(body)) != b.plain {
			t.Errorf("plain length recorded %d, is %d", b.plain, len(body))
		}
		if !gz && rep.length != int64(len(ref)) {
			t.Errorf("stream length %d, want %d", rep.length, len(ref))
		}
		d := decodeDict(t, body)
		if files := d["files"].(map[string]any); len(files) != len(want) {
			t.Errorf("%d files, want %d", len(files), len(want))
		}
	}
	t.Logf("%d torrents: %d bytes, %d gzipped (%.1f a torrent)", b.torrents, b.plain, len(b.gz), float64(len(b.gz))/float64(b.torrents))
}

type denyOne bittorrent.InfoHash

func (d denyOne) Allowed(h bittorrent.InfoHash) bool { return h != bittorrent.InfoHash(d) }

// TestFullScrapeMerge: the blocks are merged in order whatever their
// sizes, and a torrent a store lists twice is encoded once.
func TestFullScrapeMerge(t *testing.T) {
	for _, n := range []int{0, 1, 2, blockSize - 1, blockSize, blockSize + 1, 2*blockSize + 5} {
		var c collector
		rng := rand.New(rand.NewPCG(uint64(n), 9))
		var hashes []bittorrent.InfoHash
		for range n {
			var ih bittorrent.InfoHash
			for j := range 4 { // few distinct first bytes: many ties
				ih[j] = byte(rng.Uint32N(3))
			}
			for j := 4; j < 20; j++ {
				ih[j] = byte(rng.Uint32())
			}
			hashes = append(hashes, ih)
			c.add(context.Background(), ih, bittorrent.Stats{Seeders: 1})
		}
		if n > 0 { // one listed twice
			c.add(context.Background(), hashes[n/2], bittorrent.Stats{Seeders: 1})
		}
		b, err := c.encode(context.Background(), time.Minute, 0)
		if err != nil {
			t.Fatal(err)
		}
		zr, _ := gzip.NewReader(bytes.NewReader(b.gz))
		body, _ := io.ReadAll(zr)
		all := map[bittorrent.InfoHash]bittorrent.Stats{}
		for _, ih := range hashes {
			all[ih] = bittorrent.Stats{Seeders: 1}
		}
		if !bytes.Equal(body, referenceFullScrape(t, all, 60)) {
			t.Errorf("%d torrents: not the reference encoding", n)
		}
	}
}

// gatedScrapeStore holds ScrapeAll, when armed, until its gate opens or
// the context ends.
type gatedScrapeStore struct {
	store.Store
	mu      sync.Mutex
	armed   bool
	fail    error
	entered chan struct{}
	gate    chan struct{}
}

func newGatedScrapeStore(s store.Store) *gatedScrapeStore {
	return &gatedScrapeStore{Store: s, entered: make(chan struct{}, 1), gate: make(chan struct{})}
}

func (g *gatedScrapeStore) arm() {
	g.mu.Lock()
	g.armed, g.gate = true, make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedScrapeStore) open() {
	g.mu.Lock()
	if g.armed {
		close(g.gate)
		g.armed = false
	}
	g.mu.Unlock()
}

func (g *gatedScrapeStore) ScrapeAll(ctx context.Context, fn func(bittorrent.InfoHash, bittorrent.Stats) error) error {
	g.mu.Lock()
	armed, gate, fail := g.armed, g.gate, g.fail
	g.mu.Unlock()
	if fail != nil {
		return fail
	}
	if armed {
		select {
		case g.entered <- struct{}{}:
		default:
		}
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Store.ScrapeAll(ctx, fn)
}

// TestFullScrapeStale: a request that finds the cache stale gets the last
// build at once, also while the new build is held up, and starts one
// build only; within the interval nothing is rebuilt; then the new build
// is served.
func TestFullScrapeStale(t *testing.T) {
	clock := &testClock{now: time.Unix(1_700_000_000, 0)}
	mem := memory.New(store.Options{PeerLifetime: time.Hour, Now: clock.Now})
	defer mem.Close()
	g := newGatedScrapeStore(mem)
	g.arm()
	h := NewHandler(tracker.New(tracker.Config{}, g), Options{FullScrape: true, FullScrapeInterval: 30 * time.Second, Now: clock.Now})
	defer h.Close()

	// Before the first build: a failure with "retry in", at once.
	<-g.entered
	rep, body := fullScrapeReply(t, h, true)
	if d := decodeDict(t, body); !strings.Contains(failure(d), "being prepared") || d["retry in"] != int64(1) || rep.gzip {
		t.Errorf("before the first build: %q", body)
	}
	g.open()
	first := waitFullScrape(t, h)

	st := newState()
	for i := range 3 {
		r := request{path: "/announce", remote: netip.MustParseAddrPort("10.0.0.1:1"),
			query: announceURL(hash20(fmt.Sprint("t", i)), hash20("p"), "1", "0")[len("/announce?"):]}
		h.serve(context.Background(), st, &r)
	}
	// Within the interval: the same build, no rebuild asked for.
	clock.Advance(29 * time.Second)
	for range 3 {
		if rep, _ := fullScrapeReply(t, h, true); &rep.body[0] != &first.gz[0] {
			t.Fatal("a different build within the interval")
		}
	}
	time.Sleep(20 * time.Millisecond)
	if h.full.last.Load() != first {
		t.Fatal("rebuilt within the interval")
	}

	// Stale: the old build, at once, while the new one is held up.
	g.arm()
	clock.Advance(time.Second)
	for i := range 5 {
		start := time.Now()
		rep, body := fullScrapeReply(t, h, i%2 == 0)
		if d := decodeDict(t, body); len(d["files"].(map[string]any)) != 0 {
			t.Fatalf("request %d during the build: %q, want the last (empty) build", i, body)
		}
		if rep.gzip && &rep.body[0] != &first.gz[0] {
			t.Fatal("not the last build's bytes")
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("request %d during the build took %v", i, d)
		}
		if i == 0 {
			<-g.entered // the builder is held up now
		}
	}
	g.open()
	b := waitFullScrape(t, h, clock.Now())
	_, body = fullScrapeReply(t, h, false)
	if n := len(decodeDict(t, body)["files"].(map[string]any)); n != 3 || b.torrents != 3 {
		t.Errorf("after the rebuild: %d files (build of %d), want 3", n, b.torrents)
	}
	// One rebuild for the five stale requests: nothing more is asked.
	time.Sleep(20 * time.Millisecond)
	if h.full.last.Load() != b {
		t.Error("rebuilt again though the last build is fresh")
	}
}

// TestFullScrapeStreamBound: at most FullScrapeStreams uncompressed
// streams at once; one more gets a failure with "retry in", and a closed
// stream (closed twice, too) frees one slot. Gzip is never refused.
func TestFullScrapeStreamBound(t *testing.T) {
	h := testHandler(t, Options{FullScrape: true, FullScrapeInterval: time.Hour, FullScrapeStreams: 2})
	waitFullScrape(t, h)
	st := newState()
	r := request{path: "/scrape", remote: netip.MustParseAddrPort("10.0.0.1:1")}
	a := h.serve(context.Background(), st, &r)
	b := h.serve(context.Background(), st, &r)
	if a.stream == nil || b.stream == nil {
		t.Fatalf("streams %v %v", a.stream, b.stream)
	}
	refused := func() {
		t.Helper()
		c := h.serve(context.Background(), st, &r)
		if c.stream != nil {
			t.Fatal("a third stream at once")
		}
		d := decodeDict(t, c.body)
		if !strings.Contains(failure(d), "too many uncompressed") || d["retry in"] != int64(1) {
			t.Errorf("third stream: %q", c.body)
		}
	}
	refused()
	if rep, body := fullScrapeReply(t, h, true); !rep.gzip || len(body) == 0 {
		t.Error("gzip refused while the streams are taken")
	}
	a.stream.Close()
	a.stream.Close() // a second Close frees nothing more
	c := h.serve(context.Background(), st, &r)
	if c.stream == nil {
		t.Fatalf("no stream after one was closed: %q", c.body)
	}
	refused()
	b.stream.Close()
	c.stream.Close()
	if _, body := fullScrapeReply(t, h, false); len(body) == 0 {
		t.Error("no stream once all were closed")
	}
}

// TestFullScrapeConcurrent: many requests at once, gzipped and streamed,
// while announces come in and the cache goes stale again and again: every
// reply is a whole, canonical full scrape (run with -race).
func TestFullScrapeConcurrent(t *testing.T) {
	f := newFixture(t, tracker.Config{}, Options{FullScrape: true, FullScrapeInterval: time.Second, FullScrapeStreams: 100})
	waitFullScrape(t, f.h)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() { // announces, and time passing
		defer wg.Done()
		st := newState()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r := request{path: "/announce", remote: netip.MustParseAddrPort("10.0.0.1:1"),
				query: announceURL(hash20(fmt.Sprint("c", i)), hash20("p"), "1", "0")[len("/announce?"):]}
			f.h.serve(context.Background(), st, &r)
			if i%50 == 0 {
				f.clock.Advance(time.Second)
			}
		}
	}()
	errs := make(chan error, 8)
	var readers sync.WaitGroup
	for g := range 8 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for i := range 30 {
				_, body := fullScrapeReply(t, f.h, (g+i)%2 == 0)
				v, err := bencode.Decode(body)
				d, _ := v.(map[string]any)
				if _, ok := d["files"].(map[string]any); err != nil || !ok {
					errs <- fmt.Errorf("reader %d, request %d: %.100q: %v", g, i, body, err)
					return
				}
			}
		}()
	}
	readers.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestFullScrapeClose: Close stops the builder, also in the middle of a
// build held up in the store, and leaves no goroutine behind; the last
// build is still served after it.
func TestFullScrapeClose(t *testing.T) {
	mem := memory.New(store.Options{PeerLifetime: time.Hour})
	defer mem.Close()
	base := runtime.NumGoroutine()
	for _, held := range []bool{false, true} {
		g := newGatedScrapeStore(mem)
		h := NewHandler(tracker.New(tracker.Config{}, g), Options{FullScrape: true, FullScrapeInterval: 0})
		waitFullScrape(t, h)
		if held {
			g.arm()
			fullScrapeReply(t, h, true) // stale at once: a rebuild starts
			<-g.entered
		}
		done := make(chan struct{})
		go func() { h.Close(); h.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("held %v: Close did not return", held)
		}
		if rep, _ := fullScrapeReply(t, h, true); !rep.gzip {
			t.Errorf("held %v: after Close: %q", held, rep.body)
		}
	}
	// A Handler without full scrape has nothing to stop.
	NewHandler(tracker.New(tracker.Config{}, mem), Options{}).Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("%d goroutines after Close, %d before", n, base)
	}
}

// TestFullScrapeBuildFails: a store that fails the walk leaves requests
// with the last build (or "retry in" before the first), logs the failure,
// and is not walked again at the rate of requests.
func TestFullScrapeBuildFails(t *testing.T) {
	mem := memory.New(store.Options{PeerLifetime: time.Hour})
	defer mem.Close()
	g := newGatedScrapeStore(mem)
	g.fail = errors.New("store down")
	var calls countingStore
	calls.gatedScrapeStore = g
	h := NewHandler(tracker.New(tracker.Config{}, &calls), Options{FullScrape: true, FullScrapeInterval: 0})
	defer h.Close()
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		_, body := fullScrapeReply(t, h, true)
		if d := decodeDict(t, body); d["retry in"] != int64(1) {
			t.Fatalf("with the store down: %q", body)
		}
		time.Sleep(time.Millisecond)
	}
	if n := calls.n(); n < 1 || n > 2 {
		t.Errorf("%d walks in 300 ms with the store failing, want 1 (and a backoff of a second)", n)
	}
}

type countingStore struct {
	*gatedScrapeStore
	mu    sync.Mutex
	walks int
}

func (c *countingStore) ScrapeAll(ctx context.Context, fn func(bittorrent.InfoHash, bittorrent.Stats) error) error {
	c.mu.Lock()
	c.walks++
	c.mu.Unlock()
	return c.gatedScrapeStore.ScrapeAll(ctx, fn)
}

func (c *countingStore) n() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.walks
}

// BenchmarkFullScrapeBuild: sorting and encoding a full scrape of random
// info hashes (the walk of the store aside), at the gzip level in use.
// bytes/torrent is the gzipped size.
func BenchmarkFullScrapeBuild(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			hashes := make([]bittorrent.InfoHash, n)
			for i := range hashes {
				for j := range hashes[i] {
					hashes[i][j] = byte(rng.Uint32())
				}
			}
			var gz int
			for b.Loop() {
				var c collector
				for i := range hashes {
					c.add(context.Background(), hashes[i], bittorrent.Stats{Seeders: uint32(i % 7), Leechers: uint32(i % 3), Downloaded: uint32(i % 100)})
				}
				sb, err := c.encode(context.Background(), time.Minute, 0)
				if err != nil {
					b.Fatal(err)
				}
				gz = len(sb.gz)
			}
			b.ReportMetric(float64(gz)/float64(n), "bytes/torrent")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/torrent")
		})
	}
}

// BenchmarkFullScrapeStream: the CPU an uncompressed stream costs, reading
// a full scrape of random info hashes whole. bytes/torrent is the plain
// size.
func BenchmarkFullScrapeStream(b *testing.B) {
	const n = 1_000_000
	sb := syntheticBuild(b, n, 5)
	h := &Handler{}
	h.full.streams = make(chan struct{}, 1)
	buf := make([]byte, 64<<10)
	for b.Loop() {
		s, ok := h.full.openPlain(sb)
		if !ok {
			b.Fatal("no slot")
		}
		for {
			if _, err := s.Read(buf); err != nil {
				break
			}
		}
		s.Close()
	}
	b.ReportMetric(float64(sb.plain)/n, "bytes/torrent")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/torrent")
}

// TestFullScrapeOnDemand: even with full_scrape_interval 0, the store is
// walked once at start and then once per request that finds the build
// stale, not in a loop while nobody asks.
func TestFullScrapeOnDemand(t *testing.T) {
	mem := memory.New(store.Options{PeerLifetime: time.Hour})
	defer mem.Close()
	c := &countingStore{gatedScrapeStore: newGatedScrapeStore(mem)}
	h := NewHandler(tracker.New(tracker.Config{}, c), Options{FullScrape: true, FullScrapeInterval: 0})
	defer h.Close()
	first := waitFullScrape(t, h)
	time.Sleep(100 * time.Millisecond)
	if n := c.n(); n != 1 {
		t.Fatalf("%d walks with no request, want 1", n)
	}
	fullScrapeReply(t, h, true)
	deadline := time.Now().Add(5 * time.Second)
	for h.full.last.Load() == first && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if n := c.n(); n != 2 {
		t.Errorf("%d walks after one request, want 2", n)
	}
}
