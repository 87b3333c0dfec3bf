package memory

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/internal/race"
	"trackd/store"
)

type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := new(fakeClock)
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// newShard returns a shard of its own, for tests that drive swarms
// directly; release frees its memory.
func newShard(ids bool) (sh *shard, release func()) {
	sh = &shard{shardState: shardState{heap: new(heap), ids: ids}}
	sh.rng.Seed(5, 6)
	return sh, func() {
		sh.mem.release()
		sh.heap.release()
	}
}

// addSwarm adds a swarm to the table of sh and returns a function that
// finds it (its slot moves when the table grows or the shard compacts its
// memory).
func addSwarm(sh *shard) func() *swarm {
	seed := maphash.MakeSeed()
	h := bittorrent.InfoHash{1}
	hash := maphash.Bytes(seed, h[:])
	i, _ := sh.swarms.find(sh, &h, hash)
	sh.swarms.insert(sh, seed, &h, hash, i)
	return func() *swarm {
		i, ok := sh.swarms.find(sh, &h, hash)
		if !ok {
			panic("swarm lost")
		}
		return &sh.swarms.slots(sh)[i]
	}
}

// testID is the peer id the tests give the session k.
func testID(k uint64, gen int) bittorrent.PeerID {
	var id bittorrent.PeerID
	copy(id[:], fmt.Sprintf("%x/%d", k, gen))
	return id
}

