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
// PeerIDs: returned peers must carry the id they last announced with).
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
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
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

func testFirstAnnounce(e *env) {
	h := hashOf("first")
	l1, s1, l2 := peerV4(10, 0, 0, 1, 6881, "l1"), peerV4(10, 0, 0, 2, 6881, "s1"), peerV4(10, 0, 0, 3, 6881, "l2")
	e.wantTotals("empty store", store.Totals{})
	e.wantStats("scrape of an empty store", e.scrapeOne(h), bittorrent.Stats{})

	peers, st := e.announce(h, l1, ann{event: bittorrent.EventStarted, numWant: 50})
	e.wantStats("first announce (leecher)", st, bittorrent.Stats{Leechers: 1})
	e.wantPeers("first announce", peers)

	peers, st = e.announce(h, s1, ann{seeder: true, event: bittorrent.EventStarted, numWant: 50})
	e.wantStats("second announce (seeder)", st, bittorrent.Stats{Seeders: 1, Leechers: 1})
	e.wantPeers("second announce (seeder)", peers, l1)

	peers, st = e.announce(h, l2, leech)
	e.wantStats("third announce (leecher)", st, bittorrent.Stats{Seeders: 1, Leechers: 2})
	e.wantPeers("third announce (leecher)", peers, l1, s1)

	e.wantStats("scrape", e.scrapeOne(h), bittorrent.Stats{Seeders: 1, Leechers: 2})
	e.wantTotals("one swarm", store.Totals{Torrents: 1, Seeders: 1, Leechers: 2})
}

func testSessionIdentity(e *env) {
	h := hashOf("session")
	a1 := peerV4(192, 0, 2, 1, 6881, "a-first")
	a2 := peerV4(192, 0, 2, 1, 6881, "a-second") // same ip:port, new id
	otherPort := peerV4(192, 0, 2, 1, 6882, "other-port")
	otherIP := peerV4(192, 0, 2, 2, 6881, "other-ip")
	obs := peerV4(198, 51, 100, 7, 1000, "observer")

	_, st := e.announce(h, a1, leech)
	e.wantStats("first announce", st, bittorrent.Stats{Leechers: 1})
	_, st = e.announce(h, a2, leech)
	e.wantStats("re-announce from the same ip:port with a new peer id", st, bittorrent.Stats{Leechers: 1})
	peers, st := e.announce(h, obs, leech)
	e.wantStats("observer", st, bittorrent.Stats{Leechers: 2})
	e.wantPeers("observer after id change", peers, a2)

	_, st = e.announce(h, otherPort, leech)
	e.wantStats("same ip, other port", st, bittorrent.Stats{Leechers: 3})
	_, st = e.announce(h, otherIP, leech)
	e.wantStats("same port, other ip", st, bittorrent.Stats{Leechers: 4})
	peers, _ = e.announce(h, obs, leech)
	e.wantPeers("observer sees every session", peers, a2, otherPort, otherIP)

	// A change of id and of role at once is still the same session.
	a3 := peerV4(192, 0, 2, 1, 6881, "a-third")
	_, st = e.announce(h, a3, seed)
	e.wantStats("same session as a seeder with a third id", st, bittorrent.Stats{Seeders: 1, Leechers: 3})
	peers, _ = e.announce(h, obs, leech)
	e.wantPeers("observer after role change", peers, a3, otherPort, otherIP)
	e.wantTotals("totals", store.Totals{Torrents: 1, Seeders: 1, Leechers: 3})
}

func testIPv4AndIPv6(e *env) {
	h := hashOf("families")
	p4 := peerAt("192.0.2.1:6881", "v4")
	p4b := peerAt("192.0.2.1:6882", "v4b")
	p6 := peerAt("[2001:db8::1]:6881", "v6")
	p6b := peerAt("[2001:db8::1]:6882", "v6b")
	p6c := peerAt("[2001:db8::2]:6881", "v6c")
	// ::c000:201 holds the same 4 bytes as 192.0.2.1 at its end: another peer.
	compat := peerAt("[::c000:201]:6881", "v4compat")
	all := []bittorrent.Peer{p4, p4b, p6, p6b, p6c, compat}

	for i, p := range all {
		_, st := e.announce(h, p, leech)
		e.wantStats(fmt.Sprintf("announce %d (%v)", i, p.Addr), st, bittorrent.Stats{Leechers: uint32(i + 1)})
	}
	obs4 := peerAt("198.51.100.1:1000", "obs4")
	peers, st := e.announce(h, obs4, leech)
	e.wantStats("v4 observer", st, bittorrent.Stats{Leechers: 7})
	e.wantPeers("v4 observer", peers, all...)
	for _, p := range peers {
		// Peers come back exactly as announced: a 4-byte address stays a
		// plain IPv4 address, never v4-mapped.
		found := false
		for _, q := range all {
			found = found || q.Addr == p.Addr
		}
		if !found {
			e.t.Errorf("peer returned as %v (Is4 %v, Is4In6 %v), not as announced", p.Addr, p.Addr.Addr().Is4(), p.Addr.Addr().Is4In6())
		}
		if p.Addr.Addr().Zone() != "" {
			e.t.Errorf("peer %v returned with a zone", p.Addr)
		}
	}
	obs6 := peerAt("[2001:db8:ffff::1]:1000", "obs6")
	peers, st = e.announce(h, obs6, seed)
	e.wantStats("v6 observer (seeder)", st, bittorrent.Stats{Seeders: 1, Leechers: 7})
	e.wantPeers("v6 observer (seeder)", peers, append(slices.Clone(all), obs4)...)

	_, st = e.announce(h, p6, stopped)
	e.wantStats("v6 peer stopped", st, bittorrent.Stats{Seeders: 1, Leechers: 6})
	_, st = e.announce(h, p4, seed)
	e.wantStats("v4 peer now seeding", st, bittorrent.Stats{Seeders: 2, Leechers: 5})
	peers, _ = e.announce(h, obs4, leech)
	e.wantPeers("v4 observer after changes", peers, p4, p4b, p6b, p6c, compat, obs6)
	e.wantTotals("totals", store.Totals{Torrents: 1, Seeders: 2, Leechers: 5, Seeders6: 1, Leechers6: 3})
}

