package memory

import (
	"runtime"
	"time"

	"trackd/store"
)

// The memory bound (Store.SetMemoryLimit).
//
// What it bounds is the memory the store's torrents and peers use: every
// byte that grows with them (tables, records, indexes, ids) lives in
// blocks the store maps and carves itself (see heap), so it knows it
// exactly and at once, without asking the system. It counts what it holds
// (the carved pages of its regions, its large blocks) less the room in
// there that new torrents and peers fill before the store takes more: its
// free blocks and its tables' spare slots (heap.inUse). So what the store
// holds stays within the bound, but for what it has freed and not yet
// given back (a table shrinks at a quarter full, a region compacts at an
// eighth free), which is reused first. The Go heap (buffers, connections,
// the full scrape's cache) is not in it.
//
// Near the bound the store gives up first what an attacker makes most
// cheaply, one packet each: torrents with one peer. Such a torrent gives
// nobody a peer (its only peer is the one asking), so evicting it loses
// nothing but that peer's presence until its next announce, which makes
// the torrent again. So:
//
//   - from 90% of the bound (the high-water mark) the sweeper, once a second, evicts
//     torrents with at most one peer (download count or not: a count costs
//     an attacker one packet more), oldest first — those with no peer, then
//     by their peer's expiry — until the store is back at 80% (the
//     low-water mark).
//     Oldest first rather than newest: evicting the newest would be the
//     same as refusing new torrents, and a real torrent's second peer would
//     never find its first under a flood; oldest first gives every new
//     torrent as long as the memory lets it (the bound over the flood's
//     rate) to get a second peer, after which it stays.
//   - from 95% of the bound an announce that would make a torrent is
//     refused (store.ErrNoNewTorrents): when the sweeper cannot keep up, or
//     what is left is swarms of more than one peer.
//   - at the bound an announce that would add a peer to a torrent is
//     refused too (store.ErrNoNewPeers), so that the bound holds. Announces
//     of known peers (re-announces, stops, completions) and scrapes always
//     work: they take no memory.
//
// Swarms of two or more peers are never evicted: those are the ones in
// use. An attacker who makes such swarms (two ports each) fills the store
// up to the bound, and then no new torrent is accepted until peers expire
// (peer_lifetime); existing swarms keep working throughout.

// shedLinger is how long Shedding stays true after the bound last evicted
// or refused something.
const shedLinger = 30 // seconds: longer than a stats sample (15 s)

// evictEstimate is the bytes evicting a torrent with one IPv4 peer gives
// back to heap.inUse: its slot (48 bytes) and its 8-byte block. (With
// IPv6 or ids it gives more, and shed evicts a little more than it
// needs.)
const evictEstimate = 56

// torrentsFull reports whether the store is at 95% of its bound or more:
// no new torrent.
func (hp *heap) torrentsFull() bool {
	lim := hp.limit.Load()
	return lim > 0 && hp.inUse() >= lim-lim/20
}

// peersFull reports whether the store is at its bound: no new peer.
func (hp *heap) peersFull() bool {
	lim := hp.limit.Load()
	return lim > 0 && hp.inUse() >= lim
}

var _ store.MemoryBounded = (*Store)(nil)

// SetMemoryLimit implements store.MemoryBounded: the store keeps what it
// holds under bytes (0 or less: no bound) as the package comment of
// bound.go says.
func (s *Store) SetMemoryLimit(bytes int64) { s.heap.limit.Store(max(bytes, 0)) }

// MemoryUsage implements store.MemoryBounded.
func (s *Store) MemoryUsage() store.MemoryUsage {
	last := s.lastShed.Load()
	return store.MemoryUsage{
		Bytes:    s.heap.inUse(),
		Held:     s.heap.held(),
		Limit:    s.heap.limit.Load(),
		Shedding: last != 0 && s.nowSec()+1 < last+shedLinger,
		Evicted:  s.evicted.Load(),
		Refused:  s.refused.Load(),
	}
}

// refuse counts an announce refused by the bound at second now.
func (s *Store) refuse(now uint32) {
	s.refused.Add(1)
	s.markShed(now)
}

