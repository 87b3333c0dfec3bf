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
	v4         []peer4 // seeders [0, ns4), then leechers
	x          *extra  // nil while the swarm has neither IPv6 peers nor an IPv4 index
	ns4        uint32
	minExp     uint32 // no peer expires before: a lower bound, exact after compact
	downloaded uint32
}

// extra is what most swarms do without: their IPv6 peers, laid out as
// swarm.v4, and the indexes of big families.
type extra struct {
	idx4 index
	v6   []peer6
	ns6  uint32
	idx6 index
}

func (sw *swarm) fam4() family[peer4] {
	f := family[peer4]{s: &sw.v4, ns: &sw.ns4, hash: hashPeer4}
	if sw.x != nil {
		f.idx = &sw.x.idx4
	}
	return f
}

func (x *extra) fam6() family[peer6] {
	return family[peer6]{s: &x.v6, ns: &x.ns6, idx: &x.idx6, hash: hashPeer6}
}

// tidy frees sw.x when it holds nothing.
func (sw *swarm) tidy() {
	if x := sw.x; x != nil && len(x.v6) == 0 && x.idx4 == nil {
		sw.x = nil
	}
}

func (sw *swarm) numPeers() int {
	n := len(sw.v4)
	if sw.x != nil {
		n += len(sw.x.v6)
	}
	return n
}

