package memory

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"trackd/bittorrent"
	"trackd/store"
)

type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := new(fakeClock)
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestRecordSizes(t *testing.T) {
	if n := unsafe.Sizeof(peer4{}); n != 32 {
		t.Errorf("peer4 is %d bytes, want 32", n)
	}
	if n := unsafe.Sizeof(peer6{}); n != 44 {
		t.Errorf("peer6 is %d bytes, want 44", n)
	}
	if n := unsafe.Sizeof(swarm{}); n != 48 {
		t.Errorf("swarm is %d bytes, want 48", n)
	}
	if n := unsafe.Sizeof(shard{}); n != 64 {
		t.Errorf("shard is %d bytes, want 64", n)
	}
}

// checkIndexed checks that a family of n peers has an index if and only if
// it should: above indexMin it must, below indexMin/2 it must not, between
// it may; and that the index is at most 3/4 full.
func checkIndexed(t *testing.T, what string, n int, ix index) {
	t.Helper()
	if (n > indexMin && ix == nil) || (n < indexMin/2 && ix != nil) || (ix != nil && n*4 > len(ix)*3) {
		t.Fatalf("%s: %d peers, index of %d", what, n, len(ix))
	}
	used := 0
	for _, e := range ix {
		if e != 0 {
			used++
		}
	}
	if ix != nil && used != n {
		t.Fatalf("%s: %d index entries for %d peers", what, used, n)
	}
}

// TestFamily drives one family through random joins, leaves and role
// changes, across the sizes where it gains and loses its index, and checks
// it against a map after every step.
func TestFamily(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var v4 []peer4
	var ns uint32
	var ix index
	f := family[peer4]{s: &v4, ns: &ns, idx: &ix, hash: hashPeer4}
	role := make(map[uint64]bool) // key -> seeder
	find := func(k uint64) int {
		sw := swarm{v4: v4, ns4: ns, x: &extra{idx4: ix}}
		return sw.find4(k)
	}
	grow := false
	for step := range 60000 {
		if step%5000 == 0 {
			grow = !grow
		}
		k := uint64(rng.IntN(1500))
		i := find(k)
		switch {
		case i < 0 && (grow || rng.IntN(3) == 0):
			seeder := rng.IntN(2) == 0
			pos := f.push(peer4{ip: uint32(k >> 16), port: uint16(k)}, seeder)
			if v4[pos].key() != k {
				t.Fatalf("step %d: push returned %d, which holds %d, not %d", step, pos, v4[pos].key(), k)
			}
			role[k] = seeder
		case i >= 0 && (!grow || rng.IntN(4) == 0):
			f.remove(i)
			delete(role, k)
		case i >= 0:
			var pos int
			if role[k] {
				pos = f.toLeecher(i)
			} else {
				pos = f.toSeeder(i)
			}
			role[k] = !role[k]
			if v4[pos].key() != k {
				t.Fatalf("step %d: role change returned %d, which holds %d, not %d", step, pos, v4[pos].key(), k)
			}
		}
		if step%50 == 0 || len(role) < 2*indexMin {
			checkFamily(t, step, v4, ns, ix, role)
		}
	}
}

func checkFamily(t *testing.T, step int, v4 []peer4, ns uint32, ix index, role map[uint64]bool) {
	t.Helper()
	if len(v4) != len(role) {
		t.Fatalf("step %d: %d records, want %d", step, len(v4), len(role))
	}
	checkIndexed(t, fmt.Sprintf("step %d", step), len(v4), ix)
	if len(v4) == 0 && v4 != nil {
		t.Fatalf("step %d: empty family keeps its array", step)
	}
	if cap(v4) >= 8 && len(v4) < cap(v4)/4 {
		t.Fatalf("step %d: len %d of cap %d, not shrunk", step, len(v4), cap(v4))
	}
	sw := swarm{v4: v4, ns4: ns, x: &extra{idx4: ix}}
	for i := range v4 {
		k := v4[i].key()
		seeder, ok := role[k]
		if !ok || seeder != (i < int(ns)) {
			t.Fatalf("step %d: record %d (key %d) seeder %v, want %v (known %v)", step, i, k, i < int(ns), seeder, ok)
		}
		if j := sw.find4(k); j != i {
			t.Fatalf("step %d: find of record %d returned %d", step, i, j)
		}
	}
}