func testStopped(e *env) {
	h, unknown := hashOf("stopped"), hashOf("never-announced")
	a, b, c := peerV4(10, 1, 0, 1, 1, "a"), peerV4(10, 1, 0, 2, 2, "b"), peerV4(10, 1, 0, 3, 3, "c")
	e.announce(h, a, leech)
	e.announce(h, b, seed)
	_, st := e.announce(h, c, leech)
	e.wantStats("three peers", st, bittorrent.Stats{Seeders: 1, Leechers: 2})

	peers, st := e.announce(h, a, stopped)
	e.wantStats("a stopped", st, bittorrent.Stats{Seeders: 1, Leechers: 1})
	e.wantPeers("a stopped (NumWant 0)", peers)
	peers, _ = e.announce(h, c, leech)
	e.wantPeers("c after a stopped", peers, b)

	_, st = e.announce(h, a, stopped)
	e.wantStats("a stopped twice", st, bittorrent.Stats{Seeders: 1, Leechers: 1})
	_, st = e.announce(h, peerV4(10, 1, 0, 9, 9, "stranger"), stopped)
	e.wantStats("unknown peer stopped", st, bittorrent.Stats{Seeders: 1, Leechers: 1})

	peers, st = e.announce(unknown, a, ann{event: bittorrent.EventStopped, numWant: 50})
	e.wantStats("stop on an unknown torrent", st, bittorrent.Stats{})
	e.wantPeers("stop on an unknown torrent", peers)
	e.wantStats("scrape of the unknown torrent", e.scrapeOne(unknown), bittorrent.Stats{})
	if m := e.scrapeAll(); len(m) != 1 {
		e.t.Errorf("ScrapeAll visited %d torrents, want 1 (a stop must create nothing): %v", len(m), m)
	}
	e.wantTotals("after stops", store.Totals{Torrents: 1, Seeders: 1, Leechers: 1})

	// A stopping seeder is given only leechers, like any seeder.
	peers, st = e.announce(h, b, ann{seeder: true, event: bittorrent.EventStopped, numWant: 50})
	e.wantStats("b stopped", st, bittorrent.Stats{Leechers: 1})
	e.wantPeers("b stopped with NumWant 50", peers, c)
	_, st = e.announce(h, c, stopped)
	e.wantStats("last peer stopped", st, bittorrent.Stats{})
	e.wantStats("scrape after every peer stopped", e.scrapeOne(h), bittorrent.Stats{})
	if m := e.scrapeAll(); len(m) != 0 {
		e.t.Errorf("ScrapeAll visited %v; want nothing (no peers, no downloads)", m)
	}
	e.wantTotals("after every peer stopped", store.Totals{})

	// The session can start again.
	_, st = e.announce(h, a, leech)
	e.wantStats("a back", st, bittorrent.Stats{Leechers: 1})
}

func testCompleted(e *env) {
	h := hashOf("completed")
	a, b, c := peerV4(10, 2, 0, 1, 1, "a"), peerV4(10, 2, 0, 2, 2, "b"), peerV4(10, 2, 0, 3, 3, "c")
	e.announce(h, a, leech)
	_, st := e.announce(h, a, completed)
	e.wantStats("a completed", st, bittorrent.Stats{Seeders: 1, Downloaded: 1})
	_, st = e.announce(h, a, completed)
	e.wantStats("a completed twice", st, bittorrent.Stats{Seeders: 1, Downloaded: 1})
	_, st = e.announce(h, a, seed)
	e.wantStats("a re-announces", st, bittorrent.Stats{Seeders: 1, Downloaded: 1})

	e.announce(h, b, leech)
	_, st = e.announce(h, b, seed)
	e.wantStats("b seeds without a completed event", st, bittorrent.Stats{Seeders: 2, Downloaded: 1})

	_, st = e.announce(h, c, completed)
	e.wantStats("c's first announce is completed", st, bittorrent.Stats{Seeders: 3, Downloaded: 2})

	e.announce(h, a, stopped)
	_, st = e.announce(h, a, leech)
	e.wantStats("a back as a new session", st, bittorrent.Stats{Seeders: 2, Leechers: 1, Downloaded: 2})
	_, st = e.announce(h, a, completed)
	e.wantStats("new session of a completed", st, bittorrent.Stats{Seeders: 3, Downloaded: 3})
	e.wantStats("scrape", e.scrapeOne(h), bittorrent.Stats{Seeders: 3, Downloaded: 3})
}

