package memory

import (
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"

	"trackd/bittorrent"
	"trackd/store"
)

// noExp is the expiry of nothing: the minExp of a swarm without peers.
const noExp = math.MaxUint32

// swarm is one torrent: 48 bytes, plus its peers' arrays.
type swarm struct {
	v4         []peer4 // seeders [0, ns4), then leechers; each part sorted
	v6         *swarm6 // nil while the swarm has no IPv6 peer
	ns4        uint32  // IPv4 seeders
	minExp     uint32  // no peer expires before: a lower bound, exact after compact
	downloaded uint32
}

// swarm6 holds the IPv6 peers of a swarm, laid out as swarm.v4.
type swarm6 struct {
	peers []peer6
	ns    uint32
}

func (sw *swarm) numPeers() int {
	n := len(sw.v4)
	if sw.v6 != nil {
		n += len(sw.v6.peers)
	}
	return n
}

func (sw *swarm) stats() store.Stats {
	st := store.Stats{Seeders: sw.ns4, Leechers: uint32(len(sw.v4)) - sw.ns4, Downloaded: sw.downloaded}
	if sw.v6 != nil {
		st.Seeders += sw.v6.ns
		st.Leechers += uint32(len(sw.v6.peers)) - sw.v6.ns
	}
	return st
}

// countDownload counts a completed event of the session whose flags are f,
// once per session.
func (sw *swarm) countDownload(f *uint8, ev bittorrent.Event) {
	if ev == bittorrent.EventCompleted && *f&flagCompleted == 0 {
		*f |= flagCompleted
		if sw.downloaded != math.MaxUint32 {
			sw.downloaded++
		}
	}
}

// apply4 applies a, from the IPv4 address ip:port, to the swarm. It returns
// the peer's index in sw.v4 afterwards (-1 if it stopped) and the changes to
// the swarm's seeders and leechers.
func (sw *swarm) apply4(a *store.Announce, ip uint32, port uint16, exp uint32) (idx, dS, dL int) {
	k := key4(ip, port)
	s, ns := sw.v4, int(sw.ns4)
	stop := a.Event == bittorrent.EventStopped
	ps, isSeeder := search4(s[:ns], k)
	if isSeeder {
		if stop {
			sw.v4 = removeAt(s, ps)
			sw.ns4--
			return -1, -1, 0
		}
		p := &s[ps]
		p.id, p.exp = a.Peer.ID, exp
		sw.countDownload(&p.flags, a.Event)
		if a.Seeder {
			return ps, 0, 0
		}
		pl, _ := search4(s[ns:], k)
		pl += ns
		moveUp(s, ps, pl-1)
		sw.ns4--
		return pl - 1, -1, 1
	}
	pl, isLeecher := search4(s[ns:], k)
	pl += ns
	if isLeecher {
		if stop {
			sw.v4 = removeAt(s, pl)
			return -1, 0, -1
		}
		p := &s[pl]
		p.id, p.exp = a.Peer.ID, exp
		sw.countDownload(&p.flags, a.Event)
		if !a.Seeder {
			return pl, 0, 0
		}
		moveDown(s, pl, ps)
		sw.ns4++
		return ps, 1, -1
	}
	if stop {
		return -1, 0, 0
	}
	r := peer4{ip: ip, port: port, exp: exp, id: a.Peer.ID}
	sw.countDownload(&r.flags, a.Event)
	if a.Seeder {
		sw.v4 = insertAt(s, ps, r)
		sw.ns4++
		return ps, 1, 0
	}
	sw.v4 = insertAt(s, pl, r)
	return pl, 0, 1
}

// apply6 is apply4 for the IPv6 address ip:port; idx is in sw.v6.peers.
func (sw *swarm) apply6(a *store.Announce, ip *[16]byte, port uint16, exp uint32) (idx, dS, dL int) {
	stop := a.Event == bittorrent.EventStopped
	f := sw.v6
	if f == nil {
		if stop {
			return -1, 0, 0
		}
		f = new(swarm6)
		sw.v6 = f
	}
	defer func() {
		if len(f.peers) == 0 {
			sw.v6 = nil
		}
	}()
	k := makeKey6(ip, port)
	s, ns := f.peers, int(f.ns)
	ps, isSeeder := search6(s[:ns], k)
	if isSeeder {
		if stop {
			f.peers = removeAt(s, ps)
			f.ns--
			return -1, -1, 0
		}
		p := &s[ps]
		p.id, p.exp = a.Peer.ID, exp
		sw.countDownload(&p.flags, a.Event)
		if a.Seeder {
			return ps, 0, 0
		}
		pl, _ := search6(s[ns:], k)
		pl += ns
		moveUp(s, ps, pl-1)
		f.ns--
		return pl - 1, -1, 1
	}
	pl, isLeecher := search6(s[ns:], k)
	pl += ns
	if isLeecher {
		if stop {
			f.peers = removeAt(s, pl)
			return -1, 0, -1
		}
		p := &s[pl]
		p.id, p.exp = a.Peer.ID, exp
		sw.countDownload(&p.flags, a.Event)
		if !a.Seeder {
			return pl, 0, 0
		}
		moveDown(s, pl, ps)
		f.ns++
		return ps, 1, -1
	}
	if stop {
		return -1, 0, 0
	}
	r := peer6{ip: *ip, port: port, exp: exp, id: a.Peer.ID}
	sw.countDownload(&r.flags, a.Event)
	if a.Seeder {
		f.peers = insertAt(s, ps, r)
		f.ns++
		return ps, 1, 0
	}
	f.peers = insertAt(s, pl, r)
	return pl, 0, 1
}