// reachable reports whether a probe for h finds the entry for pos before an
// empty entry.
func reachable(ix index, h uint32, pos int) bool {
	want := uint64(h)<<32 | uint64(pos+1)
	for e := int(h) & ix.mask(); ix[e] != 0; e = (e + 1) & ix.mask() {
		if ix[e] == want {
			return true
		}
	}
	return false
}

// TestIndexDel checks backward-shift deletion where homes collide and
// clusters wrap around the end of the table.
func TestIndexDel(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for round := range 2000 {
		ix := make(index, 16)
		live := make(map[int]uint32) // pos -> hash
		for pos := range 12 {
			h := uint32(rng.IntN(4)) + 13 // homes 13-16: wrap
			ix.add(h, pos)
			live[pos] = h
		}
		for len(live) > 0 {
			pos := rng.IntN(12)
			h, ok := live[pos]
			if !ok {
				continue
			}
			ix.del(ix.entry(h, pos))
			delete(live, pos)
			used := 0
			for _, e := range ix {
				if e != 0 {
					used++
				}
			}
			if used != len(live) {
				t.Fatalf("round %d: %d entries, want %d", round, used, len(live))
			}
			for p, h := range live {
				if !reachable(ix, h, p) {
					t.Fatalf("round %d: entry for %d unreachable after a deletion", round, p)
				}
			}
		}
	}
}

type modelPeer struct {
	id              bittorrent.PeerID
	seeder, counted bool
	exp             time.Time
}

// checkSwarm checks the layout invariants of sw against the model.
func checkSwarm(t *testing.T, sw *swarm, model map[netip.AddrPort]*modelPeer, downloaded uint32) {
	t.Helper()
	var want store.Stats
	for _, p := range model {
		if p.seeder {
			want.Seeders++
		} else {
			want.Leechers++
		}
	}
	want.Downloaded = downloaded
	var got store.Stats
	if sw != nil {
		got = sw.stats()
	}
	if got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
	if sw == nil {
		return
	}
	seen := 0
	check := func(addr netip.AddrPort, id bittorrent.PeerID, seeder bool, flags uint8) {
		t.Helper()
		m := model[addr]
		if m == nil || m.id != id || m.seeder != seeder || m.counted != (flags&flagCompleted != 0) {
			t.Fatalf("stored %v id %v seeder %v flags %d; model %+v", addr, id, seeder, flags, m)
		}
		seen++
	}
	ns := int(sw.ns4)
	for i := range sw.v4 {
		p := &sw.v4[i]
		check(p.peer().Addr, p.id, i < ns, p.flags)
		if p.exp < sw.minExp {
			t.Fatalf("v4 peer expires at %d before the swarm's minExp %d", p.exp, sw.minExp)
		}
		if j := sw.find4(p.key()); j != i {
			t.Fatalf("find4 of v4 peer %d returned %d", i, j)
		}
	}
	if x := sw.x; x != nil {
		if len(x.v6) == 0 && x.idx4 == nil {
			t.Fatalf("empty extra kept")
		}
		checkIndexed(t, "v4", len(sw.v4), x.idx4)
		checkIndexed(t, "v6", len(x.v6), x.idx6)
		ns := int(x.ns6)
		for i := range x.v6 {
			p := &x.v6[i]
			check(p.peer().Addr, p.id, i < ns, p.flags)
			if p.exp < sw.minExp {
				t.Fatalf("v6 peer expires at %d before the swarm's minExp %d", p.exp, sw.minExp)
			}
			if j := x.find6(p.key()); j != i {
				t.Fatalf("find6 of v6 peer %d returned %d", i, j)
			}
		}
	} else {
		checkIndexed(t, "v4", len(sw.v4), nil)
	}
	if seen != len(model) {
		t.Fatalf("%d peers stored, model has %d", seen, len(model))
	}
}

// lookup returns the swarm of h, nil if none.
func lookup(s *Store, h bittorrent.InfoHash) *swarm {
	sh, tag := s.shardFor(&h)
	if i, ok := sh.swarms.find(&h, tag); ok {
		return &sh.swarms.slots[i].sw
	}
	return nil
}