func testMoves(e *env) {
	h := hashOf("moves")
	a, b, s := peerV4(10, 3, 0, 1, 1, "a"), peerV4(10, 3, 0, 2, 2, "b"), peerV4(10, 3, 0, 3, 3, "s")
	e.announce(h, a, leech)
	e.announce(h, b, leech)
	e.wantTotals("two leechers", store.Totals{Torrents: 1, Leechers: 2})

	_, st := e.announce(h, a, seed)
	e.wantStats("a seeds", st, bittorrent.Stats{Seeders: 1, Leechers: 1})
	e.wantTotals("a seeds", store.Totals{Torrents: 1, Seeders: 1, Leechers: 1})
	peers, _ := e.announce(h, s, seed)
	e.wantPeers("a seeder gets only leechers", peers, b)
	peers, _ = e.announce(h, b, leech)
	e.wantPeers("a leecher gets everyone", peers, a, s)

	_, st = e.announce(h, a, leech)
	e.wantStats("a leeches again", st, bittorrent.Stats{Seeders: 1, Leechers: 2})
	peers, _ = e.announce(h, s, seed)
	e.wantPeers("seeder after a leeches again", peers, a, b)
	for i := range 5 {
		e.announce(h, b, ann{seeder: i%2 == 0, numWant: 50})
	}
	_, st = e.announce(h, b, seed)
	e.wantStats("b flipped back and forth", st, bittorrent.Stats{Seeders: 2, Leechers: 1})
	e.wantTotals("end", store.Totals{Torrents: 1, Seeders: 2, Leechers: 1})
	e.wantStats("scrape", e.scrapeOne(h), bittorrent.Stats{Seeders: 2, Leechers: 1})

	// Many moves in a bigger swarm of both families, checked by two
	// observers that see everyone.
	h = hashOf("moves-big")
	const n = 40
	swarm := make([]bittorrent.Peer, n)
	role := make([]bool, n)
	for i := range swarm {
		swarm[i] = peerV4(10, 3, 1, byte(i*5), uint16(100+i%3), fmt.Sprintf("m%d", i))
		if i%3 == 0 {
			swarm[i] = peerAt(fmt.Sprintf("[2001:db8:3::%x]:%d", i*5, 100+i%3), fmt.Sprintf("m%d", i))
		}
		role[i] = i%2 == 0
		e.announce(h, swarm[i], ann{seeder: role[i]})
	}
	obsS, obsL := peerV4(10, 3, 2, 1, 1, "obs-seeder"), peerV4(10, 3, 2, 2, 1, "obs-leecher")
	e.announce(h, obsS, ann{seeder: true})
	e.announce(h, obsL, ann{})
	x := uint32(1)
	for step := range 300 {
		x = x*1664525 + 1013904223
		i := int(x>>8) % n
		role[i] = !role[i]
		_, st := e.announce(h, swarm[i], ann{seeder: role[i]})
		want := bittorrent.Stats{Seeders: 1, Leechers: 1} // the observers
		var leechers, everyone []bittorrent.Peer
		for j, p := range swarm {
			everyone = append(everyone, p)
			if role[j] {
				want.Seeders++
			} else {
				want.Leechers++
				leechers = append(leechers, p)
			}
		}
		if st != want {
			e.t.Fatalf("step %d: stats %+v, want %+v", step, st, want)
		}
		if step%10 == 0 {
			got, _ := e.announce(h, obsS, ann{seeder: true, numWant: 200})
			e.wantPeers(fmt.Sprintf("step %d: seeder observer", step), got, append(leechers, obsL)...)
			got, _ = e.announce(h, obsL, ann{numWant: 200})
			e.wantPeers(fmt.Sprintf("step %d: leecher observer", step), got, append(everyone, obsS)...)
		}
	}
}

func testSelection(e *env) {
	h := hashOf("selection")
	var seeders, leechers []bittorrent.Peer
	for i := range 5 {
		p := peerV4(10, 4, 1, byte(i), 7000, fmt.Sprintf("s%d", i))
		seeders = append(seeders, p)
		e.announce(h, p, ann{seeder: true})
	}
	for i := range 8 {
		p := peerV4(10, 4, 2, byte(i), 7000, fmt.Sprintf("l%d", i))
		if i == 3 {
			p = peerAt(fmt.Sprintf("[2001:db8:4::%d]:7000", i), fmt.Sprintf("l%d", i))
		}
		leechers = append(leechers, p)
		e.announce(h, p, ann{})
	}
	isLeecher := make(map[netip.AddrPort]bittorrent.PeerID)
	inSwarm := make(map[netip.AddrPort]bittorrent.PeerID)
	for _, p := range leechers {
		isLeecher[p.Addr] = p.ID
		inSwarm[p.Addr] = p.ID
	}
	for _, p := range seeders {
		inSwarm[p.Addr] = p.ID
	}
	want := bittorrent.Stats{Seeders: 5, Leechers: 8}

	peers, st := e.announce(h, seeders[0], seed)
	e.wantStats("seeder", st, want)
	e.wantPeers("seeder with NumWant 50 gets every leecher", peers, leechers...)

	peers, st = e.announce(h, leechers[0], leech)
	e.wantStats("leecher", st, want)
	e.wantPeers("leecher with NumWant 50 gets every other peer", peers, append(slices.Clone(seeders), leechers[1:]...)...)

	for _, n := range []int{1, 3, 7, 11, 12} {
		o := ann{numWant: n}
		peers, _ = e.announce(h, leechers[1], o)
		if len(peers) != n {
			e.t.Errorf("leecher with NumWant %d got %d peers", n, len(peers))
		}
		for _, p := range peers {
			if id, ok := inSwarm[p.Addr]; !ok || !e.idOK(p, id) {
				e.t.Errorf("leecher with NumWant %d got %v/%v, not a peer of the swarm", n, p.Addr, p.ID)
			}
		}
		o.seeder = true
		peers, _ = e.announce(h, seeders[1], o)
		if len(peers) != min(n, 8) {
			e.t.Errorf("seeder with NumWant %d got %d peers, want %d", n, len(peers), min(n, 8))
		}
		for _, p := range peers {
			if id, ok := isLeecher[p.Addr]; !ok || !e.idOK(p, id) {
				e.t.Errorf("seeder with NumWant %d got %v/%v, not a leecher", n, p.Addr, p.ID)
			}
		}
	}

	peers, st = e.announce(h, leechers[2], ann{numWant: 0})
	e.wantStats("NumWant 0", st, want)
	e.wantPeers("NumWant 0", peers)

	// Announce appends to the slice it is given.
	prefix := []bittorrent.Peer{peerV4(1, 1, 1, 1, 1, "prefix1"), peerV4(2, 2, 2, 2, 2, "prefix2")}
	buf := append(make([]bittorrent.Peer, 0, 3), prefix...)
	a := store.Announce{InfoHash: h, Peer: leechers[4], NumWant: 4}
	got, _, err := e.s.Announce(e.ctx, a, buf)
	if err != nil {
		e.t.Fatalf("Announce: %v", err)
	}
	if len(got) != 6 || !slices.Equal(got[:2], prefix) {
		e.t.Errorf("Announce appending to a slice of 2 with NumWant 4: got %d peers, prefix %v", len(got), got[:min(2, len(got))])
	}
	checkReturned(e.t, leechers[4], ann{numWant: 4}, got[2:])
}

