package memory

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"unsafe"

	"trackd/bittorrent"
)

// Peer records, and the blocks that hold them.
//
// A swarm keeps its IPv4 peers in one block of peer4 records and its IPv6
// peers in another of peer6: a family. Each family is split in two parts,
// in no particular order within each:
//
//	[0, ns)        seeders
//	[ns, n)        leechers
//
// so the candidates for a seeder (leechers only) and for a leecher
// (everyone) are each one contiguous range, and a peer joins, leaves or
// changes role by swapping at most two records: O(1) whatever the size of
// the swarm. A store that keeps peer ids (store.Options.PeerIDs) keeps them
// in the same block, after room for every record: the id of record i is
// ids[i], and every move of a record moves its id. A family small enough
// (indexMin4, indexMin6) is searched by a scan, which for so few records
// costs about what one cache miss does; a bigger one also has an index, an
// open-addressing table from the hash of (ip, port) to the record's
// position.

// A record's e field holds its expiry, in seconds since the store's base
// time, modulo 2^15 (expBits), and the flag flagCompleted.
//
// The swarm's minExp m makes the expiry whole again: every record of a
// swarm expires in [m, m+2^15), so a record's expiry is the one number of
// that window equal to e modulo 2^15 (see expiryOf). The window holds
// because a swarm whose m has passed is compacted before anything is added
// to it (after which m is exact and in the future), and a peer announcing
// at second t expires at most at t+1+lifetime: so every expiry lies in
// (t, t+1+lifetime] for the last compaction or announce t, a window of at
// most lifetime+1 seconds, which MaxPeerLifetime keeps below 2^15. No
// sweep is needed for it: a swarm nobody touches for days is still read
// right.
const (
	expBits       = 15
	expMask       = 1<<expBits - 1
	flagCompleted = 1 << expBits // the session's completed event has been counted in the swarm's Downloaded
)

// encodeExp makes the e field of a record expiring at exp, with the flags
// of old.
func encodeExp(exp uint32, old uint16) uint16 {
	return uint16(exp)&expMask | old&flagCompleted
}

// expiryOf returns the expiry of a record whose e field is e, in a swarm
// whose minExp is m.
func expiryOf(e uint16, m uint32) uint32 { return m + uint32((e-uint16(m))&expMask) }

// peer4 is an IPv4 peer: 8 bytes, 4-aligned (find4 reads it as one word).
type peer4 struct {
	ip   uint32 // the address, big-endian: a.b.c.d is a<<24|b<<16|c<<8|d
	port uint16
	e    uint16 // expiry and flags
}

// key4 identifies an IPv4 session: (ip, port).
func key4(ip uint32, port uint16) uint64 { return uint64(ip)<<16 | uint64(port) }

func (p *peer4) key() uint64 { return key4(p.ip, p.port) }

func (p *peer4) addr() netip.AddrPort {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], p.ip)
	return netip.AddrPortFrom(netip.AddrFrom4(a), p.port)
}

// peer6 is an IPv6 peer: 20 bytes. A zone is not kept.
type peer6 struct {
	ip   [16]byte
	port uint16
	e    uint16
}

// key6 identifies an IPv6 session: hi and lo are the address's halves read
// big-endian.
type key6 struct {
	hi, lo uint64
	port   uint16
}

func makeKey6(ip *[16]byte, port uint16) key6 {
	return key6{binary.BigEndian.Uint64(ip[:8]), binary.BigEndian.Uint64(ip[8:]), port}
}

func (p *peer6) key() key6 { return makeKey6(&p.ip, p.port) }

func (p *peer6) addr() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(p.ip), p.port)
}

// record is what the code common to both families needs of a record.
type record[R any] interface {
	*R
	flags() *uint16
}

func (p *peer4) flags() *uint16 { return &p.e }
func (p *peer6) flags() *uint16 { return &p.e }

// keySeed keys the hashes of the indexes, so that no one can choose
// addresses that collide in them.
var keySeed = rand.Uint64()

// mix is a 64-bit finalizer (MurmurHash3's): every bit of x changes about
// half the bits of the result.
func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

