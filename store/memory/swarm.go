package memory

import (
	"encoding/binary"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"unsafe"

	"trackd/bittorrent"
	"trackd/store"
)

// noExp is the expiry of nothing: the minExp of a swarm without peers.
const noExp = math.MaxUint32

// swarm is one torrent: its slot in its shard's table, 48 bytes. The
// IPv4 family's header is here; the rest, which most swarms do without,
// is in an extra block.
type swarm struct {
	hash       bittorrent.InfoHash
	minExp     uint32 // no peer expires before: a lower bound, exact after compact; 0 marks an empty slot
	downloaded uint32
	v4         fam
	x          handle // the extra block; 0 while the swarm has neither IPv6 peers nor an IPv4 index
}

// swarmSize is the size of a slot.
const swarmSize = unsafe.Sizeof(swarm{})

// extra is what most swarms do without: their IPv6 peers, and the indexes
// of big families. 32 bytes.
type extra struct {
	v6   fam
	idx4 idxRef
	idx6 idxRef
}

// extraSize is the size of an extra block.
var extraSize = blockSize(roundSize(32) >> 3)

// extra returns the extra block of sw, which must have one.
func (sh *shard) extra(sw *swarm) *extra {
	return (*extra)(sh.ptr(sw.x))
}

// addExtra gives sw an empty extra block if it has none.
func (sh *shard) addExtra(sw *swarm) *extra {
	if sw.x == 0 {
		sw.x, _ = sh.alloc(32, true)
	}
	return sh.extra(sw)
}

// tidy frees the extra block of sw when it holds nothing.
func (sh *shard) tidy(sw *swarm) {
	if sw.x == 0 {
		return
	}
	if x := sh.extra(sw); x.v6.n == 0 && x.idx4.n == 0 {
		sh.free(sw.x, extraSize)
		sw.x = 0
	}
}

func (sh *shard) numPeers(sw *swarm) int {
	if sw.x != 0 {
		return int(sw.v4.n) + sh.numPeers6(sw)
	}
	return int(sw.v4.n)
}

func (sh *shard) numPeers6(sw *swarm) int { return int(sh.extra(sw).v6.n) }

func (sh *shard) stats(sw *swarm) bittorrent.Stats {
	st := bittorrent.Stats{Seeders: sw.v4.ns, Leechers: sw.v4.n - sw.v4.ns, Downloaded: sw.downloaded}
	if sw.x != 0 {
		x := sh.extra(sw)
		st.Seeders += x.v6.ns
		st.Leechers += x.v6.n - x.v6.ns
	}
	return st
}

// freeSwarm frees every block of sw.
func (sh *shard) freeSwarm(sw *swarm) {
	f4 := open4(sh, sw)
	f4.free()
	if sw.x != 0 {
		f6 := open6(sh, sh.extra(sw))
		f6.free()
		sh.tidy(sw)
	}
}

// countDownload counts a completed event of the session whose flags are f,
// once per session.
func (sw *swarm) countDownload(f *uint16, ev bittorrent.Event) {
	if ev == bittorrent.EventCompleted && *f&flagCompleted == 0 {
		*f |= flagCompleted
		if sw.downloaded != math.MaxUint32 {
			sw.downloaded++
		}
	}
}

// peers4 returns the IPv4 records of sw and their ids (nil if the store
// keeps none), as load does, for reading and changing records in place:
// the hot path of a re-announce and of pick, which need no family.
func (sh *shard) peers4(sw *swarm) ([]peer4, []bittorrent.PeerID) {
	f := &sw.v4
	if f.h == 0 {
		return nil, nil
	}
	p := sh.ptr(f.h)
	if !sh.ids {
		return unsafe.Slice((*peer4)(p), uintptr(f.size.bytes())/unsafe.Sizeof(peer4{}))[:f.n], nil
	}
	c := uintptr(f.size.bytes()) / (unsafe.Sizeof(peer4{}) + unsafe.Sizeof(bittorrent.PeerID{}))
	return unsafe.Slice((*peer4)(p), c)[:f.n], unsafe.Slice((*bittorrent.PeerID)(unsafe.Add(p, c*unsafe.Sizeof(peer4{}))), c)[:f.n]
}

// peers6 is peers4 for the IPv6 family, in x.
func (sh *shard) peers6(x *extra) ([]peer6, []bittorrent.PeerID) {
	f := &x.v6
	if f.h == 0 {
		return nil, nil
	}
	p := sh.ptr(f.h)
	recs := unsafe.Slice((*peer6)(p), f.n)
	if !sh.ids {
		return recs, nil
	}
	c := uintptr(f.size.bytes()) / (unsafe.Sizeof(peer6{}) + unsafe.Sizeof(bittorrent.PeerID{}))
	return recs, unsafe.Slice((*bittorrent.PeerID)(unsafe.Add(p, c*unsafe.Sizeof(peer6{}))), f.n)
}