// testRandomSelection checks that peers are chosen at random: from a swarm
// of n = 1000 candidates, D = 800 announces with NumWant k = 50.
//
// If every candidate is returned with probability p = k/n = 0.05 in each
// draw (what a uniform choice gives), a given peer is never seen with
// probability (1-p)^D = e^-41.0 = 1.5e-18, so some of the 1000 is missed with
// probability < 1.5e-15. Even a sampler with only p = 0.04 for some peers
// fails with probability < 1e-11.
//
// A peer's number of appearances is Binomial(D, p), mean 40; by Chernoff,
// P(X >= 3*40) <= exp(-δ²μ/(2+δ)) with δ = 2: e^-40 = 4e-18, so seeing a peer
// 120 times or more fails a fair sampler with probability < 1e-14.
//
// The draws must all differ: if no set of 50 has a probability above 1e-15
// (a uniform choice gives 1/C(1000,50) < 1e-84), two of 800 draws coincide
// with probability < C(800,2)·1e-15 = 3.2e-10. A sampler that returns one of
// a few fixed windows fails for sure.
//
// Half the candidates are seeders, so each draw holds Y seeders with
// E[Y] = 25 and 0 <= Y <= 50; by Hoeffding over the D independent draws the
// total is within 5000 of 20000 but with probability < 2·exp(-2·5000²/(D·50²))
// = 2.8e-11.
func testRandomSelection(e *env) {
	const (
		n     = 1000
		k     = 50
		draws = 800
	)
	h := hashOf("random")
	index := make(map[netip.AddrPort]int, n)
	for i := range n {
		p := nthPeer(i)
		index[p.Addr] = i
		e.announce(h, p, ann{seeder: i%2 == 0})
	}
	self := peerAt("[2001:db8::42]:4242", "requester")
	counts := make([]int, n)
	sets := make(map[string]int, draws)
	seeders := 0
	for d := range draws {
		peers, st := e.announce(h, self, ann{numWant: k})
		if st != (bittorrent.Stats{Seeders: n / 2, Leechers: n/2 + 1}) {
			e.t.Fatalf("draw %d: stats %+v", d, st)
		}
		if len(peers) != k {
			e.t.Fatalf("draw %d: got %d peers, want %d", d, len(peers), k)
		}
		set := make([]int, 0, k)
		for _, p := range peers {
			i, ok := index[p.Addr]
			if !ok || !e.idOK(p, nthPeer(i).ID) {
				e.t.Fatalf("draw %d: returned %v/%v, not a peer of the swarm", d, p.Addr, p.ID)
			}
			counts[i]++
			set = append(set, i)
			if i%2 == 0 {
				seeders++
			}
		}
		slices.Sort(set)
		key := fmt.Sprint(set)
		if prev, dup := sets[key]; dup {
			e.t.Errorf("draws %d and %d returned the same %d peers", prev, d, k)
		}
		sets[key] = d
	}
	for i, c := range counts {
		if c == 0 {
			e.t.Errorf("peer %d never returned in %d draws of %d out of %d", i, draws, k, n)
		}
		if c >= 3*draws*k/n {
			e.t.Errorf("peer %d returned %d times in %d draws, expected about %d", i, c, draws, draws*k/n)
		}
	}
	if want := draws * k / 2; seeders < want-5000 || seeders > want+5000 {
		e.t.Errorf("%d seeders among %d peers returned, want about %d (half the candidates are seeders)", seeders, draws*k, want)
	}
}