func hash4(k uint64) uint32 { return uint32(mix(k^keySeed) >> 32) }

func hash6(k key6) uint32 {
	x := k.hi*0x9e3779b97f4a7c15 ^ bits.RotateLeft64(k.lo*0xc2b2ae3d27d4eb4f, 31) ^ uint64(k.port)
	return uint32(mix(x^keySeed) >> 32)
}

func hashPeer4(p *peer4) uint32 { return hash4(p.key()) }
func hashPeer6(p *peer6) uint32 { return hash6(p.key()) }

// indexMin4 and indexMin6 are the sizes above which a family has an index
// (it loses it below half that). A scan of 128 records (1 or 2.5 KiB, one
// compare each) costs about what the index's cache misses do in a store
// too big for the caches, and more than an index lookup in one that fits
// (BenchmarkHandleAnnounce in frontend/udp: a swarm of 200, +10% with 512
// here). The index costs 11 to 21 bytes a peer of the swarms that have
// one: about 1 byte a peer in all with 1,000,000 peers over 100,000
// torrents as trackd-load deals them, 5 with 2,000,000 over 1,000,000,
// where the hot swarms hold more of the peers.
const (
	indexMin4 = 128
	indexMin6 = 128
)

// index maps the 32-bit key hash of each record of a family to its
// position: a power-of-two table of hash<<32 | position+1, 0 for an empty
// entry, at most 3/4 full, linear probing from hash&mask and backward-shift
// deletion. 8 bytes an entry, 11 to 21 bytes a peer.
type index []uint64

func (ix index) mask() int { return len(ix) - 1 }

// entry returns where the entry for the record at pos, of hash h, is.
func (ix index) entry(h uint32, pos int) int {
	want := uint64(h)<<32 | uint64(pos+1)
	m := ix.mask()
	for e := int(h) & m; ; e = (e + 1) & m {
		if ix[e] == want {
			return e
		}
	}
}

// setPos makes entry e point to pos.
func (ix index) setPos(e, pos int) { ix[e] = ix[e]&^(1<<32-1) | uint64(pos+1) }

func (ix index) add(h uint32, pos int) {
	m := ix.mask()
	e := int(h) & m
	for ix[e] != 0 {
		e = (e + 1) & m
	}
	ix[e] = uint64(h)<<32 | uint64(pos+1)
}

// del empties entry e, shifting back the entries after it that would
// otherwise become unreachable.
func (ix index) del(e int) {
	m := ix.mask()
	for j := (e + 1) & m; ix[j] != 0; j = (j + 1) & m {
		// Entry j may fill the hole at e unless its home lies cyclically
		// in (e, j].
		h := int(ix[j]>>32) & m
		if (e < j && e < h && h <= j) || (e > j && (e < h || h <= j)) {
			continue
		}
		ix[e] = ix[j]
		e = j
	}
	ix[e] = 0
}

// fam is the header of a family, in its swarm: where its block is and how
// many records it holds. 16 bytes.
type fam struct {
	h    handle    // 0 when the family is empty
	size blockSize // of the block
	n    uint32    // records
	ns   uint32    // seeders, at the front
}

// idxRef is the header of an index: its block and its number of entries (a
// power of two, which is the block's size in 8-byte units). 8 bytes.
type idxRef struct {
	h handle
	n uint32 // 0 for no index
}

// family is one family of a swarm, opened for reading and changing it: the
// header, the records and ids it points to, and the index.
type family[R any, P record[R]] struct {
	sh   *shard
	f    *fam
	ix   *idxRef // nil for a family that may not have an index: an IPv4 family whose swarm has no extra yet (see swarm.apply4)
	idx  index   // the index *ix points to, nil if none
	recs []R     // the records, len f.n, cap the block's capacity
	ids  []bittorrent.PeerID
	hash func(*R) uint32
	min  int // indexMin4 or indexMin6
}