// TestModel drives one swarm with random announces from a small pool of
// addresses (so that sessions collide, move and stop) and checks it, the
// totals and the returned peers against a model after every step.
func TestModel(t *testing.T) {
	// Small swarms, peers expiring within a hundred steps or so.
	t.Run("small", func(t *testing.T) { testModel(t, 60, time.Minute, 20000) })
	// Big swarms that gain and lose their indexes as they grow for a few
	// thousand steps and then expire.
	t.Run("big", func(t *testing.T) { testModel(t, 900, 30*time.Minute, 20000) })
}

func testModel(t *testing.T, poolSize int, lifetime time.Duration, steps int) {
	clock := newFakeClock()
	s := NewWithConfig(store.Options{PeerLifetime: lifetime, Now: clock.Now}, Config{Shards: 1, SweepInterval: -1})
	defer s.Close()
	ctx := context.Background()
	h := bittorrent.InfoHash{1}
	rng := rand.New(rand.NewPCG(3, uint64(poolSize)))
	var pool []netip.AddrPort
	for i := range poolSize {
		if i%3 == 0 {
			pool = append(pool, netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 1, 14: byte(i >> 8), 15: byte(i)}), uint16(i/7%3)))
		} else {
			pool = append(pool, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), uint16(i/5%3)))
		}
	}
	model := make(map[netip.AddrPort]*modelPeer)
	var downloaded uint32
	var indexed4, indexed6 int // steps that ended with an index
	defer func() {
		if poolSize > 3*indexMin && (indexed4 == 0 || indexed6 == 0) {
			t.Errorf("IPv4 family indexed after %d steps, IPv6 after %d: the test does not reach the indexes", indexed4, indexed6)
		}
	}()
	var buf []bittorrent.Peer
	for step := range steps {
		if rng.IntN(50) == 0 {
			clock.Advance(time.Duration(rng.IntN(40)) * time.Second)
		}
		now := clock.Now()
		// The clock moves by whole seconds from a whole second, so expiry
		// (kept in whole seconds) is exact.
		for addr, p := range model {
			if !now.Before(p.exp) {
				delete(model, addr)
			}
		}
		addr := pool[rng.IntN(len(pool))]
		var id bittorrent.PeerID
		id[0], id[1] = byte(step), byte(step>>8)
		a := store.Announce{InfoHash: h, Peer: bittorrent.Peer{ID: id, Addr: addr}, Seeder: rng.IntN(2) == 0, NumWant: rng.IntN(30)}
		switch rng.IntN(8) {
		case 0:
			a.Event = bittorrent.EventStopped
		case 1, 2:
			a.Event = bittorrent.EventCompleted
		}
		var st store.Stats
		var err error
		buf, st, err = s.Announce(ctx, a, buf[:0])
		if err != nil {
			t.Fatal(err)
		}
		if a.Event == bittorrent.EventStopped {
			delete(model, addr)
		} else {
			m := model[addr]
			if m == nil {
				m = new(modelPeer)
				model[addr] = m
			}
			m.id, m.seeder, m.exp = id, a.Seeder, now.Add(lifetime)
			if a.Event == bittorrent.EventCompleted && !m.counted {
				m.counted = true
				downloaded++
			}
		}
		sw := lookup(s, h)
		if sw != nil && sw.x != nil {
			if sw.x.idx4 != nil {
				indexed4++
			}
			if sw.x.idx6 != nil {
				indexed6++
			}
		}
		if sw != nil && st != sw.stats() {
			t.Fatalf("step %d: announce returned %+v, swarm has %+v", step, st, sw.stats())
		}
		// A full check costs O(peers): do it on every step near the sizes
		// where an index comes or goes, on one in five elsewhere.
		if n := len(model); step%5 != 0 && (n < indexMin/3 || n > 3*indexMin) {
			continue
		}
		checkSwarm(t, sw, model, downloaded)
		candidates := 0
		for other, m := range model {
			if other != addr && (!a.Seeder || !m.seeder) {
				candidates++
			}
		}
		if want := min(a.NumWant, candidates); len(buf) != want {
			t.Fatalf("step %d: %d peers returned, want %d", step, len(buf), want)
		}
		seen := make(map[netip.AddrPort]bool)
		for _, p := range buf {
			m := model[p.Addr]
			if m == nil || m.id != p.ID || p.Addr == addr || seen[p.Addr] || (a.Seeder && m.seeder) {
				t.Fatalf("step %d: returned %v, model %+v", step, p, m)
			}
			seen[p.Addr] = true
		}
		tot, _ := s.Totals(ctx)
		if want := uint64(len(model)); tot.Peers() != want {
			t.Fatalf("step %d: totals %+v, model has %d peers", step, tot, want)
		}
	}
}