// testExpiry lets peers expire and checks every way to observe a swarm,
// each in turn the first to look after an expiry, since a backend may drop
// expired peers lazily.
func testExpiry(e *env) {
	h, lone, third := hashOf("expiry"), hashOf("expiry-lone"), hashOf("expiry-third")
	a, b, c, d := peerV4(10, 5, 0, 1, 1, "a"), peerV4(10, 5, 0, 2, 2, "b"), peerV4(10, 5, 0, 3, 3, "c"), peerV4(10, 5, 0, 4, 4, "d")
	e.announce(h, a, leech)
	e.announce(h, a, completed)
	e.announce(h, b, leech)
	e.announce(lone, c, seed)
	e.wantTotals("start", store.Totals{Torrents: 2, Seeders: 2, Leechers: 1})

	e.clock.Advance(Lifetime / 2)
	e.announce(h, b, leech) // b announces in time; a and c do not

	e.clock.Advance(Lifetime/2 - time.Second) // one second before a and c expire
	e.wantStats("scrape just before expiry", e.scrapeOne(h), bittorrent.Stats{Seeders: 1, Leechers: 1, Downloaded: 1})
	e.wantTotals("just before expiry", store.Totals{Torrents: 2, Seeders: 2, Leechers: 1})

	// One second after: a and c are gone. Announce looks first.
	e.clock.Advance(2 * time.Second)
	peers, st := e.announce(h, d, leech)
	e.wantStats("announce after a expired", st, bittorrent.Stats{Leechers: 2, Downloaded: 1})
	e.wantPeers("announce after a expired", peers, b)
	e.wantStats("scrape of a swarm whose only peer expired", e.scrapeOne(lone), bittorrent.Stats{})
	e.wantStats("scrape after a expired", e.scrapeOne(h), bittorrent.Stats{Leechers: 2, Downloaded: 1})
	all := e.scrapeAll()
	if len(all) != 1 || all[h] != (bittorrent.Stats{Leechers: 2, Downloaded: 1}) {
		e.t.Errorf("ScrapeAll after a and c expired = %v, want only %v with 2 leechers, 1 download", all, h)
	}
	e.wantTotals("after a and c expired", store.Totals{Torrents: 1, Leechers: 2})
	peers, st = e.announce(lone, d, seed)
	e.wantStats("announce to the swarm whose only peer expired", st, bittorrent.Stats{Seeders: 1})
	e.wantPeers("announce to the swarm whose only peer expired", peers)
	e.wantTotals("after d joined lone", store.Totals{Torrents: 2, Seeders: 1, Leechers: 2})

	// Everyone expired. Totals looks first.
	e.clock.Advance(Lifetime + time.Second)
	e.wantTotals("all expired", store.Totals{})
	e.wantStats("scrape when all expired", e.scrapeOne(h), bittorrent.Stats{Downloaded: 1})
	all = e.scrapeAll()
	if len(all) != 1 || all[h] != (bittorrent.Stats{Downloaded: 1}) {
		e.t.Errorf("ScrapeAll when all expired = %v, want only %v with 1 download", all, h)
	}
	peers, st = e.announce(h, a, completed)
	e.wantStats("a back after expiry, completing", st, bittorrent.Stats{Seeders: 1, Downloaded: 2})
	e.wantPeers("a back after expiry", peers)
	e.announce(third, b, leech)
	e.announce(third, c, completed)
	e.wantTotals("a, b and c back", store.Totals{Torrents: 2, Seeders: 2, Leechers: 1})

	// Everyone expired again. Scrape looks first, then ScrapeAll.
	e.clock.Advance(Lifetime + time.Second)
	e.wantStats("scrape of third when all expired", e.scrapeOne(third), bittorrent.Stats{Downloaded: 1})
	e.announce(lone, d, leech)
	e.clock.Advance(Lifetime + time.Second)
	all = e.scrapeAll()
	want := map[bittorrent.InfoHash]bittorrent.Stats{h: {Downloaded: 2}, third: {Downloaded: 1}}
	if !maps.Equal(all, want) {
		e.t.Errorf("ScrapeAll when all expired = %v, want %v", all, want)
	}
	e.wantTotals("all expired again", store.Totals{})
}

func testScrape(e *env) {
	h1, h2, h3 := hashOf("scrape-1"), hashOf("scrape-2"), hashOf("scrape-unknown")
	e.announce(h1, peerV4(10, 6, 0, 1, 1, "a"), seed)
	e.announce(h1, peerV4(10, 6, 0, 2, 1, "b"), completed)
	e.announce(h1, peerV4(10, 6, 0, 3, 1, "c"), leech)
	for i := range 3 {
		e.announce(h2, peerV4(10, 6, 1, byte(i), 1, "x"), leech)
	}
	s1 := bittorrent.Stats{Seeders: 2, Leechers: 1, Downloaded: 1}
	s2 := bittorrent.Stats{Leechers: 3}

	prefix := bittorrent.Stats{Seeders: 99, Leechers: 98, Downloaded: 97}
	got, err := e.s.Scrape(e.ctx, []bittorrent.InfoHash{h2, h3, h1, h2}, []bittorrent.Stats{prefix})
	if err != nil {
		e.t.Fatalf("Scrape: %v", err)
	}
	want := []bittorrent.Stats{prefix, s2, {}, s1, s2}
	if !slices.Equal(got, want) {
		e.t.Errorf("Scrape = %+v, want %+v", got, want)
	}
	got, err = e.s.Scrape(e.ctx, nil, []bittorrent.Stats{prefix})
	if err != nil || !slices.Equal(got, []bittorrent.Stats{prefix}) {
		e.t.Errorf("Scrape of no hashes = %+v, %v; want the given slice", got, err)
	}
	if m := e.scrapeAll(); len(m) != 2 {
		e.t.Errorf("ScrapeAll after scraping an unknown hash visited %d torrents, want 2", len(m))
	}
}