func open4(sh *shard, sw *swarm) family[peer4, *peer4] {
	fm := family[peer4, *peer4]{sh: sh, f: &sw.v4, hash: hashPeer4, min: indexMin4}
	if sw.x != 0 {
		fm.ix = &sh.extra(sw).idx4
	}
	fm.load()
	return fm
}

func open6(sh *shard, x *extra) family[peer6, *peer6] {
	fm := family[peer6, *peer6]{sh: sh, f: &x.v6, ix: &x.idx6, hash: hashPeer6, min: indexMin6}
	fm.load()
	return fm
}

// stride returns the bytes a record and its id take in a block.
func (fm *family[R, P]) stride() uintptr {
	var r R
	if fm.sh.ids {
		return unsafe.Sizeof(r) + unsafe.Sizeof(bittorrent.PeerID{})
	}
	return unsafe.Sizeof(r)
}

// load points recs and ids at the block of the header, and idx at the
// index.
func (fm *family[R, P]) load() {
	if fm.ix != nil && fm.ix.n != 0 {
		fm.idx = view[uint64](fm.sh, fm.ix.h, blockSize(fm.ix.n))
	}
	f := fm.f
	if f.h == 0 {
		fm.recs, fm.ids = nil, nil
		return
	}
	// Two divisions by constants (per record type) rather than one by
	// stride(): this is on every announce.
	var r R
	var c uintptr
	if b := uintptr(f.size.bytes()); fm.sh.ids {
		c = b / (unsafe.Sizeof(r) + unsafe.Sizeof(bittorrent.PeerID{}))
	} else {
		c = b / unsafe.Sizeof(r)
	}
	p := fm.sh.ptr(f.h)
	fm.recs = unsafe.Slice((*R)(p), c)[:f.n]
	if fm.sh.ids {
		fm.ids = unsafe.Slice((*bittorrent.PeerID)(unsafe.Add(p, c*unsafe.Sizeof(r))), c)[:f.n]
	}
}

// index returns the family's index, nil if none.
func (fm *family[R, P]) index() index { return fm.idx }

// id returns the id of the record at i: zero if the store keeps none.
func (fm *family[R, P]) id(i int) bittorrent.PeerID {
	if fm.ids == nil {
		return bittorrent.PeerID{}
	}
	return fm.ids[i]
}

// resize moves the records and ids to a block with room for at least c of
// them (c >= f.n), or frees the block for c = 0.
func (fm *family[R, P]) resize(c int) {
	sh, f := fm.sh, fm.f
	old, oldSize := f.h, f.size
	recs, ids := fm.recs, fm.ids
	if c == 0 {
		f.h, f.size = 0, 0
		fm.recs, fm.ids = nil, nil
	} else {
		f.h, f.size = sh.alloc(c*int(fm.stride()), false)
		fm.load()
		copy(fm.recs, recs)
		copy(fm.ids, ids)
	}
	if old != 0 {
		sh.free(old, oldSize)
	}
}

// push adds r with its id, as a seeder or a leecher, and returns its
// position.
func (fm *family[R, P]) push(r R, id *bittorrent.PeerID, seeder bool) int {
	pos := len(fm.recs)
	if pos == cap(fm.recs) {
		fm.resize(pos + 1 + pos/8)
	}
	fm.recs = append(fm.recs, r)
	if fm.ids != nil {
		fm.ids = append(fm.ids, *id)
	}
	fm.f.n++
	n := pos + 1
	if fm.ix != nil {
		switch ix := fm.index(); {
		case ix != nil && n*4 <= len(ix)*3:
			ix.add(fm.hash(&fm.recs[pos]), pos)
		case ix != nil || n > fm.min:
			fm.reindex()
		}
	}
	if seeder {
		ns := int(fm.f.ns)
		fm.swap(pos, ns)
		fm.f.ns++
		return ns
	}
	return pos
}

// swap swaps the records (and ids) at i and j.
func (fm *family[R, P]) swap(i, j int) {
	if i == j {
		return
	}
	s := fm.recs
	if ix := fm.index(); ix != nil {
		ei, ej := ix.entry(fm.hash(&s[i]), i), ix.entry(fm.hash(&s[j]), j)
		ix.setPos(ei, j)
		ix.setPos(ej, i)
	}
	s[i], s[j] = s[j], s[i]
	if fm.ids != nil {
		fm.ids[i], fm.ids[j] = fm.ids[j], fm.ids[i]
	}
}