func (s *Store) markShed(now uint32) {
	if s.lastShed.Load() != now+1 {
		s.lastShed.Store(now + 1)
	}
}

// shed evicts torrents with at most one peer, oldest first, when the store
// holds highWater of its bound or more, until it is back to about
// lowWater. It takes two walks of the shards: one to count the candidates
// by age, which sets the age below which to evict, one to evict.
func (s *Store) shed(now uint32) {
	lim := s.heap.limit.Load()
	if lim <= 0 {
		return
	}
	used := s.heap.inUse()
	if used < lim/10*9 {
		return
	}
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()
	want := (used-lim/10*8)/evictEstimate + 1

	// Candidates by age: hist[0] those with no peer, hist[k] those whose
	// peer expires at now+k.
	size := int(s.lifetime/time.Second) + 2
	if len(s.hist) != size {
		s.hist = make([]uint32, size)
	}
	hist := s.hist
	clear(hist)
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		if sh.closed {
			sh.mu.Unlock()
			return
		}
		slots := sh.swarms.slots(sh)
		for j := range slots {
			if sw := &slots[j]; sw.minExp != 0 {
				if k, ok := s.evictable(sh, sw, now, size); ok {
					hist[k]++
				}
			}
		}
		sh.tidyMemory() // evictable may have dropped expired peers
		sh.mu.Unlock()
		runtime.Gosched()
	}
	// Nothing to evict (every torrent has two peers or more): no second
	// walk, and the store is not shedding unless it refuses announces.
	var candidates int64
	for _, n := range hist {
		candidates += int64(n)
	}
	if candidates == 0 {
		return
	}
	s.markShed(now)
	// Evict every candidate of age below cut, and quota of those at cut.
	cut, quota := len(hist), int64(0)
	var sum int64
	for k, n := range hist {
		if sum+int64(n) >= want {
			cut, quota = k, want-sum
			break
		}
		sum += int64(n)
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		if sh.closed {
			sh.mu.Unlock()
			return
		}
		evicted := false
		t := &sh.swarms
		for j := 0; j < len(t.slots(sh)); {
			sw := &t.slots(sh)[j]
			if sw.minExp == 0 {
				j++
				continue
			}
			k, ok := s.evictable(sh, sw, now, size)
			if !ok || k > cut || (k == cut && quota <= 0) {
				j++
				continue
			}
			if k == cut {
				quota--
			}
			s.evict(sh, sw, j)
			evicted = true
			// and look at slot j again: another may have moved in
		}
		if evicted {
			t.shrink(sh, s.seed)
			sh.tidyMemory()
		}
		sh.mu.Unlock()
		runtime.Gosched()
	}
}

// evictable reports whether sw, of shard sh, is one shed may evict (at
// most one peer once its expired peers are dropped), and its age: 0 for no
// peer, else its peer's expiry less now, below size.
func (s *Store) evictable(sh *shard, sw *swarm, now uint32, size int) (int, bool) {
	if sw.minExp <= now {
		s.compact(sh, sw, now)
	}
	var e uint16
	switch n4 := sw.v4.n; {
	case sh.numPeers(sw) == 0:
		return 0, true
	case sh.numPeers(sw) > 1:
		return 0, false
	case n4 == 1:
		recs, _ := sh.peers4(sw)
		e = recs[0].e
	default:
		recs, _ := sh.peers6(sh.extra(sw))
		e = recs[0].e
	}
	return min(int(expiryOf(e, sw.minExp)-now), size-1), true
}

// evict deletes the swarm sw in slot i of sh and counts it out.
func (s *Store) evict(sh *shard, sw *swarm, i int) {
	st := sh.stats(sw)
	var s6, l6 int
	if sw.x != 0 {
		x := sh.extra(sw)
		s6, l6 = int(x.v6.ns), int(x.v6.n-x.v6.ns)
	}
	dT := 0
	if st.Seeders+st.Leechers > 0 {
		dT = -1
	}
	sh.freeSwarm(sw)
	sh.swarms.remove(sh, s.seed, i)
	s.count(-int(st.Seeders), -int(st.Leechers), -s6, -l6, dT)
	s.evicted.Add(1)
}
