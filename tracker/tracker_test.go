package tracker_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/store"
	"trackd/store/memory"
	"trackd/tracker"
)

func TestIntervalFor(t *testing.T) {
	lo, hi := time.Minute, 30*time.Minute
	tests := []struct {
		peers  uint64
		target float64
		want   time.Duration
	}{
		{0, 1000, lo},
		{1000, 1000, lo},                // 1 s → clamped up
		{60000, 1000, 60 * time.Second}, // exactly the floor
		{120000, 1000, 120 * time.Second},
		{500000, 1000, 500 * time.Second},
		{1800000, 1000, hi},
		{1 << 40, 1000, hi}, // clamped down
		{1000, 10, 100 * time.Second},
		{1001, 10, 100 * time.Second}, // whole seconds
	}
	for _, tt := range tests {
		if got := tracker.IntervalFor(tt.peers, tt.target, lo, hi); got != tt.want {
			t.Errorf("IntervalFor(%d, %v) = %v, want %v", tt.peers, tt.target, got, tt.want)
		}
	}
}

// newTracker returns a tracker over a fresh in-memory store whose clock the
// test controls, keeping peer ids if cfg says so.
func newTracker(t *testing.T, cfg tracker.Config) (*tracker.Tracker, *time.Time) {
	t.Helper()
	now := time.Unix(1_700_000_000, 0)
	s := memory.New(store.Options{PeerLifetime: time.Hour, PeerIDs: cfg.PeerIDs, Now: func() time.Time { return now }})
	t.Cleanup(func() { s.Close() })
	return tracker.New(cfg, s), &now
}

// handedOut returns the peers of resp, whether in Peers or, compacted, in
// Compact4 and Compact6 (with zero ids, which compact peers do not carry).
func handedOut(t *testing.T, resp *tracker.AnnounceResponse) []bittorrent.Peer {
	t.Helper()
	if !resp.Compacted {
		if len(resp.Compact4)+len(resp.Compact6) != 0 {
			t.Errorf("compact peers in a response that is not Compacted")
		}
		return resp.Peers
	}
	if len(resp.Peers) != 0 || len(resp.Compact4)%6 != 0 || len(resp.Compact6)%18 != 0 {
		t.Fatalf("compacted response with %d peers, %d bytes of IPv4 and %d of IPv6", len(resp.Peers), len(resp.Compact4), len(resp.Compact6))
	}
	var ps []bittorrent.Peer
	for b := resp.Compact4; len(b) > 0; b = b[6:] {
		ps = append(ps, bittorrent.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), binary.BigEndian.Uint16(b[4:]))})
	}
	for b := resp.Compact6; len(b) > 0; b = b[18:] {
		ps = append(ps, bittorrent.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[:16])), binary.BigEndian.Uint16(b[16:]))})
	}
	return ps
}

func peerReq(ih byte, n int, left uint64) *tracker.AnnounceRequest {
	r := &tracker.AnnounceRequest{
		InfoHash: bittorrent.InfoHash{ih},
		Addr:     netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}), 6881),
		Left:     left,
		NumWant:  tracker.NumWantUnset,
		Compact:  true,
	}
	copy(r.PeerID[:], fmt.Sprintf("peer-%015d", n))
	return r
}

func TestIntervalGrowsWithSwarm(t *testing.T) {
	tr, _ := newTracker(t, tracker.Config{TargetAnnounceRate: 10, MinInterval: 60 * time.Second, MaxInterval: 1800 * time.Second})
	ctx := context.Background()
	var resp tracker.AnnounceResponse
	var got []time.Duration
	n := 0
	for _, size := range []int{1, 600, 1200, 6000, 20000, 30000} {
		for ; n < size; n++ {
			if err := tr.Announce(ctx, peerReq(byte(n%7), n, 1), &resp); err != nil {
				t.Fatal(err)
			}
		}
		got = append(got, resp.Interval)
	}
	want := []time.Duration{60 * time.Second, 60 * time.Second, 120 * time.Second, 600 * time.Second, 1800 * time.Second, 1800 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("interval after step %d = %v, want %v (all: %v)", i, got[i], want[i], got)
		}
	}
	if resp.MinInterval != resp.Interval/2 {
		t.Errorf("min interval %v, want half of %v", resp.MinInterval, resp.Interval)
	}
}