// checkIndexed checks that a family of n peers has an index if and only if
// it should: above min it must, below min/2 it must not, between it may;
// and that the index is at most 3/4 full.
func checkIndexed(t *testing.T, what string, n, min int, ix index) {
	t.Helper()
	if (n > min && ix == nil) || (n < min/2 && ix != nil) || (ix != nil && n*4 > len(ix)*3) {
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

// TestFamily drives one IPv4 family through random joins, leaves and role
// changes, across the sizes where it gains and loses its index and moves
// between blocks, and checks it against a map after every step, with and
// without peer ids.
func TestFamily(t *testing.T) {
	for _, ids := range []bool{false, true} {
		t.Run(fmt.Sprintf("ids=%v", ids), func(t *testing.T) { testFamily(t, ids) })
	}
}

func testFamily(t *testing.T, ids bool) {
	sh, release := newShard(ids)
	defer release()
	get := addSwarm(sh)
	sh.addExtra(get()) // so that the family may have an index
	rng := rand.New(rand.NewPCG(1, 2))
	type state struct {
		seeder bool
		gen    int
	}
	model := make(map[uint64]state) // key -> role and id generation
	grow := false
	steps := 60000
	if race.Enabled {
		steps /= 4
	}
	for step := range steps {
		if step%5000 == 0 {
			grow = !grow
		}
		sh.tidyMemory() // between operations, as the store does
		sw := get()
		f := open4(sh, sw)
		k := uint64(rng.IntN(1500))
		ip, port := uint32(k>>16), uint16(k)
		i := find4(f.recs, f.index(), ip, port)
		switch {
		case i < 0 && (grow || rng.IntN(3) == 0):
			seeder := rng.IntN(2) == 0
			id := testID(k, step)
			pos := f.push(peer4{ip: ip, port: port}, &id, seeder)
			if f.recs[pos].key() != k {
				t.Fatalf("step %d: push returned %d, which holds %d, not %d", step, pos, f.recs[pos].key(), k)
			}
			model[k] = state{seeder, step}
		case i >= 0 && (!grow || rng.IntN(4) == 0):
			f.remove(i)
			delete(model, k)
		case i >= 0:
			var pos int
			m := model[k]
			if m.seeder {
				pos = f.toLeecher(i)
			} else {
				pos = f.toSeeder(i)
			}
			m.seeder = !m.seeder
			model[k] = m
			if f.recs[pos].key() != k {
				t.Fatalf("step %d: role change returned %d, which holds %d, not %d", step, pos, f.recs[pos].key(), k)
			}
		}
		if step%50 == 0 || len(model) < 16 || nearIndexSize(len(model)) {
			f = open4(sh, sw)
			if len(f.recs) != len(model) || int(sw.v4.n) != len(model) {
				t.Fatalf("step %d: %d records (header %d), want %d", step, len(f.recs), sw.v4.n, len(model))
			}
			checkIndexed(t, fmt.Sprintf("step %d", step), len(f.recs), indexMin4, f.index())
			if len(f.recs) == 0 && sw.v4.h != 0 {
				t.Fatalf("step %d: empty family keeps its block", step)
			}
			if n := len(f.recs); n > 0 && n < cap(f.recs)/2 {
				t.Fatalf("step %d: %d records in a block of %d, not shrunk", step, n, cap(f.recs))
			}
			for i := range f.recs {
				k := f.recs[i].key()
				m, ok := model[k]
				if !ok || m.seeder != (i < int(sw.v4.ns)) {
					t.Fatalf("step %d: record %d (key %d) seeder %v, want %v (known %v)", step, i, k, i < int(sw.v4.ns), m.seeder, ok)
				}
				if want := testID(k, m.gen); ids && f.ids[i] != want || !ids && f.ids != nil {
					t.Fatalf("step %d: record %d (key %d) has id %q, want %q", step, i, k, f.id(i), want)
				}
				if j := find4(f.recs, f.index(), f.recs[i].ip, f.recs[i].port); j != i {
					t.Fatalf("step %d: find of record %d returned %d", step, i, j)
				}
			}
			checkMemory(t, sh)
		}
	}
	sw := get()
	sh.freeSwarm(sw)
	if sw.v4.h != 0 || sw.x != 0 {
		t.Fatalf("freeSwarm left blocks: %+v", sw)
	}
	if live := sh.mem.carved - sh.mem.freed; live != sh.swarms.size.bytes() || sh.heap.bytes.Load() != 0 {
		t.Errorf("%d small (table: %d) and %d large bytes still in use after freeing the swarm", live, sh.swarms.size.bytes(), sh.heap.bytes.Load())
	}
}

// nearIndexSize reports whether a family of n peers is within a few peers
// of a size where it gains or loses its index.
func nearIndexSize(n int) bool {
	for _, m := range []int{indexMin4 / 2, indexMin4, indexMin6 / 2, indexMin6} {
		if n >= m-4 && n <= m+4 {
			return true
		}
	}
	return false
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

// liveBytes returns the bytes of the small blocks the shard's swarms and
// table own, walking them as compaction does.
func liveBytes(sh *shard) int {
	n := 0
	small := func(h handle, size blockSize) {
		if h != 0 && h&largeBit == 0 {
			n += size.bytes()
		}
	}
	t := &sh.swarms
	small(t.h, t.size)
	for i := range t.slots(sh) {
		sw := &t.slots(sh)[i]
		if sw.minExp == 0 {
			continue
		}
		small(sw.v4.h, sw.v4.size)
		if sw.x != 0 {
			small(sw.x, extraSize)
			x := sh.extra(sw)
			small(x.v6.h, x.v6.size)
			small(x.idx4.h, blockSize(x.idx4.n))
			small(x.idx6.h, blockSize(x.idx6.n))
		}
	}
	return n
}

// checkMemory checks that the shard's region accounts for exactly the
// blocks its swarms own: no block leaked, none freed twice.
func checkMemory(t *testing.T, sh *shard) {
	t.Helper()
	if got, want := sh.mem.carved-sh.mem.freed, liveBytes(sh); got != want {
		t.Fatalf("region: %d bytes carved, %d free, so %d in use; the swarms own %d", sh.mem.carved, sh.mem.freed, got, want)
	}
	free := 0
	for c, h := range sh.mem.frees {
		for ; h != 0; h = *(*handle)(sh.mem.ptr(h)) {
			free += classSize(c)
		}
	}
	if free != sh.mem.freed {
		t.Fatalf("free lists hold %d bytes, region counts %d", free, sh.mem.freed)
	}
}

// checkSwarm checks the layout invariants of sw against the model.
func checkSwarm(t *testing.T, sh *shard, sw *swarm, model map[netip.AddrPort]*modelPeer, downloaded uint32, now time.Time, base time.Time) {
	t.Helper()
	var want bittorrent.Stats
	for _, p := range model {
		if p.seeder {
			want.Seeders++
		} else {
			want.Leechers++
		}
	}
	want.Downloaded = downloaded
	var got bittorrent.Stats
	if sw != nil {
		got = sh.stats(sw)
	}
	if got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
	if sw == nil {
		return
	}
	seen := 0
	check := func(addr netip.AddrPort, id bittorrent.PeerID, seeder bool, e uint16) {
		t.Helper()
		m := model[addr]
		if m == nil || (sh.ids && m.id != id) || (!sh.ids && id != bittorrent.PeerID{}) || m.seeder != seeder || m.counted != (e&flagCompleted != 0) {
			t.Fatalf("stored %v id %q seeder %v flags %x; model %+v", addr, id, seeder, e, m)
		}
		// The record's expiry, read back through the swarm's minExp, is
		// the model's, rounded up to a whole second.
		exp := expiryOf(e, sw.minExp)
		if wantExp := uint32((m.exp.Sub(base) + time.Second - 1) / time.Second); exp != wantExp {
			t.Fatalf("%v expires at second %d, want %d (minExp %d)", addr, exp, wantExp, sw.minExp)
		}
		seen++
	}
	f4 := open4(sh, sw)
	ns := int(sw.v4.ns)
	for i := range f4.recs {
		p := &f4.recs[i]
		check(p.addr(), f4.id(i), i < ns, p.e)
		if j := find4(f4.recs, f4.index(), p.ip, p.port); j != i {
			t.Fatalf("find4 of v4 peer %d returned %d", i, j)
		}
	}
	if sw.x != 0 {
		x := sh.extra(sw)
		if x.v6.n == 0 && x.idx4.n == 0 {
			t.Fatalf("empty extra kept")
		}
		checkIndexed(t, "v4", len(f4.recs), indexMin4, f4.index())
		f6 := open6(sh, x)
		checkIndexed(t, "v6", len(f6.recs), indexMin6, f6.index())
		ns := int(x.v6.ns)
		for i := range f6.recs {
			p := &f6.recs[i]
			check(p.addr(), f6.id(i), i < ns, p.e)
			if j := find6(f6.recs, f6.index(), p.key()); j != i {
				t.Fatalf("find6 of v6 peer %d returned %d", i, j)
			}
		}
	} else {
		checkIndexed(t, "v4", len(f4.recs), indexMin4, nil)
	}
	if seen != len(model) {
		t.Fatalf("%d peers stored, model has %d", seen, len(model))
	}
}

// lookup returns the shard of h and its swarm, nil if none.
func lookup(s *Store, h bittorrent.InfoHash) (*shard, *swarm) {
	sh, hash := s.shardFor(&h)
	if i, ok := sh.swarms.find(sh, &h, hash); ok {
		return sh, &sh.swarms.slots(sh)[i]
	}
	return sh, nil
}

// TestModel drives one swarm with random announces from a small pool of
// addresses (so that sessions collide, move and stop) and checks it, the
// totals, the returned peers and the shard's memory against a model after
// every step, with and without peer ids.
func TestModel(t *testing.T) {
	for _, ids := range []bool{false, true} {
		// Small swarms, peers expiring within a hundred steps or so.
		t.Run(fmt.Sprintf("small/ids=%v", ids), func(t *testing.T) { testModel(t, 60, time.Minute, 40*time.Second, 20000, ids) })
		// Big swarms that gain and lose their indexes as they grow for a
		// few thousand steps and then expire.
		t.Run(fmt.Sprintf("big/ids=%v", ids), func(t *testing.T) { testModel(t, 1800, 30*time.Minute, 40*time.Second, 20000, ids) })
		// The longest lifetime, with jumps of hours between announces: the
		// 15-bit expiries wrap many times over, and a swarm is left alone
		// for longer than their window (no sweeper).
		t.Run(fmt.Sprintf("long/ids=%v", ids), func(t *testing.T) { testModel(t, 200, MaxPeerLifetime, 5*time.Hour, 20000, ids) })
	}
}

func testModel(t *testing.T, poolSize int, lifetime, maxJump time.Duration, steps int, ids bool) {
	clock := newFakeClock()
	s := NewWithConfig(store.Options{PeerLifetime: lifetime, PeerIDs: ids, Now: clock.Now}, Config{Shards: 1, SweepInterval: -1})
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
		if poolSize > 3*indexMin4 && (indexed4 == 0 || indexed6 == 0) {
			t.Errorf("IPv4 family indexed after %d steps, IPv6 after %d: the test does not reach the indexes", indexed4, indexed6)
		}
	}()
	if race.Enabled {
		steps /= 4
	}
	var buf []bittorrent.Peer
	for step := range steps {
		if rng.IntN(50) == 0 {
			clock.Advance(time.Duration(rng.Int64N(int64(maxJump/time.Second))) * time.Second)
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
		var st bittorrent.Stats
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
		sh, sw := lookup(s, h)
		if sw != nil && sw.x != 0 {
			if x := sh.extra(sw); x.idx4.n != 0 {
				indexed4++
			}
			if x := sh.extra(sw); x.idx6.n != 0 {
				indexed6++
			}
		}
		if sw != nil && st != sh.stats(sw) {
			t.Fatalf("step %d: announce returned %+v, swarm has %+v", step, st, sh.stats(sw))
		}
		if sh.mem.needsCompaction() {
			t.Fatalf("step %d: region left needing compaction: %d chunks, %d of %d bytes free", step, sh.mem.n, sh.mem.freed, sh.mem.carved)
		}
		// A full check costs O(peers), or O(peers²) without an index: do
		// it on every step near the sizes where an index comes or goes
		// and in small swarms, on one in twenty elsewhere.
		if n := len(model); step%20 != 0 && n >= 16 && !nearIndexSize(n) {
			continue
		}
		if step%100 == 0 {
			// Compact the region now and then, whether it needs it or not:
			// every block must survive the move.
			checkMemory(t, sh)
			if moved, live := sh.compactMemory(), liveBytes(sh); moved != live {
				t.Fatalf("step %d: compaction moved %d bytes, the swarms own %d", step, moved, live)
			}
			sh, sw = lookup(s, h)
		}
		checkSwarm(t, sh, sw, model, downloaded, now, s.base)
		checkMemory(t, sh)
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
			if m == nil || (ids && m.id != p.ID) || (!ids && p.ID != bittorrent.PeerID{}) || p.Addr == addr || seen[p.Addr] || (a.Seeder && m.seeder) {
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
// announcing peer, only leechers for a seeder, ids with their peers, and
// (with a fixed seed, so the test is deterministic) every candidate chosen
// as often as the others.
func TestPick(t *testing.T) {
	for _, ids := range []bool{false, true} {
		t.Run(fmt.Sprintf("ids=%v", ids), func(t *testing.T) { testPick(t, ids) })
	}
}

func testPick(t *testing.T, ids bool) {
	for _, tc := range []struct {
		seeders4, leechers4, seeders6, leechers6 int
	}{
		{0, 0, 0, 0}, {1, 0, 0, 0}, {0, 1, 0, 0}, {3, 4, 0, 0}, {0, 0, 3, 4},
		{10, 20, 5, 7}, {7, 0, 0, 9}, {0, 13, 2, 0}, {100, 37, 11, 3},
		// runMin candidates and more: runs (for a seeder too).
		{1500, 2200, 40, 60}, {0, 1000, 1000, 1100},
	} {
		sh, release := newShard(ids)
		get := addSwarm(sh)
		sw := get()
		idOf := func(addr netip.AddrPort) bittorrent.PeerID {
			var id bittorrent.PeerID
			copy(id[:], addr.String())
			return id
		}
		for i := range tc.seeders4 + tc.leechers4 {
			a := store.Announce{Seeder: i < tc.seeders4}
			a.Peer.ID = idOf(netip.AddrPortFrom(netip.AddrFrom4([4]byte{0, 0, byte(i >> 8), byte(i)}), 1))
			sh.apply4(sw, &a, uint32(i), 1, 100)
			sh.tidyMemory() // as after each request
			sw = get()
		}
		for i := range tc.seeders6 + tc.leechers6 {
			ip := [16]byte{0: 0x20, 14: byte(i >> 8), 15: byte(i)}
			a := store.Announce{Seeder: i < tc.seeders6}
			a.Peer.ID = idOf(netip.AddrPortFrom(netip.AddrFrom16(ip), 1))
			sh.apply6(sw, &a, &ip, 1, 100)
			sh.tidyMemory()
			sw = get()
		}
		sh.tidyMemory()
		sw = get()
		f4 := open4(sh, sw)
		var f6 family[peer6, *peer6]
		if sw.x != 0 {
			f6 = open6(sh, sh.extra(sw))
		}
		n4, n6 := len(f4.recs), len(f6.recs)
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
			for i := range f4.recs {
				if i != me.self4 && (!me.seeder || i >= int(sw.v4.ns)) {
					cand = append(cand, bittorrent.Peer{ID: f4.id(i), Addr: f4.recs[i].addr()})
				}
			}
			for i := range f6.recs {
				if i != me.self6 && (!me.seeder || i >= int(f6.f.ns)) {
					cand = append(cand, bittorrent.Peer{ID: f6.id(i), Addr: f6.recs[i].addr()})
				}
			}
			for _, want := range []int{0, 1, 2, 5, 50, 200, len(cand) - 1, len(cand), len(cand) + 3} {
				if want < 0 || want > 200 && len(cand) > runMin {
					continue // want >= len(cand)-1: one by one, as in the small swarms; and slow
				}
				name := fmt.Sprintf("%v/self %+v/want %d", tc, me, want)
				isCand := make(map[bittorrent.Peer]bool, len(cand))
				for _, p := range cand {
					isCand[p] = true
					if ids && p.ID != idOf(p.Addr) || !ids && p.ID != (bittorrent.PeerID{}) {
						t.Fatalf("%s: %v stored with id %q", name, p.Addr, p.ID)
					}
				}
				counts := make(map[netip.AddrPort]int)
				rounds := 2000
				if len(cand) > runMin {
					rounds = 300 // each candidate still expected 20 times or more for want 200
				}
				if race.Enabled {
					rounds /= 4
				}
				for range rounds {
					got := sh.pick(sw, me.seeder, bittorrent.AnyFamily, me.self4, me.self6, want, nil, nil)
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
				// (In the big swarms, below 20 the count is too far from
				// normal for 5 standard deviations to be rare among
				// thousands of candidates: only the total is checked.)
				tol := 5*math.Sqrt(exp) + 1
				total := 0
				for _, p := range cand {
					c := counts[p.Addr]
					total += c
					if d := float64(c) - exp; (exp >= 20 || len(cand) < runMin) && (d > tol || d < -tol) {
						t.Errorf("%s: %v chosen %d times, expected %.0f", name, p.Addr, c, exp)
					}
				}
				if total != rounds*min(want, len(cand)) {
					t.Errorf("%s: duplicates: %d picks counted, want %d", name, total, rounds*min(want, len(cand)))
				}
			}
		}
		release()
	}
}