// TestPick checks the sampler on its own: counts, no duplicates, never the
// announcing peer, only leechers for a seeder, and (with a fixed seed, so
// the test is deterministic) every candidate chosen as often as the others.
func TestPick(t *testing.T) {
	rng := rand.NewPCG(5, 6)
	for _, tc := range []struct {
		seeders4, leechers4, seeders6, leechers6 int
	}{
		{0, 0, 0, 0}, {1, 0, 0, 0}, {0, 1, 0, 0}, {3, 4, 0, 0}, {0, 0, 3, 4},
		{10, 20, 5, 7}, {7, 0, 0, 9}, {0, 13, 2, 0}, {100, 37, 11, 3},
	} {
		sw := &swarm{minExp: noExp}
		for i := range tc.seeders4 + tc.leechers4 {
			sw.apply4(&store.Announce{Seeder: i < tc.seeders4}, uint32(i), 1, 100)
		}
		for i := range tc.seeders6 + tc.leechers6 {
			ip := [16]byte{0: 0x20, 15: byte(i)}
			sw.apply6(&store.Announce{Seeder: i < tc.seeders6}, &ip, 1, 100)
		}
		n4, n6 := len(sw.v4), 0
		if sw.x != nil {
			n6 = len(sw.x.v6)
		}
		type self struct {
			seeder       bool
			self4, self6 int
		}
		selves := []self{{false, -1, -1}, {true, -1, -1}}
		if tc.leechers4 > 0 {
			selves = append(selves, self{false, n4 - 1, -1})
		}
		if tc.seeders4 > 0 {
			selves = append(selves, self{true, 0, -1})
		}
		if tc.leechers6 > 0 {
			selves = append(selves, self{false, -1, n6 - 1})
		}
		for _, me := range selves {
			var cand []bittorrent.Peer
			for i := range sw.v4 {
				if i != me.self4 && (!me.seeder || i >= int(sw.ns4)) {
					cand = append(cand, sw.v4[i].peer())
				}
			}
			for i := 0; i < n6; i++ {
				if i != me.self6 && (!me.seeder || i >= int(sw.x.ns6)) {
					cand = append(cand, sw.x.v6[i].peer())
				}
			}
			for _, want := range []int{0, 1, 2, 5, len(cand) - 1, len(cand), len(cand) + 3} {
				if want < 0 {
					continue
				}
				name := fmt.Sprintf("%v/self %+v/want %d", tc, me, want)
				isCand := make(map[bittorrent.Peer]bool, len(cand))
				for _, p := range cand {
					isCand[p] = true
				}
				counts := make(map[netip.AddrPort]int)
				const rounds = 2000
				for range rounds {
					got := sw.pick(rng, me.seeder, store.AnyFamily, me.self4, me.self6, want, nil)
					if len(got) != min(want, len(cand)) {
						t.Fatalf("%s: %d peers, want %d", name, len(got), min(want, len(cand)))
					}
					for _, p := range got {
						if !isCand[p] {
							t.Fatalf("%s: %v is not a candidate", name, p)
						}
						counts[p.Addr]++
					}
				}
				if len(cand) == 0 || want == 0 || want >= len(cand) {
					continue
				}
				// Each candidate is expected exp = rounds*want/len(cand)
				// times; allow 5 standard deviations (at most sqrt(exp)),
				// deterministic with the fixed seed. A sampler without the
				// rotation, whose strata differ in size, is off by more
				// (e.g. 3 of 7: 667 or 1000 picks instead of 857 ± 145).
				exp := float64(rounds*min(want, len(cand))) / float64(len(cand))
				tol := 5*math.Sqrt(exp) + 1
				total := 0
				for _, p := range cand {
					c := counts[p.Addr]
					total += c
					if d := float64(c) - exp; d > tol || d < -tol {
						t.Errorf("%s: %v chosen %d times, expected %.0f", name, p.Addr, c, exp)
					}
				}
				if total != rounds*min(want, len(cand)) {
					t.Errorf("%s: duplicates: %d picks counted, want %d", name, total, rounds*min(want, len(cand)))
				}
			}
		}
	}
}