// compact drops the peers expired at now (exp <= now), keeping the order,
// sets minExp to the earliest expiry left, and returns how many seeders and
// leechers it dropped.
func (sw *swarm) compact(now uint32) (rmS, rmL int) {
	minExp := uint32(noExp)
	var rs, rl int
	sw.v4, sw.ns4, rs, rl = compact4(sw.v4, sw.ns4, now, &minExp)
	rmS, rmL = rs, rl
	if f := sw.v6; f != nil {
		f.peers, f.ns, rs, rl = compact6(f.peers, f.ns, now, &minExp)
		rmS, rmL = rmS+rs, rmL+rl
		if len(f.peers) == 0 {
			sw.v6 = nil
		}
	}
	sw.minExp = minExp
	return rmS, rmL
}

func compact4(s []peer4, ns uint32, now uint32, minExp *uint32) ([]peer4, uint32, int, int) {
	w, rmS := 0, 0
	for i := range s {
		if e := s[i].exp; e > now {
			if w != i {
				s[w] = s[i]
			}
			w++
			*minExp = min(*minExp, e)
		} else if i < int(ns) {
			rmS++
		}
	}
	if w == len(s) {
		return s, ns, 0, 0
	}
	rmL := len(s) - w - rmS
	return shrink(s[:w]), ns - uint32(rmS), rmS, rmL
}

func compact6(s []peer6, ns uint32, now uint32, minExp *uint32) ([]peer6, uint32, int, int) {
	w, rmS := 0, 0
	for i := range s {
		if e := s[i].exp; e > now {
			if w != i {
				s[w] = s[i]
			}
			w++
			*minExp = min(*minExp, e)
		} else if i < int(ns) {
			rmS++
		}
	}
	if w == len(s) {
		return s, ns, 0, 0
	}
	rmL := len(s) - w - rmS
	return shrink(s[:w]), ns - uint32(rmS), rmS, rmL
}

// bounded maps the random x to [0, n) (Lemire's multiply-shift; the bias,
// at most n/2^64, is far below anything observable).
func bounded(x uint64, n int) int {
	hi, _ := bits.Mul64(x, uint64(n))
	return int(hi)
}

// pick appends to peers up to want peers chosen at random among the
// candidates of an announcing seeder (the leechers) or leecher (everyone),
// leaving out the announcing peer: index self4 of sw.v4 or self6 of
// sw.v6.peers (-1 for neither).
//
// The candidates are the concatenation of one range of sw.v4 and one of
// sw.v6.peers, m peers once the announcing one is skipped. pick rotates
// them by a random offset, cuts them into want strata of equal size (give
// or take one) and takes one peer at random in each: no peer twice, no
// allocation, and since the rotation makes every position equally likely
// for every peer, each is chosen with probability exactly want/m. Seeders
// and leechers (and IPv4 and IPv6 peers) come in proportion to their
// numbers, within one.
func (sw *swarm) pick(rng *rand.PCG, seeder bool, self4, self6, want int, peers []bittorrent.Peer) []bittorrent.Peer {
	a4 := sw.v4
	var a6 []peer6
	if sw.v6 != nil {
		a6 = sw.v6.peers
	}
	skip := -1
	switch {
	case seeder:
		a4 = a4[sw.ns4:]
		if sw.v6 != nil {
			a6 = a6[sw.v6.ns:]
		}
	case self4 >= 0:
		skip = self4
	case self6 >= 0:
		skip = len(a4) + self6
	}
	m := len(a4) + len(a6)
	if skip >= 0 {
		m--
	}
	want = min(want, m)
	if want <= 0 {
		return peers
	}
	peers = slices.Grow(peers, want)
	r := bounded(rng.Uint64(), m)
	if want == m {
		for i := range m {
			peers = appendCandidate(peers, a4, a6, skip, rotate(r+i, m))
		}
		return peers
	}
	q, rem := m/want, m%want
	lo, acc := 0, 0
	for range want {
		size := q
		if acc += rem; acc >= want {
			acc -= want
			size++
		}
		k := lo + bounded(rng.Uint64(), size)
		lo += size
		peers = appendCandidate(peers, a4, a6, skip, rotate(k+r, m))
	}
	return peers
}

// rotate returns k mod m for k < 2m.
func rotate(k, m int) int {
	if k >= m {
		k -= m
	}
	return k
}

// appendCandidate appends candidate k, counted without the skipped one.
func appendCandidate(peers []bittorrent.Peer, a4 []peer4, a6 []peer6, skip, k int) []bittorrent.Peer {
	if skip >= 0 && k >= skip {
		k++
	}
	if k < len(a4) {
		return append(peers, a4[k].peer())
	}
	return append(peers, a6[k-len(a4)].peer())
}