func testScrapeAll(e *env) {
	want := make(map[bittorrent.InfoHash]bittorrent.Stats)
	for i := range 40 {
		h := hashOf(fmt.Sprintf("all-%d", i))
		var st bittorrent.Stats
		for j := range i%7 + 1 {
			p := peerV4(10, 7, byte(i), byte(j), 1, "p")
			switch {
			case j%3 == 0:
				e.announce(h, p, seed)
				st.Seeders++
			case j%3 == 1 && i%2 == 0:
				e.announce(h, p, completed)
				st.Seeders++
				st.Downloaded++
			default:
				e.announce(h, p, leech)
				st.Leechers++
			}
		}
		want[h] = st
	}
	// Every peer gone, one download: still visited.
	gone := hashOf("all-gone-downloaded")
	e.announce(gone, peerV4(10, 7, 255, 1, 1, "g"), completed)
	e.announce(gone, peerV4(10, 7, 255, 1, 1, "g"), stopped)
	want[gone] = bittorrent.Stats{Downloaded: 1}
	// Every peer gone, no download: not visited.
	empty := hashOf("all-gone-empty")
	e.announce(empty, peerV4(10, 7, 255, 2, 1, "g"), leech)
	e.announce(empty, peerV4(10, 7, 255, 2, 1, "g"), stopped)

	got := e.scrapeAll()
	if len(got) != len(want) {
		e.t.Errorf("ScrapeAll visited %d torrents, want %d", len(got), len(want))
	}
	for h, w := range want {
		if g, ok := got[h]; !ok {
			e.t.Errorf("ScrapeAll did not visit %v", h)
		} else if g != w {
			e.t.Errorf("ScrapeAll: %v has %+v, want %+v", h, g, w)
		}
	}

	errStop := errors.New("stop here")
	calls := 0
	err := e.s.ScrapeAll(e.ctx, func(bittorrent.InfoHash, bittorrent.Stats) error {
		calls++
		if calls == 3 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		e.t.Errorf("ScrapeAll returned %v, want fn's error", err)
	}
	if calls != 3 {
		e.t.Errorf("ScrapeAll called fn %d times, want it to stop at the error of the 3rd call", calls)
	}
}

// testTotals: the counts over all swarms, with the IPv6 ones (c) apart.
func testTotals(e *env) {
	h1, h2, h3 := hashOf("totals-1"), hashOf("totals-2"), hashOf("totals-3")
	a, b, c, d := peerV4(10, 8, 0, 1, 1, "a"), peerV4(10, 8, 0, 2, 1, "b"), peerAt("[2001:db8:8::3]:1", "c"), peerV4(10, 8, 0, 4, 1, "d")
	e.wantTotals("empty", store.Totals{})
	e.announce(h1, a, leech)
	e.announce(h1, b, leech)
	e.announce(h2, c, seed)
	e.wantTotals("joins", store.Totals{Torrents: 2, Seeders: 1, Leechers: 2, Seeders6: 1})
	if tot := e.totals(); tot.Peers() != 3 {
		e.t.Errorf("Totals.Peers() = %d, want 3", tot.Peers())
	}
	e.announce(h1, a, completed)
	e.wantTotals("a seeds", store.Totals{Torrents: 2, Seeders: 2, Leechers: 1, Seeders6: 1})
	e.announce(h1, a, seed)
	e.announce(h1, b, leech)
	e.wantTotals("re-announces change nothing", store.Totals{Torrents: 2, Seeders: 2, Leechers: 1, Seeders6: 1})
	e.announce(h2, c, ann{seeder: true, event: bittorrent.EventStopped})
	e.wantTotals("c stopped", store.Totals{Torrents: 1, Seeders: 1, Leechers: 1})
	e.announce(h2, c, leech)
	e.announce(h3, c, leech) // the same address in another torrent is another peer
	e.wantTotals("c back, twice", store.Totals{Torrents: 3, Seeders: 1, Leechers: 3, Leechers6: 2})

	e.clock.Advance(Lifetime - 10*time.Second)
	e.announce(h1, b, leech)
	e.announce(h3, d, seed)
	e.clock.Advance(20 * time.Second)
	e.wantTotals("after expiry", store.Totals{Torrents: 2, Seeders: 1, Leechers: 1})
	e.clock.Advance(Lifetime)
	e.wantTotals("all expired", store.Totals{})
}

func testBinaryKeys(e *env) {
	var zeros, space, ones, onesFE, nulMid, abcZero, abcSpace bittorrent.InfoHash
	space[19] = 0x20
	for i := range ones {
		ones[i] = 0xff
		onesFE[i] = 0xff
	}
	onesFE[19] = 0xfe
	copy(nulMid[:], "abc\x00def")
	copy(abcZero[:], "abc")
	copy(abcSpace[:], "abc                 ")
	hashes := []bittorrent.InfoHash{zeros, space, ones, onesFE, nulMid, abcZero, abcSpace}
	want := make(map[bittorrent.InfoHash]bittorrent.Stats)
	for i, h := range hashes {
		for j := range i + 1 {
			e.announce(h, peerV4(10, 9, byte(i), byte(j), 1, "p"), leech)
		}
		want[h] = bittorrent.Stats{Leechers: uint32(i + 1)}
	}
	got := e.scrape(hashes...)
	for i, h := range hashes {
		if got[i] != want[h] {
			e.t.Errorf("Scrape of hash %x = %+v, want %+v", h[:], got[i], want[h])
		}
	}
	all := e.scrapeAll()
	if len(all) != len(hashes) {
		e.t.Errorf("ScrapeAll visited %d torrents, want %d", len(all), len(hashes))
	}
	for h, w := range want {
		if all[h] != w {
			e.t.Errorf("ScrapeAll: hash %x = %+v, want %+v", h[:], all[h], w)
		}
	}

	var idZeros, idSpace, idOnes, idNul bittorrent.PeerID
	idSpace[19] = 0x20
	for i := range idOnes {
		idOnes[i] = 0xff
	}
	copy(idNul[:], "-XX\x00\x00-\n\r ")
	ids := []bittorrent.PeerID{idZeros, idSpace, idOnes, idNul}
	h := hashOf("binary-ids")
	var peers []bittorrent.Peer
	for i, id := range ids {
		p := bittorrent.Peer{ID: id, Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, 200, byte(i)}), 0x2000)}
		peers = append(peers, p)
		e.announce(h, p, leech)
	}
	got2, _ := e.announce(h, peerV4(10, 9, 201, 1, 1, "obs"), leech)
	e.wantPeers("binary peer ids", got2, peers...)
}