// TestExpiryRounding checks that expiry is rounded up to whole seconds: a
// peer never expires before its lifetime, and at most a second after.
func TestExpiryRounding(t *testing.T) {
	clock := newFakeClock()
	s := NewWithConfig(store.Options{PeerLifetime: 10 * time.Second, Now: clock.Now}, Config{SweepInterval: -1})
	defer s.Close()
	ctx := context.Background()
	h := bittorrent.InfoHash{7}
	clock.Advance(300 * time.Millisecond)
	p := bittorrent.Peer{Addr: netip.MustParseAddrPort("192.0.2.1:1")}
	s.Announce(ctx, store.Announce{InfoHash: h, Peer: p}, nil)
	clock.Advance(10*time.Second - time.Nanosecond)
	if st, _ := s.Scrape(ctx, []bittorrent.InfoHash{h}, nil); st[0].Leechers != 1 {
		t.Errorf("peer expired before its lifetime")
	}
	clock.Advance(time.Second + time.Nanosecond)
	if st, _ := s.Scrape(ctx, []bittorrent.InfoHash{h}, nil); st[0].Leechers != 0 {
		t.Errorf("peer alive a second after its lifetime")
	}
}

// TestSweeper checks that the background sweeper frees expired peers and
// empty swarms without any request, and keeps swarms with downloads.
func TestSweeper(t *testing.T) {
	clock := newFakeClock()
	s := NewWithConfig(store.Options{PeerLifetime: time.Minute, Now: clock.Now}, Config{Shards: 16, SweepInterval: time.Millisecond})
	defer s.Close()
	ctx := context.Background()
	for i := range 100 {
		a := store.Announce{InfoHash: bittorrent.InfoHash{byte(i)}, Peer: bittorrent.Peer{Addr: netip.MustParseAddrPort("192.0.2.1:1")}}
		if i%10 == 0 {
			a.Event = bittorrent.EventCompleted
		}
		s.Announce(ctx, a, nil)
	}
	clock.Advance(2 * time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, empty := 0, 0
		for i := range s.shards {
			sh := &s.shards[i]
			sh.mu.Lock()
			for _, sl := range sh.swarms.slots {
				if sl.tag != 0 {
					n++
					if sl.sw.numPeers() == 0 {
						empty++
					}
				}
			}
			sh.mu.Unlock()
		}
		if n == 10 && empty == 10 && s.sweptThrough.Load() >= s.nowSec() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sweeper left %d swarms, %d of them empty; want the 10 with downloads, empty", n, empty)
		}
		time.Sleep(time.Millisecond)
	}
	if tot, _ := s.Totals(ctx); tot != (store.Totals{}) {
		t.Errorf("totals %+v after the sweep", tot)
	}
}

// TestTotalsSweeps checks that Totals drops expired peers itself when no
// sweeper has, and frees their swarms.
func TestTotalsSweeps(t *testing.T) {
	clock := newFakeClock()
	s := NewWithConfig(store.Options{PeerLifetime: time.Minute, Now: clock.Now}, Config{Shards: 8, SweepInterval: -1})
	defer s.Close()
	ctx := context.Background()
	for i := range 1000 {
		h := bittorrent.InfoHash{byte(i), byte(i >> 8)}
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i % 7)}), 1)
		s.Announce(ctx, store.Announce{InfoHash: h, Peer: bittorrent.Peer{Addr: addr}, Seeder: i%4 != 0}, nil)
	}
	if tot, _ := s.Totals(ctx); tot != (store.Totals{Torrents: 1000, Seeders: 750, Leechers: 250}) {
		t.Errorf("totals %+v", tot)
	}
	clock.Advance(61 * time.Second)
	if tot, _ := s.Totals(ctx); tot != (store.Totals{}) {
		t.Errorf("totals %+v after expiry", tot)
	}
	for i := range s.shards {
		if n := s.shards[i].swarms.n; n != 0 || s.shards[i].swarms.slots != nil {
			t.Errorf("shard %d keeps %d swarms", i, n)
		}
	}
}