// remove removes the record at i.
func (fm *family[R, P]) remove(i int) {
	if ns := int(fm.f.ns); i < ns {
		// Move the last seeder into i, and the leaver to the
		// boundary, which becomes the leechers' part.
		fm.swap(i, ns-1)
		i = ns - 1
		fm.f.ns--
	}
	last := len(fm.recs) - 1
	fm.swap(i, last)
	ix := fm.index()
	if ix != nil {
		ix.del(ix.entry(fm.hash(&fm.recs[last]), last))
	}
	fm.recs = fm.recs[:last]
	if fm.ids != nil {
		fm.ids = fm.ids[:last]
	}
	fm.f.n--
	fm.shrink()
	if ix != nil && (last < fm.min/2 || last*8 < len(ix)) {
		fm.reindex() // drops it, or makes it smaller
	}
}

// shrink moves the records to a smaller block when they use half of
// theirs or less (the hysteresis between growing at full and shrinking at
// half keeps a swarm that gains and loses one peer from moving each time),
// and frees the block of an empty family.
func (fm *family[R, P]) shrink() {
	switch n := len(fm.recs); {
	case n == 0:
		fm.resize(0)
	case n <= cap(fm.recs)/2:
		fm.resize(n + n/8)
	}
}

// toSeeder makes the leecher at i a seeder and returns its new position.
func (fm *family[R, P]) toSeeder(i int) int {
	ns := int(fm.f.ns)
	fm.swap(i, ns)
	fm.f.ns++
	return ns
}

// toLeecher makes the seeder at i a leecher and returns its new position.
func (fm *family[R, P]) toLeecher(i int) int {
	ns := int(fm.f.ns) - 1
	fm.swap(i, ns)
	fm.f.ns--
	return ns
}

// reindex builds the index anew, at most half full, or drops it for a
// small family.
func (fm *family[R, P]) reindex() {
	if fm.ix == nil {
		return
	}
	sh, r := fm.sh, fm.ix
	if r.n != 0 {
		sh.free(r.h, blockSize(r.n))
		*r = idxRef{}
		fm.idx = nil
	}
	s := fm.recs
	if len(s) < fm.min/2 {
		return
	}
	n := 16
	for n < 2*len(s) {
		n *= 2
	}
	r.h, _ = sh.alloc(n*8, true)
	r.n = uint32(n)
	ix := index(view[uint64](sh, r.h, blockSize(n)))
	fm.idx = ix
	for i := range s {
		ix.add(fm.hash(&s[i]), i)
	}
}

// compact drops the records expired at now (the swarm's minExp is m),
// keeping the order (so seeders stay in front), lowers minExp to the
// earliest expiry left, and returns the seeders and leechers dropped.
func (fm *family[R, P]) compact(now, m uint32, minExp *uint32) (rmS, rmL int) {
	s, ids := fm.recs, fm.ids
	w := 0
	for i := range s {
		if e := expiryOf(*P(&s[i]).flags(), m); e > now {
			if w != i {
				s[w] = s[i]
				if ids != nil {
					ids[w] = ids[i]
				}
			}
			w++
			*minExp = min(*minExp, e)
		} else if i < int(fm.f.ns) {
			rmS++
		}
	}
	if w == len(s) {
		return 0, 0
	}
	rmL = len(s) - w - rmS
	fm.recs = s[:w]
	if ids != nil {
		fm.ids = ids[:w]
	}
	fm.f.n = uint32(w)
	fm.f.ns -= uint32(rmS)
	fm.shrink()
	fm.reindex()
	return rmS, rmL
}

// free frees the family's block and index.
func (fm *family[R, P]) free() {
	fm.recs, fm.ids = fm.recs[:0], nil
	fm.f.n, fm.f.ns = 0, 0
	fm.resize(0)
	fm.reindex()
}
