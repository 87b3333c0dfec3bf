package memory

import (
	"net/netip"
	"time"

	"trackd/bittorrent"
	"trackd/snapshot"
	"trackd/store"
)

// Dump implements store.Snapshotter: it calls fn for every swarm that has
// peers or a download count, with each peer's role, completed flag, id
// (zero unless the store keeps ids) and expiry time. Peers already expired
// are left out. fn runs with no lock held (see walk), so a slow fn (a
// disk) never holds up announces. fn must not keep the Swarm.
func (s *Store) Dump(fn func(*snapshot.Swarm) error) error {
	return walk(s, s.dumpSwarm, fn)
}

// DumpMarked is Dump that calls mark before it collects the swarms of
// each part of the store (a shard), with that part's lock held, so that
// what mark reads then is ordered against every announce of the swarms fn
// is next called for, until mark is called again: each came before or
// after it. A fleet's donor (package fleet) uses it to tell which of its
// own changes its dump holds. mark must be quick and must not call into
// the store.
func (s *Store) DumpMarked(mark func(), fn func(*snapshot.Swarm) error) error {
	var last *shard
	return walk(s, func(buf []snapshot.Swarm, sh *shard, sw *swarm) []snapshot.Swarm {
		if sh != last {
			mark()
			last = sh
		}
		return s.dumpSwarm(buf, sh, sw)
	}, fn)
}

// dumpSwarm appends the snapshot of sw to buf.
func (s *Store) dumpSwarm(buf []snapshot.Swarm, sh *shard, sw *swarm) []snapshot.Swarm {
	out := snapshot.Swarm{InfoHash: sw.hash, Downloaded: sw.downloaded}
	f4 := open4(sh, sw)
	for k := range f4.recs {
		p := &f4.recs[k]
		out.Peers = append(out.Peers, s.dumpPeer(p.addr(), k < int(sw.v4.ns), p.e, sw.minExp, &f4, k))
	}
	if sw.x != 0 {
		f6 := open6(sh, sh.extra(sw))
		for k := range f6.recs {
			p := &f6.recs[k]
			out.Peers = append(out.Peers, s.dumpPeer(p.addr(), k < int(f6.f.ns), p.e, sw.minExp, &f6, k))
		}
	}
	return append(buf, out)
}

// dumpPeer makes the snapshot record of the peer at k of its family: e
// is its record's e field, m its swarm's minExp.
func (s *Store) dumpPeer(addr netip.AddrPort, seeder bool, e uint16, m uint32, f interface{ id(int) bittorrent.PeerID }, k int) snapshot.Peer {
	return snapshot.Peer{
		Addr:      addr,
		ID:        f.id(k),
		Seeder:    seeder,
		Completed: e&flagCompleted != 0,
		Expires:   s.base.Add(time.Duration(expiryOf(e, m)) * time.Second),
	}
}

// Restore implements store.Snapshotter: it puts a swarm read back from a
// snapshot into the store: its download count (the larger of the store's
// and the snapshot's) and every peer whose expiry has not passed, with its
// role and completed flag; a peer expiring later than a fresh announce
// would is cut back to that. It is meant for an empty store at start; a
// peer the store already holds is updated as by an announce. Once the
// store is at its memory bound (SetMemoryLimit), the peers left are left
// out.
func (s *Store) Restore(snap *snapshot.Swarm) error {
	now, maxExp := s.clock()
	sh, hash := s.shardFor(&snap.InfoHash)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.closed {
		return errClosed
	}
	i, found := sh.swarms.find(sh, &snap.InfoHash, hash)
	if !found {
		if snap.Downloaded == 0 && !s.anyAlive(snap, now) {
			return nil
		}
		i = sh.swarms.insert(sh, s.seed, &snap.InfoHash, hash, i)
	}
	sw := &sh.swarms.slots(sh)[i]
	if sw.minExp <= now {
		s.compact(sh, sw, now)
	}
	sw.downloaded = max(sw.downloaded, snap.Downloaded)
	before := sh.numPeers(sw)
	for k := range snap.Peers {
		p := &snap.Peers[k]
		exp := min(s.secondsSinceBase(p.Expires), maxExp)
		ip := p.Addr.Addr().Unmap()
		if exp <= now || !ip.IsValid() || p.Addr.Port() == 0 {
			continue
		}
		a := store.Announce{InfoHash: snap.InfoHash, Peer: bittorrent.Peer{ID: p.ID, Addr: p.Addr}, Seeder: p.Seeder}
		var idx, dS, dL int
		if ip.Is4() {
			b := ip.As4()
			idx, dS, dL = sh.apply4(sw, &a, uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3]), p.Addr.Port(), exp)
			if idx == refusedJoin {
				break // at the memory bound
			}
			if p.Completed {
				f := open4(sh, sw)
				f.recs[idx].e |= flagCompleted
			}
			s.count(dS, dL, 0, 0, 0)
		} else {
			b := ip.As16()
			idx, dS, dL = sh.apply6(sw, &a, &b, p.Addr.Port(), exp)
			if idx == refusedJoin {
				break // at the memory bound
			}
			if p.Completed {
				f := open6(sh, sh.extra(sw))
				f.recs[idx].e |= flagCompleted
			}
			s.count(dS, dL, dS, dL, 0)
		}
		if exp < sw.minExp {
			sw.minExp = exp
		}
		if exp < sh.minExp.Load() {
			sh.minExp.Store(exp)
		}
	}
	after := sh.numPeers(sw)
	if before == 0 && after > 0 {
		s.count(0, 0, 0, 0, 1)
	}
	if s.removeIfEmpty(sh, sw, i) {
		sh.swarms.shrink(sh, s.seed)
	}
	sh.tidyMemory()
	return nil
}

// anyAlive reports whether a peer of snap has not expired at now.
func (s *Store) anyAlive(snap *snapshot.Swarm, now uint32) bool {
	for k := range snap.Peers {
		if s.secondsSinceBase(snap.Peers[k].Expires) > now {
			return true
		}
	}
	return false
}

// secondsSinceBase converts t to the store's clock, rounding up; a time
// before the store's base is 0.
func (s *Store) secondsSinceBase(t time.Time) uint32 {
	d := t.Sub(s.base)
	if d <= 0 {
		return 0
	}
	return uint32(min((d+time.Second-1)/time.Second, maxSec))
}