// testConcurrency has goroutines announce, stop and complete their own peers
// in shared swarms while others scrape, then checks every count against
// what the writers did.
func testConcurrency(e *env) {
	const (
		writers  = 8
		perW     = 48
		torrents = 12
		rounds   = 30
	)
	hashes := make([]bittorrent.InfoHash, torrents)
	for i := range hashes {
		hashes[i] = hashOf(fmt.Sprintf("conc-%d", i))
	}
	type state struct {
		present, seeder, counted bool
	}
	final := make([][perW]state, writers)
	downloads := make([][torrents]uint32, writers)
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, writers+4)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []bittorrent.Peer
			st := &final[w]
			for r := range rounds {
				for i := range perW {
					p := peerV4(10, 10, byte(w), byte(i), uint16(1000+w), fmt.Sprintf("w%d-%d", w, i))
					if (i+w)%4 == 0 {
						p.Addr = netip.MustParseAddrPort(fmt.Sprintf("[2001:db8:10:%x::%x]:%d", w, i, 1000+w))
					}
					ti := (i*7 + w) % torrents
					x := (r*31 + i*17 + w*13) % 10
					a := store.Announce{InfoHash: hashes[ti], Peer: p, NumWant: 10}
					switch {
					case x == 0:
						a.Event = bittorrent.EventStopped
					case x <= 2:
						a.Event = bittorrent.EventCompleted
						a.Seeder = true
					default:
						a.Seeder = x%2 == 0
					}
					var err error
					buf, _, err = e.s.Announce(e.ctx, a, buf[:0])
					if err != nil {
						report(err)
						return
					}
					for _, q := range buf {
						if q.Addr == p.Addr {
							report(fmt.Errorf("writer %d: announce returned the announcing peer", w))
						}
					}
					s := &st[i]
					if a.Event == bittorrent.EventStopped {
						*s = state{}
						continue
					}
					if !s.present {
						*s = state{present: true}
					}
					s.seeder = a.Seeder
					if a.Event == bittorrent.EventCompleted && !s.counted {
						s.counted = true
						downloads[w][ti]++
					}
				}
			}
		}()
	}
	var readers sync.WaitGroup
	for range 3 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			var stats []bittorrent.Stats
			for {
				select {
				case <-done:
					return
				default:
				}
				var err error
				stats, err = e.s.Scrape(e.ctx, hashes, stats[:0])
				if err != nil {
					report(err)
					return
				}
				for _, st := range stats {
					if st.Seeders+st.Leechers > writers*perW {
						report(fmt.Errorf("scrape during writes: %+v", st))
					}
				}
				if _, err := e.s.Totals(e.ctx); err != nil {
					report(err)
					return
				}
				err = e.s.ScrapeAll(e.ctx, func(bittorrent.InfoHash, bittorrent.Stats) error { return nil })
				if err != nil {
					report(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	readers.Wait()
	close(errs)
	for err := range errs {
		e.t.Error(err)
	}

	want := make([]bittorrent.Stats, torrents)
	var seeders6, leechers6 uint64
	for w := range writers {
		for i := range perW {
			ti := (i*7 + w) % torrents
			if s := final[w][i]; s.present {
				v6 := (i+w)%4 == 0
				if s.seeder {
					want[ti].Seeders++
					if v6 {
						seeders6++
					}
				} else {
					want[ti].Leechers++
					if v6 {
						leechers6++
					}
				}
			}
		}
		for ti := range torrents {
			want[ti].Downloaded += downloads[w][ti]
		}
	}
	tot := store.Totals{Seeders6: seeders6, Leechers6: leechers6}
	for _, st := range want {
		if st.Seeders+st.Leechers > 0 {
			tot.Torrents++
		}
		tot.Seeders += uint64(st.Seeders)
		tot.Leechers += uint64(st.Leechers)
	}
	got := e.scrape(hashes...)
	for i := range hashes {
		if got[i] != want[i] {
			e.t.Errorf("torrent %d after concurrent announces: %+v, want %+v", i, got[i], want[i])
		}
	}
	e.wantTotals("after concurrent announces", tot)
}

// testFamilyFilter: Announce.Family restricts the peers returned to one
// address family (UDP replies carry one), and the requester is still never
// among them.
func testFamilyFilter(e *env) {
	h := hashOf("family")
	for i := range 5 {
		e.announce(h, peerV4(10, 0, 0, byte(i+1), 6881, fmt.Sprintf("v4-%d", i)), leech)
		e.announce(h, peerAt(fmt.Sprintf("[2001:db8::%d]:6881", i+1), fmt.Sprintf("v6-%d", i)), leech)
	}
	tests := []struct {
		name   string
		self   bittorrent.Peer
		family bittorrent.Family
		seeder bool
		want4  int
		want6  int
	}{
		{"v4 requester, IPv4 only", peerV4(10, 0, 0, 1, 6881, "v4-0"), bittorrent.IPv4Only, false, 4, 0},
		{"v4 requester, IPv6 only", peerV4(10, 0, 0, 1, 6881, "v4-0"), bittorrent.IPv6Only, false, 0, 5},
		{"v6 requester, IPv6 only", peerAt("[2001:db8::1]:6881", "v6-0"), bittorrent.IPv6Only, false, 0, 4},
		{"v6 requester, IPv4 only", peerAt("[2001:db8::1]:6881", "v6-0"), bittorrent.IPv4Only, false, 5, 0},
		{"v6 requester, any", peerAt("[2001:db8::1]:6881", "v6-0"), bittorrent.AnyFamily, false, 5, 4},
		{"new v4 seeder, IPv4 only", peerV4(10, 0, 0, 99, 6881, "s"), bittorrent.IPv4Only, true, 5, 0},
	}
	for _, tt := range tests {
		a := store.Announce{InfoHash: h, Peer: tt.self, Seeder: tt.seeder, NumWant: 50, Family: tt.family}
		peers, _, err := e.s.Announce(e.ctx, a, nil)
		if err != nil {
			e.t.Fatalf("%s: %v", tt.name, err)
		}
		checkReturned(e.t, tt.self, ann{numWant: 50}, peers)
		n4, n6 := 0, 0
		for _, p := range peers {
			if p.Addr.Addr().Is4() {
				n4++
			} else {
				n6++
			}
		}
		if n4 != tt.want4 || n6 != tt.want6 {
			e.t.Errorf("%s: got %d IPv4 and %d IPv6 peers, want %d and %d", tt.name, n4, n6, tt.want4, tt.want6)
		}
		if tt.seeder {
			a.Event = bittorrent.EventStopped
			e.s.Announce(e.ctx, a, nil)
		}
	}
}

// testMemoryLimit checks a store that implements store.MemoryBounded (the
// suite skips it for one that does not): at a bound of one byte, an
// announce that would make a torrent fails with store.ErrNoNewTorrents,
// one that would add a peer with store.ErrNoNewPeers, and neither changes
// anything; known peers still re-announce, stop and scrape; without the
// bound new torrents are taken again.
func testMemoryLimit(e *env) {
	mb, ok := e.s.(store.MemoryBounded)
	if !ok {
		e.t.Skip("the store does not bound its memory (store.MemoryBounded)")
	}
	known, a, b := hashOf("known"), peerV4(10, 0, 0, 1, 1000, "a"), peerV4(10, 0, 0, 2, 1000, "b")
	e.announce(known, a, leech)
	e.announce(known, b, leech)
	before := mb.MemoryUsage()
	if before.Bytes <= 0 || before.Limit != 0 {
		e.t.Fatalf("MemoryUsage %+v with two peers and no bound", before)
	}
	mb.SetMemoryLimit(1)
	fresh := hashOf("fresh")
	if _, _, err := e.s.Announce(e.ctx, store.Announce{InfoHash: fresh, Peer: a, NumWant: 10}, nil); !errors.Is(err, store.ErrNoNewTorrents) {
		e.t.Fatalf("new torrent at the bound: err %v, want store.ErrNoNewTorrents", err)
	}
	c := peerV4(10, 0, 0, 3, 1000, "c")
	if _, _, err := e.s.Announce(e.ctx, store.Announce{InfoHash: known, Peer: c, NumWant: 10}, nil); !errors.Is(err, store.ErrNoNewPeers) {
		e.t.Fatalf("new peer at the bound: err %v, want store.ErrNoNewPeers", err)
	}
	peers, st := e.announce(known, a, ann{numWant: 10, event: bittorrent.EventCompleted})
	e.wantPeers("re-announce at the bound", peers, b)
	e.wantStats("re-announce at the bound", st, bittorrent.Stats{Leechers: 2, Downloaded: 1})
	e.announce(known, b, stopped)
	e.wantStats("scrape at the bound", e.scrapeOne(known), bittorrent.Stats{Leechers: 1, Downloaded: 1})
	e.wantStats("scrape of the refused torrent", e.scrapeOne(fresh), bittorrent.Stats{})
	if u := mb.MemoryUsage(); u.Refused != before.Refused+2 || u.Limit != 1 || !u.Shedding {
		e.t.Errorf("MemoryUsage %+v after two refusals at a bound of 1 byte", u)
	}
	mb.SetMemoryLimit(0)
	e.announce(fresh, a, leech)
	e.wantStats("new torrent without a bound", e.scrapeOne(fresh), bittorrent.Stats{Leechers: 1})
}