// index4 returns the header of the index of the IPv4 family of sw (nil if
// it may have none: no extra) and the index (nil if none).
func (sh *shard) index4(sw *swarm) (*idxRef, index) {
	if sw.x == 0 {
		return nil, nil
	}
	r := &sh.extra(sw).idx4
	if r.n == 0 {
		return r, nil
	}
	return r, unsafe.Slice((*uint64)(sh.ptr(r.h)), r.n)
}

// find4 returns the position of the IPv4 session (ip, port) among the
// records s, whose index is ix (nil for none), -1 if none.
func find4(s []peer4, ix index, ip uint32, port uint16) int {
	if ix == nil {
		// One 8-byte load and compare a record: the record as a word,
		// masked to its address and port, in the machine's byte order.
		want, mask := peer4{ip: ip, port: port}, peer4{ip: ^uint32(0), port: ^uint16(0)}
		k, m := *(*uint64)(unsafe.Pointer(&want)), *(*uint64)(unsafe.Pointer(&mask))
		for i := range s {
			if *(*uint64)(unsafe.Pointer(&s[i]))&m == k {
				return i
			}
		}
		return -1
	}
	h, m := hash4(key4(ip, port)), ix.mask()
	for e := int(h) & m; ; e = (e + 1) & m {
		v := ix[e]
		if v == 0 {
			return -1
		}
		if uint32(v>>32) == h {
			if p := int(uint32(v)) - 1; s[p].ip == ip && s[p].port == port {
				return p
			}
		}
	}
}