func TestInvalidAddr(t *testing.T) {
	s := New(store.Options{PeerLifetime: time.Minute})
	defer s.Close()
	_, _, err := s.Announce(context.Background(), store.Announce{}, nil)
	if err == nil {
		t.Error("announce without an address succeeded")
	}
}

// TestReannounceAllocs checks that a re-announce of a known peer allocates
// nothing when the caller's slice has room.
func TestReannounceAllocs(t *testing.T) {
	s := New(store.Options{PeerLifetime: time.Hour})
	defer s.Close()
	ctx := context.Background()
	h := bittorrent.InfoHash{9}
	for i := range 200 {
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 1)
		if i%5 == 0 {
			addr = netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 15: byte(i)}), 1)
		}
		s.Announce(ctx, store.Announce{InfoHash: h, Peer: bittorrent.Peer{Addr: addr}, Seeder: i%4 != 0}, nil)
	}
	buf := make([]bittorrent.Peer, 0, 50)
	for _, addr := range []string{"10.0.0.1:1", "10.0.0.4:1", "[2000::5]:1"} {
		for _, seeder := range []bool{false, true} {
			a := store.Announce{InfoHash: h, Peer: bittorrent.Peer{Addr: netip.MustParseAddrPort(addr)}, Seeder: seeder, NumWant: 50}
			s.Announce(ctx, a, buf)
			allocs := testing.AllocsPerRun(1000, func() {
				buf, _, _ = s.Announce(ctx, a, buf[:0])
			})
			if allocs != 0 {
				t.Errorf("re-announce of %s (seeder %v): %v allocations", addr, seeder, allocs)
			}
		}
	}
}

// TestTotalsLeavesSweepingToSweeper checks that Totals, asked on every
// announce, does not sweep the store on the request path while the
// background sweeper keeps up, and that the sweeper then brings it to the
// exact counts.
func TestTotalsLeavesSweepingToSweeper(t *testing.T) {
	clock := newFakeClock()
	s := NewWithConfig(store.Options{PeerLifetime: time.Minute, Now: clock.Now}, Config{Shards: 8, SweepInterval: 50 * time.Millisecond})
	defer s.Close()
	ctx := context.Background()
	for i := range 1000 {
		h := bittorrent.InfoHash{byte(i), byte(i >> 8)}
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i % 7)}), 1)
		s.Announce(ctx, store.Announce{InfoHash: h, Peer: bittorrent.Peer{Addr: addr}, Seeder: i%4 != 0}, nil)
	}
	clock.Advance(59 * time.Second)
	s.Totals(ctx) // far behind: Totals catches up itself
	swept := s.sweptThrough.Load()
	if swept != s.nowSec() {
		t.Fatalf("Totals 59 s behind did not sweep: swept through %d, now %d", swept, s.nowSec())
	}
	// The sweeper must not run between the jump and Totals for this check;
	// a Totals that sweeps would wait for the lock: that is a failure too.
	s.sweepMu.Lock()
	clock.Advance(2 * time.Second) // every peer expired, sweeper 2 s behind
	got := make(chan store.Totals, 1)
	go func() { tot, _ := s.Totals(ctx); got <- tot }()
	var tot store.Totals
	select {
	case tot = <-got:
	case <-time.After(5 * time.Second):
		s.sweepMu.Unlock()
		t.Fatal("Totals waited to sweep while the sweeper was 2 s behind")
	}
	s.sweepMu.Unlock()
	if tot.Torrents != 1000 {
		t.Errorf("Totals swept on the request path while the sweeper was %d s behind: %+v", s.nowSec()-swept, tot)
	}
	deadline := time.Now().Add(10 * time.Second)
	for tot != (store.Totals{}) {
		if time.Now().After(deadline) {
			t.Fatalf("sweeper did not bring Totals to zero: %+v", tot)
		}
		time.Sleep(10 * time.Millisecond)
		tot, _ = s.Totals(ctx)
	}
}