func TestMinAnnounceIntervalConfigured(t *testing.T) {
	tr, _ := newTracker(t, tracker.Config{MinAnnounceInterval: 10 * time.Second})
	var resp tracker.AnnounceResponse
	if err := tr.Announce(context.Background(), peerReq(1, 1, 0), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Interval != 60*time.Second || resp.MinInterval != 10*time.Second {
		t.Errorf("interval %v min %v, want 1m0s and 10s", resp.Interval, resp.MinInterval)
	}
}

func TestAnnounceRules(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		cfg     tracker.Config
		prepare int // leechers already in the swarm
		req     func(r *tracker.AnnounceRequest)
		peers   int
		err     error
	}{
		{name: "default numwant", prepare: 80, peers: 50},
		{name: "numwant honoured", prepare: 80, req: func(r *tracker.AnnounceRequest) { r.NumWant = 7 }, peers: 7},
		{name: "numwant zero", prepare: 80, req: func(r *tracker.AnnounceRequest) { r.NumWant = 0 }, peers: 0},
		{name: "numwant capped", cfg: tracker.Config{MaxNumWant: 20}, prepare: 80, req: func(r *tracker.AnnounceRequest) { r.NumWant = 1000 }, peers: 20},
		{name: "default above cap is capped", cfg: tracker.Config{MaxNumWant: 10, DefaultNumWant: 50}, prepare: 80, peers: 10},
		{name: "default within the reply's room", cfg: tracker.Config{DefaultNumWant: 50}, prepare: 80, req: func(r *tracker.AnnounceRequest) { r.MaxPeers = 30 }, peers: 30},
		{name: "numwant within the reply's room", prepare: 80, req: func(r *tracker.AnnounceRequest) { r.NumWant, r.MaxPeers = 70, 30 }, peers: 30},
		{name: "reply's room above numwant", prepare: 80, req: func(r *tracker.AnnounceRequest) { r.NumWant, r.MaxPeers = 7, 30 }, peers: 7},
		{name: "reply's room above the cap", cfg: tracker.Config{MaxNumWant: 20}, prepare: 80, req: func(r *tracker.AnnounceRequest) { r.NumWant, r.MaxPeers = 1000, 30 }, peers: 20},
		{name: "fewer than wanted", prepare: 3, peers: 3},
		{name: "stopped gets none", prepare: 80, req: func(r *tracker.AnnounceRequest) { r.Event = bittorrent.EventStopped }, peers: 0},
		{name: "require compact refuses plain", cfg: tracker.Config{RequireCompact: true}, req: func(r *tracker.AnnounceRequest) { r.Compact = false }, err: tracker.ErrCompactRequired},
		{name: "require compact takes no_peer_id", cfg: tracker.Config{RequireCompact: true}, prepare: 2, req: func(r *tracker.AnnounceRequest) { r.Compact, r.NoPeerID = false, true }, peers: 2},
		{name: "require compact takes compact", cfg: tracker.Config{RequireCompact: true}, prepare: 2, peers: 2},
		{name: "port zero", req: func(r *tracker.AnnounceRequest) { r.Addr = netip.AddrPortFrom(r.Addr.Addr(), 0) }, err: tracker.ErrPortZero},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, _ := newTracker(t, tt.cfg)
			var resp tracker.AnnounceResponse
			for i := 1; i <= tt.prepare; i++ {
				r := peerReq(1, i, 1)
				r.NumWant = 0
				if err := tr.Announce(ctx, r, &resp); err != nil {
					t.Fatal(err)
				}
			}
			r := peerReq(1, 100000, 1)
			if tt.req != nil {
				tt.req(r)
			}
			err := tr.Announce(ctx, r, &resp)
			if err != tt.err {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				if !tracker.IsClientError(err) {
					t.Errorf("%v is not a client error", err)
				}
				return
			}
			peers := handedOut(t, &resp)
			if len(peers) != tt.peers {
				t.Errorf("got %d peers, want %d", len(peers), tt.peers)
			}
			for _, p := range peers {
				if p.Addr == r.Addr {
					t.Errorf("requester in its own peer list")
				}
			}
		})
	}
}

