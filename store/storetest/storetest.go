// Package storetest is the conformance suite every store.Store backend runs:
// it pins down, through the interface alone, the semantics written in the doc
// comments of package store.
//
// A backend's test calls Run with a function that opens a fresh, empty store
// for the given options:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, opts store.Options) store.Store {
//			return memory.New(opts)
//		})
//	}
//
// The suite runs twice, with store.Options.PeerIDs false (subtest
// NoPeerIDs: returned peers must carry a zero id) and true (subtest
// PeerIDs: returned peers must carry the id they last announced with). A
// store that is a store.CompactAnnouncer runs it a third time (subtest
// Compact, without peer ids), every announce made through AnnounceCompact
// and its compact peers read back.
//
// The suite closes every store it opens (and checks that Close returns nil),
// so open must not close it. Time is a fake clock passed in opts.Now: the
// suite never sleeps, so a backend must read the time only through opts.Now.
// Subtests run one after another, never in parallel, so a backend that keeps
// its data outside the process (Redis) may reuse one database as long as open
// empties it.
//
// Totals may lag (see store.Store): a backend that brings them up to date in
// the background implements store.Settler, and the suite settles it before
// each check of Totals.
package storetest

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/store"
)

// Lifetime is the store.Options.PeerLifetime every store of the suite is
// opened with.
const Lifetime = 30 * time.Minute

// Run runs the conformance suite as subtests of t, once without peer ids
// and once with. open must return a new, empty store configured with opts.
func Run(t *testing.T, open func(t *testing.T, opts store.Options) store.Store) {
	t.Run("NoPeerIDs", func(t *testing.T) { run(t, store.Options{}, open) })
	t.Run("PeerIDs", func(t *testing.T) { run(t, store.Options{PeerIDs: true}, open) })
	t.Run("Compact", func(t *testing.T) {
		probe := open(t, store.Options{PeerLifetime: Lifetime, Now: newClock().Now})
		_, ok := probe.(store.CompactAnnouncer)
		if err := probe.Close(); err != nil {
			t.Fatalf("Close = %v, want nil", err)
		}
		if !ok {
			t.Skip("not a store.CompactAnnouncer")
		}
		run(t, store.Options{}, func(t *testing.T, opts store.Options) store.Store {
			s := open(t, opts)
			if mb, ok := s.(store.MemoryBounded); ok {
				return compactBounded{compactStore{s}, mb}
			}
			return compactStore{s}
		})
	})
}

// compactStore makes every Announce of the store it wraps, a
// store.CompactAnnouncer, through AnnounceCompact, and reads the compact
// peers back as bittorrent.Peer values without ids.
type compactStore struct{ store.Store }

func (c compactStore) Announce(ctx context.Context, a store.Announce, peers []bittorrent.Peer) ([]bittorrent.Peer, bittorrent.Stats, error) {
	v4, v6, st, err := c.Store.(store.CompactAnnouncer).AnnounceCompact(ctx, a, nil, nil)
	if err != nil {
		return peers, st, err
	}
	if len(v4)%6 != 0 || len(v6)%18 != 0 {
		return peers, st, fmt.Errorf("storetest: AnnounceCompact returned %d bytes of IPv4 peers and %d of IPv6 peers", len(v4), len(v6))
	}
	for ; len(v4) > 0; v4 = v4[6:] {
		peers = append(peers, bittorrent.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte(v4[:4])), uint16(v4[4])<<8|uint16(v4[5]))})
	}
	for ; len(v6) > 0; v6 = v6[18:] {
		peers = append(peers, bittorrent.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom16([16]byte(v6[:16])), uint16(v6[16])<<8|uint16(v6[17]))})
	}
	return peers, st, nil
}

// compactBounded is a compactStore of a store.MemoryBounded store, for
// the suite's MemoryLimit test.
type compactBounded struct {
	compactStore
	store.MemoryBounded
}