// find6 returns the position of the IPv6 session k among the records s,
// whose index is ix (nil for none), -1 if none.
func find6(s []peer6, ix index, k key6) int {
	if ix == nil {
		for i := range s {
			if s[i].key() == k {
				return i
			}
		}
		return -1
	}
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

// reannounced updates the record (whose flags are e) and id of a session
// that announced again, not to stop.
func (sw *swarm) reannounced(e *uint16, id *bittorrent.PeerID, a *store.Announce, exp uint32) {
	*e = encodeExp(exp, *e)
	if id != nil {
		*id = a.Peer.ID
	}
	sw.countDownload(e, a.Event)
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
func changeRole[R any, P record[R]](f *family[R, P], i int, was, now bool) (idx, dS, dL int) {
	switch {
	case was == now:
		return i, 0, 0
	case now:
		return f.toSeeder(i), 1, -1
	default:
		return f.toLeecher(i), -1, 1
	}
}

// refusedJoin is the position apply4 and apply6 return for a peer that
// would join but the store is at its memory bound (heap.peersFull).
const refusedJoin = -2

// apply4 applies a, from the IPv4 address ip:port, to the swarm. It returns
// the peer's position in the IPv4 family afterwards (-1 if it stopped,
// refusedJoin if it was not let in) and the changes to the swarm's seeders
// and leechers.
func (sh *shard) apply4(sw *swarm, a *store.Announce, ip uint32, port uint16, exp uint32) (idx, dS, dL int) {
	recs, ids := sh.peers4(sw)
	ixRef, ix := sh.index4(sw)
	i := find4(recs, ix, ip, port)
	if i >= 0 && a.Event != bittorrent.EventStopped {
		var id *bittorrent.PeerID
		if ids != nil {
			id = &ids[i]
		}
		sw.reannounced(&recs[i].e, id, a, exp)
		if seeder := i < int(sw.v4.ns); seeder == a.Seeder {
			return i, 0, 0
		}
	}
	// What open4 would make, from what is at hand.
	f := family[peer4, *peer4]{sh: sh, f: &sw.v4, ix: ixRef, idx: ix, recs: recs, ids: ids, hash: hashPeer4, min: indexMin4}
	if i >= 0 && a.Event != bittorrent.EventStopped {
		return changeRole(&f, i, i < int(sw.v4.ns), a.Seeder)
	}
	if i >= 0 { // stopped
		seeder := i < int(sw.v4.ns)
		f.remove(i)
		sh.tidy(sw)
		return left(seeder)
	}
	if a.Event == bittorrent.EventStopped {
		return -1, 0, 0
	}
	if sh.heap.peersFull() {
		return refusedJoin, 0, 0
	}
	if len(f.recs) >= indexMin4 && f.ix == nil {
		// push is about to build an index: it needs the extra.
		f.ix = &sh.addExtra(sw).idx4
	}
	r := peer4{ip: ip, port: port, e: encodeExp(exp, 0)}
	sw.countDownload(&r.e, a.Event)
	return joined(f.push(r, &a.Peer.ID, a.Seeder), a.Seeder)
}

// apply6 is apply4 for the IPv6 address ip:port; idx is in the IPv6
// family.
func (sh *shard) apply6(sw *swarm, a *store.Announce, ip *[16]byte, port uint16, exp uint32) (idx, dS, dL int) {
	k := makeKey6(ip, port)
	i := -1
	if sw.x != 0 {
		x := sh.extra(sw)
		recs, ids := sh.peers6(x)
		i = find6(recs, view[uint64](sh, x.idx6.h, blockSize(x.idx6.n)), k)
		if i >= 0 && a.Event != bittorrent.EventStopped {
			var id *bittorrent.PeerID
			if ids != nil {
				id = &ids[i]
			}
			sw.reannounced(&recs[i].e, id, a, exp)
			if seeder := i < int(x.v6.ns); seeder != a.Seeder {
				f := open6(sh, x)
				return changeRole(&f, i, seeder, a.Seeder)
			}
			return i, 0, 0
		}
	}
	if i >= 0 { // stopped
		x := sh.extra(sw)
		f := open6(sh, x)
		seeder := i < int(x.v6.ns)
		f.remove(i)
		sh.tidy(sw)
		return left(seeder)
	}
	if a.Event == bittorrent.EventStopped {
		return -1, 0, 0
	}
	if sh.heap.peersFull() {
		return refusedJoin, 0, 0
	}
	f := open6(sh, sh.addExtra(sw))
	r := peer6{ip: *ip, port: port, e: encodeExp(exp, 0)}
	sw.countDownload(&r.e, a.Event)
	return joined(f.push(r, &a.Peer.ID, a.Seeder), a.Seeder)
}

// compact drops the peers expired at now (expiry <= now), sets minExp to
// the earliest expiry left, and returns how many seeders and leechers it
// dropped, and how many of them were IPv6.
func (sh *shard) compact(sw *swarm, now uint32) (rmS, rmL, rmS6, rmL6 int) {
	m, minExp := sw.minExp, uint32(noExp)
	f4 := open4(sh, sw)
	rmS, rmL = f4.compact(now, m, &minExp)
	if sw.x != 0 {
		f6 := open6(sh, sh.extra(sw))
		rmS6, rmL6 = f6.compact(now, m, &minExp)
		rmS, rmL = rmS+rmS6, rmL+rmL6
		sh.tidy(sw)
	}
	sw.minExp = minExp
	return rmS, rmL, rmS6, rmL6
}

// bounded maps the random x to [0, n) (Lemire's multiply-shift; the bias,
// at most n/2^64, is far below anything observable).
func bounded(x uint64, n int) int {
	hi, _ := bits.Mul64(x, uint64(n))
	return int(hi)
}

// candidates are the peers an announce may be given: a range of each
// family, with their ids (nil when the store keeps none).
type candidates struct {
	a4   []peer4
	id4  []bittorrent.PeerID
	a6   []peer6
	id6  []bittorrent.PeerID
	skip int // the announcing peer's position among them, -1 if it is not one
	m    int // how many: len(a4)+len(a6), less the skipped one
	// out, when not nil, takes the chosen peers in compact form, and the
	// []bittorrent.Peer of sample and its helpers is passed through as is.
	out *compactPeers
}

// compactPeers are peers in the compact form of store.CompactAnnouncer:
// v4 has 6 bytes per IPv4 peer, v6 18 per IPv6 peer, address then port in
// network order. A bittorrent.Peer is 56 bytes with a pointer in its
// netip.Addr; writing 6 bytes per peer instead, straight from the records
// of a run, is cheaper here (BenchmarkAnnounceCompact, medians of 3: 200
// of 100,000 peers 2,343 -> 2,048 cpu-ns per announce, 50 of 1,000 2,362
// -> 2,033) and saves the frontend a pass over the peers to encode them.
type compactPeers struct {
	v4, v6 []byte
}

// add4 appends recs to c.v4.
func (c *compactPeers) add4(recs []peer4) {
	n := len(c.v4)
	c.v4 = slices.Grow(c.v4, 6*len(recs))[:n+6*len(recs)]
	b := c.v4[n:]
	for i := range recs {
		binary.BigEndian.PutUint32(b[6*i:], recs[i].ip)
		binary.BigEndian.PutUint16(b[6*i+4:], recs[i].port)
	}
}

// add6 appends recs to c.v6.
func (c *compactPeers) add6(recs []peer6) {
	for i := range recs {
		c.v6 = append(c.v6, recs[i].ip[:]...)
		c.v6 = binary.BigEndian.AppendUint16(c.v6, recs[i].port)
	}
}

// pick appends to peers up to want peers chosen at random among the
// candidates of an announcing seeder (the leechers) or leecher (everyone),
// leaving out the announcing peer: index self4 of the IPv4 family or self6
// of the IPv6 family (-1 for neither). It takes them one by one from
// fewer than runMin candidates, in runs of up to runLen from more (see
// sample). With out, the peers go to out in compact form instead.
func (sh *shard) pick(sw *swarm, seeder bool, fam bittorrent.Family, self4, self6, want int, peers []bittorrent.Peer, out *compactPeers) []bittorrent.Peer {
	c := sh.candidates(sw, seeder, fam, self4, self6)
	c.out = out
	run := 1
	if c.m >= runMin {
		run = runLen
	}
	return c.sample(&sh.rng, want, run, peers)
}

// runLen and runMin are the run length of pick and the number of
// candidates from which it takes runs: 8 IPv4 records are one cache line
// (two when a run straddles lines). Below 2048 candidates (16 KiB of IPv4
// records) runs were not measurably cheaper than picks one by one
// (BenchmarkAnnounceSwarmSize: swarms of 1,000 with NumWant 200 took 15%
// more CPU with runs from 512, within the noise of the machine, though a
// cache simulator counted fewer misses), so the exact sampler stays there.
const (
	runLen = 8
	runMin = 2048
)

// candidates returns the candidates of an announcing seeder (the leechers)
// or leecher (everyone), leaving out the announcing peer: index self4 of
// the IPv4 family or self6 of the IPv6 family (-1 for neither).
func (sh *shard) candidates(sw *swarm, seeder bool, fam bittorrent.Family, self4, self6 int) candidates {
	var c candidates
	if fam != bittorrent.IPv6Only {
		c.a4, c.id4 = sh.peers4(sw)
		if seeder {
			c.a4 = c.a4[sw.v4.ns:]
			if c.id4 != nil {
				c.id4 = c.id4[sw.v4.ns:]
			}
		}
	} else {
		self4 = -1
	}
	if fam != bittorrent.IPv4Only && sw.x != 0 {
		x := sh.extra(sw)
		c.a6, c.id6 = sh.peers6(x)
		if seeder {
			c.a6 = c.a6[x.v6.ns:]
			if c.id6 != nil {
				c.id6 = c.id6[x.v6.ns:]
			}
		}
	} else {
		self6 = -1
	}
	c.skip = -1
	switch {
	case seeder:
		// The requester is a seeder: not among the candidates.
	case self4 >= 0:
		c.skip = self4
	case self6 >= 0:
		c.skip = len(c.a4) + self6
	}
	c.m = len(c.a4) + len(c.a6)
	if c.skip >= 0 {
		c.m--
	}
	return c
}

// sample appends to peers min(want, c.m) of the candidates chosen at
// random, in runs of up to run consecutive candidates (run >= 1; one by
// one when the candidates are fewer than 2*want).
//
// The candidates are the concatenation of one range of the IPv4 family and
// one of the IPv6 family, m peers once the announcing one is skipped.
// sample rotates them by a random offset and cuts them into s =
// ceil(want/run) strata of equal size (give or take one); in each it takes
// a run of want/s (give or take one) consecutive candidates from a random
// start, wrapping around within the stratum. No peer twice, no
// allocation, and since the rotation makes every position equally likely
// for every peer, each is chosen with probability exactly want/m whatever
// run is (a position in a stratum of size z with a run of l is taken with
// probability l/z; summed over the m positions, that is want). Seeders and
// leechers (and IPv4 and IPv6 peers) come in proportion to their numbers,
// within a run. With run 1 this is plain stratified sampling, one random
// candidate per stratum; with run 8 an answer of 50 reads 7 runs, about
// 13 cache lines of IPv4 records instead of 50 (see the package doc for
// what it costs in fairness).
func (c *candidates) sample(rng *rand.PCG, want, run int, peers []bittorrent.Peer) []bittorrent.Peer {
	m := c.m
	want = min(want, m)
	if want <= 0 {
		return peers
	}
	if c.out == nil {
		peers = slices.Grow(peers, want)
	} else if len(c.a4) > 0 {
		c.out.v4 = slices.Grow(c.out.v4, 6*want)
	}
	r := bounded(rng.Uint64(), m)
	if want == m {
		return c.appendRotated(peers, 0, m, r)
	}
	if run == 1 || m < 2*want {
		// One by one (runs of want/s+1 might not fit strata of m/s).
		return c.sampleOne(peers, rng, want, r)
	}
	s := (want + run - 1) / run
	// Every run fits its stratum: with m >= 2*want, runs of at most
	// want/s+1 in strata of at least m/s >= 2*(want/s).
	q, rem := m/s, m%s
	lq, lrem := want/s, want%s
	lo, acc := 0, 0
	for j := range s {
		size := q
		if acc += rem; acc >= s {
			acc -= s
			size++
		}
		l := lq
		if j < lrem {
			l++
		}
		// The run is [k, k+l) in the stratum, wrapping around at size,
		// and then rotated by r, wrapping around at m: up to four pieces.
		k := bounded(rng.Uint64(), size)
		n := min(l, size-k)
		peers = c.appendRotated(peers, lo+k, n, r)
		if l > n {
			peers = c.appendRotated(peers, lo, l-n, r)
		}
		lo += size
	}
	return peers
}

// sampleOne is sample with runs of 1, candidates rotated by r: one
// candidate at random in each of want strata.
func (c *candidates) sampleOne(peers []bittorrent.Peer, rng *rand.PCG, want, r int) []bittorrent.Peer {
	m := c.m
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
		peers = c.append(peers, rotate(k+r, m))
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

// append appends candidate k, counted without the skipped one.
func (c *candidates) append(peers []bittorrent.Peer, k int) []bittorrent.Peer {
	if c.skip >= 0 && k >= c.skip {
		k++
	}
	if c.out != nil {
		if k < len(c.a4) {
			r := &c.a4[k]
			c.out.v4 = append(c.out.v4, byte(r.ip>>24), byte(r.ip>>16), byte(r.ip>>8), byte(r.ip), byte(r.port>>8), byte(r.port))
		} else {
			c.out.add6(c.a6[k-len(c.a4) : k-len(c.a4)+1])
		}
		return peers
	}
	var p bittorrent.Peer
	if k < len(c.a4) {
		p.Addr = c.a4[k].addr()
		if c.id4 != nil {
			p.ID = c.id4[k]
		}
	} else {
		k -= len(c.a4)
		p.Addr = c.a6[k].addr()
		if c.id6 != nil {
			p.ID = c.id6[k]
		}
	}
	return append(peers, p)
}

// appendRotated appends the n candidates from k on (k+n <= m) of the
// candidates rotated by r (0 <= r < m): candidates k+r to k+r+n-1, modulo m.
func (c *candidates) appendRotated(peers []bittorrent.Peer, k, n, r int) []bittorrent.Peer {
	k += r
	if k >= c.m {
		k -= c.m
	}
	if k+n > c.m {
		peers = c.appendRange(peers, k, c.m-k)
		n -= c.m - k
		k = 0
	}
	return c.appendRange(peers, k, n)
}

// appendRange appends the n candidates from k on (k+n <= m), counted
// without the skipped one.
func (c *candidates) appendRange(peers []bittorrent.Peer, k, n int) []bittorrent.Peer {
	if c.skip >= 0 && k+n > c.skip {
		if k < c.skip {
			peers = c.appendRecords(peers, k, c.skip-k)
			n -= c.skip - k
			k = c.skip
		}
		k++
	}
	return c.appendRecords(peers, k, n)
}

// appendRecords appends records k to k+n-1 of the IPv4 range followed by
// the IPv6 range.
func (c *candidates) appendRecords(peers []bittorrent.Peer, k, n int) []bittorrent.Peer {
	if k < len(c.a4) {
		e := min(k+n, len(c.a4))
		if c.out != nil {
			c.out.add4(c.a4[k:e])
		} else if c.id4 == nil {
			for i := range c.a4[k:e] {
				peers = append(peers, bittorrent.Peer{Addr: c.a4[k+i].addr()})
			}
		} else {
			ids := c.id4[k:e]
			for i := range ids {
				peers = append(peers, bittorrent.Peer{ID: ids[i], Addr: c.a4[k+i].addr()})
			}
		}
		n -= e - k
		k = e
	}
	if n <= 0 {
		return peers
	}
	k -= len(c.a4)
	recs := c.a6[k : k+n]
	if c.out != nil {
		c.out.add6(recs)
		return peers
	}
	for i := range recs {
		p := bittorrent.Peer{Addr: recs[i].addr()}
		if c.id6 != nil {
			p.ID = c.id6[k+i]
		}
		peers = append(peers, p)
	}
	return peers
}