func TestAnnounceCountsAndSeederRules(t *testing.T) {
	ctx := context.Background()
	tr, _ := newTracker(t, tracker.Config{})
	var resp tracker.AnnounceResponse
	// Two seeders, three leechers.
	for i := 1; i <= 5; i++ {
		left := uint64(1)
		if i <= 2 {
			left = 0
		}
		if err := tr.Announce(ctx, peerReq(1, i, left), &resp); err != nil {
			t.Fatal(err)
		}
	}
	if resp.Complete != 2 || resp.Incomplete != 3 {
		t.Fatalf("complete %d incomplete %d, want 2 and 3", resp.Complete, resp.Incomplete)
	}
	// A seeder is sent only the three leechers.
	if err := tr.Announce(ctx, peerReq(1, 1, 0), &resp); err != nil {
		t.Fatal(err)
	}
	if n := len(handedOut(t, &resp)); n != 3 {
		t.Errorf("seeder got %d peers, want the 3 leechers", n)
	}
	// A leecher completes: counted once, even when it says so twice.
	for range 2 {
		r := peerReq(1, 3, 0)
		r.Event = bittorrent.EventCompleted
		if err := tr.Announce(ctx, r, &resp); err != nil {
			t.Fatal(err)
		}
	}
	if resp.Complete != 3 || resp.Incomplete != 2 || resp.Downloaded != 1 {
		t.Errorf("after completion: complete %d incomplete %d downloaded %d, want 3 2 1", resp.Complete, resp.Incomplete, resp.Downloaded)
	}
	// Same ip:port, new peer id: replaced, not added.
	r := peerReq(1, 4, 1)
	r.PeerID[0] ^= 0xff
	if err := tr.Announce(ctx, r, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Complete+resp.Incomplete != 5 {
		t.Errorf("new peer id from same ip:port added a peer: %d+%d", resp.Complete, resp.Incomplete)
	}
	// Stopped removes.
	r.Event = bittorrent.EventStopped
	if err := tr.Announce(ctx, r, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Complete != 3 || resp.Incomplete != 1 {
		t.Errorf("after stop: %d %d, want 3 1", resp.Complete, resp.Incomplete)
	}
}

// TestPeerIDs checks that a tracker without peer ids marks every announce's
// response NoPeerID (so that a non-compact reply leaves them out) and hands
// out peers with zero ids, and that one with ids hands them out and passes
// the client's choice on; RequireCompact still looks at what the client
// sent, and the request is left as the client sent it.
func TestPeerIDs(t *testing.T) {
	tests := []struct {
		name                 string
		peerIDs, requireComp bool
		compact, noPeerID    bool
		wantErr              error
		wantNoPeerID         bool
	}{
		{"no ids, dict", false, false, false, false, nil, true},
		{"no ids, compact", false, false, true, false, nil, true},
		{"no ids, no_peer_id", false, false, false, true, nil, true},
		{"no ids, require compact, dict", false, true, false, false, tracker.ErrCompactRequired, false},
		{"no ids, require compact, no_peer_id", false, true, false, true, nil, true},
		{"ids, dict", true, false, false, false, nil, false},
		{"ids, no_peer_id", true, false, false, true, nil, true},
		{"ids, compact", true, false, true, false, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, _ := newTracker(t, tracker.Config{PeerIDs: tt.peerIDs, RequireCompact: tt.requireComp})
			ctx := context.Background()
			var resp tracker.AnnounceResponse
			other := peerReq(1, 1, 0)
			if err := tr.Announce(ctx, other, &resp); err != nil {
				t.Fatal(err)
			}
			r := peerReq(1, 2, 1)
			r.Compact, r.NoPeerID = tt.compact, tt.noPeerID
			err := tr.Announce(ctx, r, &resp)
			if err != tt.wantErr {
				t.Fatalf("Announce = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if resp.NoPeerID != tt.wantNoPeerID {
				t.Errorf("response NoPeerID = %v, want %v", resp.NoPeerID, tt.wantNoPeerID)
			}
			if r.NoPeerID != tt.noPeerID || r.Compact != tt.compact {
				t.Errorf("Announce changed the request: NoPeerID %v, Compact %v; sent %v, %v", r.NoPeerID, r.Compact, tt.noPeerID, tt.compact)
			}
			peers := handedOut(t, &resp)
			if len(peers) != 1 {
				t.Fatalf("%d peers returned, want 1", len(peers))
			}
			if resp.Compacted != tt.compact {
				t.Errorf("response Compacted = %v for a request with Compact %v", resp.Compacted, tt.compact)
			}
			if resp.Compacted {
				return // compact peers carry no ids
			}
			want := other.PeerID
			if !tt.peerIDs {
				want = bittorrent.PeerID{}
			}
			if resp.Peers[0].ID != want {
				t.Errorf("peer returned with id %q, want %q", resp.Peers[0].ID, want)
			}
		})
	}
}

func TestScrape(t *testing.T) {
	ctx := context.Background()
	tr, _ := newTracker(t, tracker.Config{MaxScrapeHashes: 2})
	var resp tracker.AnnounceResponse
	if err := tr.Announce(ctx, peerReq(1, 1, 0), &resp); err != nil {
		t.Fatal(err)
	}
	var sr tracker.ScrapeResponse
	if err := tr.Scrape(ctx, []bittorrent.InfoHash{{1}, {2}}, &sr); err != nil {
		t.Fatal(err)
	}
	if len(sr.Files) != 2 || sr.Files[0].Seeders != 1 || sr.Files[1] != (bittorrent.Stats{}) {
		t.Errorf("scrape = %+v", sr.Files)
	}
	if sr.MinRequestInterval != 60*time.Second {
		t.Errorf("min_request_interval %v", sr.MinRequestInterval)
	}
	err := tr.Scrape(ctx, []bittorrent.InfoHash{{1}, {2}, {3}}, &sr)
	if !tracker.IsClientError(err) {
		t.Errorf("3 hashes over a cap of 2: err = %v, want a client error", err)
	}
	n := 0
	if _, err := tr.ScrapeAll(ctx, func(bittorrent.InfoHash, bittorrent.Stats) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("ScrapeAll visited %d, err %v", n, err)
	}
}

func TestPeersExpire(t *testing.T) {
	ctx := context.Background()
	tr, now := newTracker(t, tracker.Config{})
	var resp tracker.AnnounceResponse
	tr.Announce(ctx, peerReq(1, 1, 0), &resp)
	*now = now.Add(time.Hour + time.Second)
	if err := tr.Announce(ctx, peerReq(1, 2, 1), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Complete != 0 || len(resp.Peers) != 0 {
		t.Errorf("expired seeder still there: complete %d, peers %d", resp.Complete, len(resp.Peers))
	}
}

func BenchmarkAnnounce(b *testing.B) {
	s := memory.New(store.Options{PeerLifetime: time.Hour})
	defer s.Close()
	tr := tracker.New(tracker.Config{}, s)
	ctx := context.Background()
	const peers = 100_000
	var resp tracker.AnnounceResponse
	reqs := make([]*tracker.AnnounceRequest, peers)
	for i := range reqs {
		reqs[i] = peerReq(byte(i%256), i, uint64(i%4))
		if err := tr.Announce(ctx, reqs[i], &resp); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := tr.Announce(ctx, reqs[i%peers], &resp); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func TestV4MappedIsSameSession(t *testing.T) {
	ctx := context.Background()
	tr, _ := newTracker(t, tracker.Config{})
	var resp tracker.AnnounceResponse
	r := peerReq(1, 1, 1)
	r.Addr = netip.MustParseAddrPort("[::ffff:10.0.0.1]:6881")
	if err := tr.Announce(ctx, r, &resp); err != nil {
		t.Fatal(err)
	}
	r.Addr = netip.MustParseAddrPort("10.0.0.1:6881")
	if err := tr.Announce(ctx, r, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Incomplete != 1 {
		t.Errorf("v4-mapped and plain IPv4 counted as %d sessions", resp.Incomplete)
	}
	other := peerReq(1, 2, 1)
	tr.Announce(ctx, other, &resp)
	if peers := handedOut(t, &resp); len(peers) != 1 || !peers[0].Addr.Addr().Is4() {
		t.Errorf("peer handed out as %v, want plain IPv4", peers)
	}
}

// hashSet is an Access that refuses the hashes in it.
type hashSet map[bittorrent.InfoHash]bool

func (s hashSet) Allowed(h bittorrent.InfoHash) bool { return !s[h] }

// TestAccess: an access list refuses announces for a hash with
// ErrNotAllowed, and hides the hash from scrapes and the full scrape, also
// when it was refused only after its peers joined.
func TestAccess(t *testing.T) {
	ctx := context.Background()
	refused := hashSet{}
	tr, _ := newTracker(t, tracker.Config{Access: refused})
	var resp tracker.AnnounceResponse
	for _, ih := range []byte{1, 2} {
		if err := tr.Announce(ctx, peerReq(ih, 1, 0), &resp); err != nil {
			t.Fatal(err)
		}
	}
	refused[bittorrent.InfoHash{2}] = true
	if err := tr.Announce(ctx, peerReq(2, 2, 0), &resp); err != tracker.ErrNotAllowed {
		t.Fatalf("refused hash: err %v, want ErrNotAllowed", err)
	}
	if !tracker.IsClientError(tracker.ErrNotAllowed) {
		t.Error("ErrNotAllowed is not a client error")
	}
	if err := tr.Announce(ctx, peerReq(1, 2, 0), &resp); err != nil {
		t.Fatalf("allowed hash: %v", err)
	}
	var sr tracker.ScrapeResponse
	if err := tr.Scrape(ctx, []bittorrent.InfoHash{{1}, {2}}, &sr); err != nil {
		t.Fatal(err)
	}
	if sr.Files[0].Seeders != 2 || sr.Files[1] != (bittorrent.Stats{}) {
		t.Errorf("scrape %+v: want the allowed hash counted and the refused one zero", sr.Files)
	}
	var seen []bittorrent.InfoHash
	tr.ScrapeAll(ctx, func(h bittorrent.InfoHash, _ bittorrent.Stats) error { seen = append(seen, h); return nil })
	if len(seen) != 1 || seen[0] != (bittorrent.InfoHash{1}) {
		t.Errorf("full scrape lists %v, want only the allowed hash", seen)
	}
}

// gatedStore holds every announce until its gate opens: a store that waits
// on the network, as Redis does when it is slow.
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

// TestOverload: with MaxPending requests waiting on the store, one more is
// refused at once with an OverloadError (not a client error), and the
// interval handed out doubles for a while.
func TestOverload(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(store.Options{PeerLifetime: time.Hour})
	defer mem.Close()
	g := &gatedStore{Store: mem, entered: make(chan struct{}, 8), gate: make(chan struct{})}
	tr := tracker.New(tracker.Config{MaxPending: 2, RetryIn: 5 * time.Minute}, g)
	if iv, _, _ := tr.Intervals(ctx); iv != time.Minute {
		t.Fatalf("interval %v before", iv)
	}
	errs := make(chan error, 2)
	for i := range 2 {
		go func() {
			var resp tracker.AnnounceResponse
			errs <- tr.Announce(ctx, peerReq(1, i, 0), &resp)
		}()
		<-g.entered
	}
	var resp tracker.AnnounceResponse
	start := time.Now()
	err := tr.Announce(ctx, peerReq(1, 9, 0), &resp)
	var oe *tracker.OverloadError
	if !errors.As(err, &oe) || time.Since(start) > time.Second {
		t.Fatalf("third announce: %v after %v; want an OverloadError at once", err, time.Since(start))
	}
	if tracker.IsClientError(err) || oe.RetryInMinutes() != 5 || err.Error() != "tracker overloaded: retry in 5 minutes" {
		t.Errorf("overload error %q, retry in %d", err, oe.RetryInMinutes())
	}
	var sr tracker.ScrapeResponse
	if err := tr.Scrape(ctx, []bittorrent.InfoHash{{1}}, &sr); !errors.As(err, &oe) {
		t.Errorf("scrape while saturated: %v", err)
	}
	if !tr.Overloaded() {
		t.Error("Overloaded() false after a refusal")
	}
	close(g.gate)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Announce(ctx, peerReq(1, 3, 0), &resp); err != nil {
		t.Fatalf("after the load: %v", err)
	}
	if resp.Interval != 2*time.Minute {
		t.Errorf("interval %v right after an overload, want doubled (2m)", resp.Interval)
	}
	if iv, _ := tr.IntervalsFor(0); iv != 2*time.Minute {
		t.Errorf("IntervalsFor(0) = %v right after an overload, want doubled (2m)", iv)
	}
}

func TestOverloadRetryInAtLeastAMinute(t *testing.T) {
	for _, tc := range []struct {
		in   time.Duration
		want int64
	}{{0, 2}, {time.Second, 1}, {90 * time.Second, 1}, {10 * time.Minute, 10}} {
		tr := tracker.New(tracker.Config{RetryIn: tc.in}, nil)
		oe := &tracker.OverloadError{RetryIn: tr.Config().RetryIn}
		if got := oe.RetryInMinutes(); got != tc.want {
			t.Errorf("RetryIn %v: %d minutes, want %d", tc.in, got, tc.want)
		}
	}
}

// TestMemoryFull: a store at its memory bound refuses a new torrent, then
// a new peer; the tracker says so with an OverloadError (not a client
// error, with "retry in") and does not double the interval for it, and
// the known peers' announces still work.
func TestMemoryFull(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(store.Options{PeerLifetime: time.Hour})
	defer mem.Close()
	tr := tracker.New(tracker.Config{RetryIn: 3 * time.Minute}, mem)
	var resp tracker.AnnounceResponse
	if err := tr.Announce(ctx, peerReq(1, 1, 0), &resp); err != nil {
		t.Fatal(err)
	}
	mem.SetMemoryLimit(1)
	for _, tc := range []struct {
		req  *tracker.AnnounceRequest
		want string
	}{
		{peerReq(2, 1, 0), tracker.MsgNoNewTorrents},
		{peerReq(1, 2, 0), tracker.MsgNoNewPeers},
	} {
		err := tr.Announce(ctx, tc.req, &resp)
		var oe *tracker.OverloadError
		if !errors.As(err, &oe) || err.Error() != tc.want || oe.RetryInMinutes() != 3 || tracker.IsClientError(err) {
			t.Fatalf("announce at the bound: %v, want an OverloadError %q", err, tc.want)
		}
	}
	if tr.Overloaded() {
		t.Error("a store at its bound counts as overload: the interval would double")
	}
	if err := tr.Announce(ctx, peerReq(1, 1, 0), &resp); err != nil || resp.Interval != time.Minute {
		t.Fatalf("re-announce of a known peer at the bound: %v, interval %v", err, resp.Interval)
	}
}

// TestIntervalsFor: the policy alone, for swarms outside the store, is the
// policy Intervals applies to the store's totals.
func TestIntervalsFor(t *testing.T) {
	tr, _ := newTracker(t, tracker.Config{TargetAnnounceRate: 10, MinAnnounceInterval: 90 * time.Second})
	tests := []struct {
		peers         uint64
		interval, min time.Duration
	}{
		{0, time.Minute, 30 * time.Second}, // min interval above the interval: half of it
		{1000, 100 * time.Second, 90 * time.Second},
		{1 << 30, 30 * time.Minute, 90 * time.Second},
	}
	for _, tt := range tests {
		iv, mi := tr.IntervalsFor(tt.peers)
		if iv != tt.interval || mi != tt.min {
			t.Errorf("IntervalsFor(%d) = %v, %v; want %v, %v", tt.peers, iv, mi, tt.interval, tt.min)
		}
	}
	iv, mi, err := tr.Intervals(context.Background())
	if wiv, wmi := tr.IntervalsFor(0); err != nil || iv != wiv || mi != wmi {
		t.Errorf("Intervals of an empty store = %v, %v, %v; IntervalsFor(0) = %v, %v", iv, mi, err, wiv, wmi)
	}
}

// TestAllowed: the access list's answer, for frontends whose swarms live
// outside the store.
func TestAllowed(t *testing.T) {
	open, _ := newTracker(t, tracker.Config{})
	if err := open.Allowed(bittorrent.InfoHash{1}); err != nil {
		t.Errorf("open tracker: %v", err)
	}
	refused := hashSet{bittorrent.InfoHash{2}: true}
	tr, _ := newTracker(t, tracker.Config{Access: refused})
	if err := tr.Allowed(bittorrent.InfoHash{1}); err != nil {
		t.Errorf("allowed hash: %v", err)
	}
	if err := tr.Allowed(bittorrent.InfoHash{2}); err != tracker.ErrNotAllowed {
		t.Errorf("refused hash: %v, want ErrNotAllowed", err)
	}
}

// onlyStore hides every ability of the store it wraps.
type onlyStore struct{ store.Store }

// TestCompactAnswersAsPeers checks that a compact request is answered the
// same whether the store hands out compact peers (store.CompactAnnouncer)
// or bittorrent.Peer values: the same swarm, asked for every peer, gives
// the same peers of both families, and a request that is not compact gets
// Peers.
func TestCompactAnswersAsPeers(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	mem := memory.New(store.Options{PeerLifetime: time.Hour, Now: func() time.Time { return now }})
	t.Cleanup(func() { mem.Close() })
	withAbility, without := tracker.New(tracker.Config{}, mem), tracker.New(tracker.Config{}, onlyStore{mem})
	ctx := context.Background()
	var resp tracker.AnnounceResponse
	for n := 1; n <= 40; n++ {
		r := peerReq(7, n, uint64(n%3))
		if n%4 == 0 {
			r.Addr = netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(n)}), uint16(1000+n))
		}
		if err := withAbility.Announce(ctx, r, &resp); err != nil {
			t.Fatal(err)
		}
	}
	key := func(ps []bittorrent.Peer) []string {
		var ks []string
		for _, p := range ps {
			ks = append(ks, p.Addr.String())
		}
		slices.Sort(ks)
		return ks
	}
	r := peerReq(7, 100, 1)
	r.NumWant = 200
	if err := withAbility.Announce(ctx, r, &resp); err != nil {
		t.Fatal(err)
	}
	if !resp.Compacted || len(resp.Compact4) == 0 || len(resp.Compact6) == 0 {
		t.Fatalf("compact request to a CompactAnnouncer: Compacted %v, %d and %d bytes", resp.Compacted, len(resp.Compact4), len(resp.Compact6))
	}
	got := key(handedOut(t, &resp))
	if err := without.Announce(ctx, r, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Compacted {
		t.Fatal("a store without the ability answered Compacted")
	}
	if want := key(resp.Peers); !slices.Equal(got, want) || len(got) != 40 {
		t.Errorf("compacted peers %v, want %v (40)", got, want)
	}
	r.Compact = false
	if err := withAbility.Announce(ctx, r, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Compacted || len(resp.Compact4)+len(resp.Compact6) != 0 || len(resp.Peers) != 40 {
		t.Errorf("request without compact: Compacted %v, %d peers", resp.Compacted, len(resp.Peers))
	}
}