func (sw *swarm) stats() store.Stats {
	st := store.Stats{Seeders: sw.ns4, Leechers: uint32(len(sw.v4)) - sw.ns4, Downloaded: sw.downloaded}
	if x := sw.x; x != nil {
		st.Seeders += x.ns6
		st.Leechers += uint32(len(x.v6)) - x.ns6
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

// find4 returns the position of the IPv4 session k in sw.v4, -1 if none.
func (sw *swarm) find4(k uint64) int {
	s := sw.v4
	if sw.x == nil || sw.x.idx4 == nil {
		for i := range s {
			if s[i].key() == k {
				return i
			}
		}
		return -1
	}
	ix := sw.x.idx4
	h, m := hash4(k), ix.mask()
	for e := int(h) & m; ; e = (e + 1) & m {
		v := ix[e]
		if v == 0 {
			return -1
		}
		if uint32(v>>32) == h {
			if p := int(uint32(v)) - 1; s[p].key() == k {
				return p
			}
		}
	}
}

// find6 returns the position of the IPv6 session k in x.v6, -1 if none.
func (x *extra) find6(k key6) int {
	s := x.v6
	if x.idx6 == nil {
		for i := range s {
			if s[i].key() == k {
				return i
			}
		}
		return -1
	}
	ix := x.idx6
	h, m := hash6(k), ix.mask()
	for e := int(h) & m; ; e = (e + 1) & m {
		v := ix[e]
		if v == 0 {
			return -1
		}
		if uint32(v>>32) == h {
			if p := int(uint32(v)) - 1; s[p].key() == k {
				return p
			}
		}
	}
}

// joined returns what apply4 and apply6 return for a peer that joined at
// pos.
func joined(pos int, seeder bool) (idx, dS, dL int) {
	if seeder {
		return pos, 1, 0
	}
	return pos, 0, 1
}

// left returns what apply4 and apply6 return for a peer that stopped.
func left(seeder bool) (idx, dS, dL int) {
	if seeder {
		return -1, -1, 0
	}
	return -1, 0, -1
}

// changeRole moves the peer at i of f from seeder (was) to seeder (now) or
// back, and returns what apply4 and apply6 return.
func changeRole[R any](f family[R], i int, was, now bool) (idx, dS, dL int) {
	switch {
	case was == now:
		return i, 0, 0
	case now:
		return f.toSeeder(i), 1, -1
	default:
		return f.toLeecher(i), -1, 1
	}
}

// apply4 applies a, from the IPv4 address ip:port, to the swarm. It returns
// the peer's position in sw.v4 afterwards (-1 if it stopped) and the
// changes to the swarm's seeders and leechers.
func (sw *swarm) apply4(a *store.Announce, ip uint32, port uint16, exp uint32) (idx, dS, dL int) {
	i := sw.find4(key4(ip, port))
	if i < 0 {
		if a.Event == bittorrent.EventStopped {
			return -1, 0, 0
		}
		if len(sw.v4) >= indexMin && sw.x == nil {
			sw.x = new(extra) // to hold the index push is about to build
		}
		r := peer4{ip: ip, port: port, exp: exp, id: a.Peer.ID}
		sw.countDownload(&r.flags, a.Event)
		return joined(sw.fam4().push(r, a.Seeder), a.Seeder)
	}
	seeder := i < int(sw.ns4)
	if a.Event == bittorrent.EventStopped {
		sw.fam4().remove(i)
		sw.tidy()
		return left(seeder)
	}
	p := &sw.v4[i]
	p.id, p.exp = a.Peer.ID, exp
	sw.countDownload(&p.flags, a.Event)
	return changeRole(sw.fam4(), i, seeder, a.Seeder)
}

// apply6 is apply4 for the IPv6 address ip:port; idx is in sw.x.v6.
func (sw *swarm) apply6(a *store.Announce, ip *[16]byte, port uint16, exp uint32) (idx, dS, dL int) {
	k := makeKey6(ip, port)
	i := -1
	if sw.x != nil {
		i = sw.x.find6(k)
	}
	if i < 0 {
		if a.Event == bittorrent.EventStopped {
			return -1, 0, 0
		}
		if sw.x == nil {
			sw.x = new(extra)
		}
		r := peer6{ip: *ip, port: port, exp: exp, id: a.Peer.ID}
		sw.countDownload(&r.flags, a.Event)
		return joined(sw.x.fam6().push(r, a.Seeder), a.Seeder)
	}
	x := sw.x
	seeder := i < int(x.ns6)
	if a.Event == bittorrent.EventStopped {
		x.fam6().remove(i)
		sw.tidy()
		return left(seeder)
	}
	p := &x.v6[i]
	p.id, p.exp = a.Peer.ID, exp
	sw.countDownload(&p.flags, a.Event)
	return changeRole(x.fam6(), i, seeder, a.Seeder)
}

// compact drops the peers expired at now (exp <= now), sets minExp to the
// earliest expiry left, and returns how many seeders and leechers it
// dropped.
func (sw *swarm) compact(now uint32) (rmS, rmL int) {
	minExp := uint32(noExp)
	sw.v4, sw.ns4, rmS, rmL = compactRecords(sw.v4, sw.ns4, now, &minExp)
	if rmS+rmL > 0 {
		sw.fam4().reindex()
	}
	if x := sw.x; x != nil {
		var rs, rl int
		x.v6, x.ns6, rs, rl = compactRecords(x.v6, x.ns6, now, &minExp)
		if rs+rl > 0 {
			x.fam6().reindex()
		}
		rmS, rmL = rmS+rs, rmL+rl
		sw.tidy()
	}
	sw.minExp = minExp
	return rmS, rmL
}

// record is what compactRecords needs of a peer record type.
type record[R any] interface {
	*R
	expiry() uint32
}

func (p *peer4) expiry() uint32 { return p.exp }
func (p *peer6) expiry() uint32 { return p.exp }

// compactRecords drops the records of s expired at now, keeping the order
// (so seeders stay in front), lowers minExp to the earliest expiry left,
// and returns the records left, the seeders left, and the seeders and
// leechers dropped.
func compactRecords[R any, P record[R]](s []R, ns uint32, now uint32, minExp *uint32) ([]R, uint32, int, int) {
	w, rmS := 0, 0
	for i := range s {
		if e := P(&s[i]).expiry(); e > now {
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
// sw.x.v6 (-1 for neither).
//
// The candidates are the concatenation of one range of sw.v4 and one of
// sw.x.v6, m peers once the announcing one is skipped. pick rotates
// them by a random offset, cuts them into want strata of equal size (give
// or take one) and takes one peer at random in each: no peer twice, no
// allocation, and since the rotation makes every position equally likely
// for every peer, each is chosen with probability exactly want/m. Seeders
// and leechers (and IPv4 and IPv6 peers) come in proportion to their
// numbers, within one.
func (sw *swarm) pick(rng *rand.PCG, seeder bool, fam store.Family, self4, self6, want int, peers []bittorrent.Peer) []bittorrent.Peer {
	a4 := sw.v4
	var a6 []peer6
	if sw.x != nil {
		a6 = sw.x.v6
	}
	if seeder {
		a4 = a4[sw.ns4:]
		if sw.x != nil {
			a6 = a6[sw.x.ns6:]
		}
	}
	switch fam {
	case store.IPv4Only:
		a6, self6 = nil, -1
	case store.IPv6Only:
		a4, self4 = nil, -1
	}
	skip := -1
	switch {
	case seeder:
		// The requester is a seeder: not among the candidates.
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