// run runs the suite with opts, to which it adds PeerLifetime and Now.
func run(t *testing.T, opts store.Options, open func(t *testing.T, opts store.Options) store.Store) {
	tests := []struct {
		name string
		fn   func(*env)
	}{
		{"FirstAnnounce", testFirstAnnounce},
		{"SessionIdentity", testSessionIdentity},
		{"IPv4AndIPv6", testIPv4AndIPv6},
		{"FamilyFilter", testFamilyFilter},
		{"Stopped", testStopped},
		{"Completed", testCompleted},
		{"SeederLeecherMoves", testMoves},
		{"Selection", testSelection},
		{"RandomSelection", testRandomSelection},
		{"Expiry", testExpiry},
		{"Scrape", testScrape},
		{"ScrapeAll", testScrapeAll},
		{"Totals", testTotals},
		{"BinaryKeys", testBinaryKeys},
		{"Concurrency", testConcurrency},
		{"MemoryLimit", testMemoryLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(newEnv(t, opts, open))
		})
	}
	t.Run("Close", func(t *testing.T) {
		c := newClock()
		o := opts
		o.PeerLifetime, o.Now = Lifetime, c.Now
		s := open(t, o)
		ctx := context.Background()
		a := store.Announce{InfoHash: hashOf("close"), Peer: peerV4(1, 2, 3, 4, 5, "close"), NumWant: 10}
		if _, _, err := s.Announce(ctx, a, nil); err != nil {
			t.Fatalf("Announce: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close = %v, want nil", err)
		}
	})
}

// clock is a fake clock safe for concurrent use (a backend may read it from
// background goroutines).
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := new(clock)
	// Half a second past a whole second, so that a backend keeping expiry
	// in whole seconds must round the right way to pass.
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 500_000_000, time.UTC).UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type env struct {
	t     *testing.T
	s     store.Store
	clock *clock
	ctx   context.Context
	ids   bool // the store keeps peer ids
}

func newEnv(t *testing.T, opts store.Options, open func(t *testing.T, opts store.Options) store.Store) *env {
	c := newClock()
	opts.PeerLifetime, opts.Now = Lifetime, c.Now
	s := open(t, opts)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close = %v, want nil", err)
		}
	})
	return &env{t: t, s: s, clock: c, ctx: context.Background(), ids: opts.PeerIDs}
}

// idOK reports whether a returned peer's id is right for a peer that last
// announced with want: want itself if the store keeps ids, else zero.
func (e *env) idOK(got bittorrent.Peer, want bittorrent.PeerID) bool {
	if e.ids {
		return got.ID == want
	}
	return got.ID == bittorrent.PeerID{}
}

// hashOf returns an info hash made of name, padded with 0x01 bytes (so it
// is distinct from the binary-key hashes of testBinaryKeys).
func hashOf(name string) bittorrent.InfoHash {
	var h bittorrent.InfoHash
	for i := range h {
		h[i] = 1
	}
	copy(h[:], name)
	return h
}

func idOf(name string) bittorrent.PeerID {
	var id bittorrent.PeerID
	copy(id[:], "-TS0001-")
	copy(id[8:], name)
	return id
}

func peerV4(a, b, c, d byte, port uint16, id string) bittorrent.Peer {
	return bittorrent.Peer{ID: idOf(id), Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{a, b, c, d}), port)}
}

func peerAt(addr string, id string) bittorrent.Peer {
	return bittorrent.Peer{ID: idOf(id), Addr: netip.MustParseAddrPort(addr)}
}

// nthPeer returns a distinct IPv4 peer for each n < 2^24.
func nthPeer(n int) bittorrent.Peer {
	return peerV4(10, byte(n>>16), byte(n>>8), byte(n), uint16(1024+n%50000), fmt.Sprintf("n%d", n))
}

type ann struct {
	seeder  bool
	event   bittorrent.Event
	numWant int
}

var (
	leech     = ann{numWant: 50}
	seed      = ann{seeder: true, numWant: 50}
	completed = ann{seeder: true, event: bittorrent.EventCompleted, numWant: 50}
	stopped   = ann{event: bittorrent.EventStopped}
)

func (e *env) announce(h bittorrent.InfoHash, p bittorrent.Peer, o ann) ([]bittorrent.Peer, bittorrent.Stats) {
	e.t.Helper()
	a := store.Announce{InfoHash: h, Peer: p, Event: o.event, Seeder: o.seeder, NumWant: o.numWant}
	peers, st, err := e.s.Announce(e.ctx, a, nil)
	if err != nil {
		e.t.Fatalf("Announce(%v, %v): %v", h, p.Addr, err)
	}
	checkReturned(e.t, p, o, peers)
	return peers, st
}

// checkReturned checks what holds for every announce: at most NumWant
// peers, all distinct, never the announcing one.
func checkReturned(t testing.TB, self bittorrent.Peer, o ann, peers []bittorrent.Peer) {
	t.Helper()
	if len(peers) > max(o.numWant, 0) {
		t.Errorf("announce by %v with NumWant %d returned %d peers", self.Addr, o.numWant, len(peers))
	}
	seen := make(map[netip.AddrPort]bool, len(peers))
	for _, p := range peers {
		if p.Addr == self.Addr {
			t.Errorf("announce by %v returned the announcing peer itself", self.Addr)
		}
		if seen[p.Addr] {
			t.Errorf("announce by %v returned %v twice", self.Addr, p.Addr)
		}
		seen[p.Addr] = true
	}
}

func (e *env) scrape(hashes ...bittorrent.InfoHash) []bittorrent.Stats {
	e.t.Helper()
	st, err := e.s.Scrape(e.ctx, hashes, nil)
	if err != nil {
		e.t.Fatalf("Scrape: %v", err)
	}
	if len(st) != len(hashes) {
		e.t.Fatalf("Scrape of %d hashes returned %d stats", len(hashes), len(st))
	}
	return st
}

func (e *env) scrapeOne(h bittorrent.InfoHash) bittorrent.Stats { return e.scrape(h)[0] }

func (e *env) scrapeAll() map[bittorrent.InfoHash]bittorrent.Stats {
	e.t.Helper()
	m := make(map[bittorrent.InfoHash]bittorrent.Stats)
	err := e.s.ScrapeAll(e.ctx, func(h bittorrent.InfoHash, st bittorrent.Stats) error {
		if _, dup := m[h]; dup {
			e.t.Errorf("ScrapeAll visited %v twice", h)
		}
		m[h] = st
		return nil
	})
	if err != nil {
		e.t.Fatalf("ScrapeAll: %v", err)
	}
	return m
}

func (e *env) totals() store.Totals {
	e.t.Helper()
	if s, ok := e.s.(store.Settler); ok {
		if err := s.Settle(e.ctx); err != nil {
			e.t.Fatalf("Settle: %v", err)
		}
	}
	tot, err := e.s.Totals(e.ctx)
	if err != nil {
		e.t.Fatalf("Totals: %v", err)
	}
	return tot
}

func (e *env) wantStats(what string, got, want bittorrent.Stats) {
	e.t.Helper()
	if got != want {
		e.t.Errorf("%s: stats = %+v, want %+v", what, got, want)
	}
}

func (e *env) wantTotals(what string, want store.Totals) {
	e.t.Helper()
	if got := e.totals(); got != want {
		e.t.Errorf("%s: Totals = %+v, want %+v", what, got, want)
	}
}

// wantPeers checks that got holds exactly the peers of want (in any order),
// each with the ID given if the store keeps ids, else with a zero ID.
func (e *env) wantPeers(what string, got []bittorrent.Peer, want ...bittorrent.Peer) {
	e.t.Helper()
	key := func(p bittorrent.Peer) string { return p.Addr.String() + "/" + p.ID.String() }
	var g, w []string
	for _, p := range got {
		g = append(g, key(p))
	}
	for _, p := range want {
		if !e.ids {
			p.ID = bittorrent.PeerID{}
		}
		w = append(w, key(p))
	}
	sort.Strings(g)
	sort.Strings(w)
	if !slices.Equal(g, w) {
		e.t.Errorf("%s: peers =\n\t%s\nwant\n\t%s", what, strings.Join(g, "\n\t"), strings.Join(w, "\n\t"))
	}
}
