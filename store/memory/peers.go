package memory

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"net/netip"

	"trackd/bittorrent"
)

// Peer records, and the arrays that hold them.
//
// A swarm keeps its IPv4 peers in one slice of peer4 and its IPv6 peers in
// another of peer6: a family. Each family is split in two parts, in no
// particular order within each:
//
//	[0, ns)        seeders
//	[ns, len)      leechers
//
// so the candidates for a seeder (leechers only) and for a leecher
// (everyone) are each one contiguous range, and a peer joins, leaves or
// changes role by swapping at most two records: O(1) whatever the size of
// the swarm. A family of up to indexMin peers (most of them) is searched
// by a scan, which for so few records costs about what one cache miss does;
// a bigger one also has an index, an open-addressing table from the hash
// of (ip, port) to the record's position. Records hold no pointers, so the
// garbage collector never scans them.

// flagCompleted marks a session whose completed event has been counted in
// the swarm's Downloaded.
const flagCompleted = 1

// peer4 is an IPv4 peer: 32 bytes.
type peer4 struct {
	ip    uint32 // the address, big-endian: a.b.c.d is a<<24|b<<16|c<<8|d
	port  uint16
	flags uint8
	_     uint8
	exp   uint32 // expiry, in seconds since the store's base time
	id    bittorrent.PeerID
}

// key4 identifies an IPv4 session: (ip, port).
func key4(ip uint32, port uint16) uint64 { return uint64(ip)<<16 | uint64(port) }

func (p *peer4) key() uint64 { return key4(p.ip, p.port) }

func (p *peer4) peer() bittorrent.Peer {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], p.ip)
	return bittorrent.Peer{ID: p.id, Addr: netip.AddrPortFrom(netip.AddrFrom4(a), p.port)}
}

// peer6 is an IPv6 peer: 44 bytes. A zone is not kept.
type peer6 struct {
	ip    [16]byte
	port  uint16
	flags uint8
	_     uint8
	exp   uint32
	id    bittorrent.PeerID
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

func (p *peer6) peer() bittorrent.Peer {
	return bittorrent.Peer{ID: p.id, Addr: netip.AddrPortFrom(netip.AddrFrom16(p.ip), p.port)}
}

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

// indexMin is the size above which a family has an index; it loses it
// below indexMin/2.
const indexMin = 128

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

// family is the operations common to both record types on one family of a
// swarm: the records, the number of seeders at their front, and the index
// (idx is nil for a family that may not have one: an IPv4 family whose
// swarm has no extra yet, see swarm.apply4).
type family[R any] struct {
	s    *[]R
	ns   *uint32
	idx  *index
	hash func(*R) uint32
}

// push adds r, as a seeder or a leecher, and returns its position.
func (f family[R]) push(r R, seeder bool) int {
	s := *f.s
	if len(s) == cap(s) {
		s = realloc(s, newCap(len(s)))
	}
	pos := len(s)
	s = append(s, r)
	*f.s = s
	if f.idx != nil {
		switch ix := *f.idx; {
		case ix != nil && len(s)*4 <= len(ix)*3:
			ix.add(f.hash(&s[pos]), pos)
		case ix != nil || len(s) > indexMin:
			f.reindex()
		}
	}
	if seeder {
		ns := int(*f.ns)
		f.swap(pos, ns)
		*f.ns++
		return ns
	}
	return pos
}

// swap swaps the records at i and j.
func (f family[R]) swap(i, j int) {
	if i == j {
		return
	}
	s := *f.s
	if f.idx != nil {
		if ix := *f.idx; ix != nil {
			ei, ej := ix.entry(f.hash(&s[i]), i), ix.entry(f.hash(&s[j]), j)
			ix.setPos(ei, j)
			ix.setPos(ej, i)
		}
	}
	s[i], s[j] = s[j], s[i]
}

// remove removes the record at i.
func (f family[R]) remove(i int) {
	if ns := int(*f.ns); i < ns {
		// Move the last seeder into i, and the leaver to the
		// boundary, which becomes the leechers' part.
		f.swap(i, ns-1)
		i = ns - 1
		*f.ns--
	}
	s := *f.s
	last := len(s) - 1
	f.swap(i, last)
	var ix index
	if f.idx != nil {
		ix = *f.idx
	}
	if ix != nil {
		ix.del(ix.entry(f.hash(&s[last]), last))
	}
	*f.s = shrink(s[:last])
	if ix != nil && (last < indexMin/2 || last*8 < len(ix)) {
		f.reindex() // drops it, or makes it smaller
	}
}

// toSeeder makes the leecher at i a seeder and returns its new position.
func (f family[R]) toSeeder(i int) int {
	ns := int(*f.ns)
	f.swap(i, ns)
	*f.ns++
	return ns
}

// toLeecher makes the seeder at i a leecher and returns its new position.
func (f family[R]) toLeecher(i int) int {
	ns := int(*f.ns) - 1
	f.swap(i, ns)
	*f.ns--
	return ns
}

// reindex builds the index anew, at most half full, or drops it for a
// small family.
func (f family[R]) reindex() {
	if f.idx == nil {
		return
	}
	s := *f.s
	if len(s) < indexMin/2 {
		*f.idx = nil
		return
	}
	n := 16
	for n < 2*len(s) {
		n *= 2
	}
	ix := make(index, n)
	for i := range s {
		ix.add(f.hash(&s[i]), i)
	}
	*f.idx = ix
}

// Slice growth shared by both record types.

// newCap returns the capacity a full slice of n records grows to: about
// 1.25n (the allocator then rounds up to its size class). Growing by a
// quarter instead of append's doubling keeps the slack of small swarms,
// where most peers live, near 12% instead of 25-50%, for a few more copies
// when peers join.
func newCap(n int) int { return n + n/4 + 1 }

// realloc returns a copy of s in a new array of capacity at least c, rounded
// up to the allocator's size class so that no byte of it is wasted.
func realloc[T any](s []T, c int) []T {
	// append to a nil slice sizes the array by the size class of c
	// records, without allocating the make.
	t := append([]T(nil), make([]T, c)...)
	return t[:copy(t, s)]
}

// shrink moves s to a smaller array when it uses a quarter of its capacity
// or less (the hysteresis between growing at full and shrinking at a
// quarter keeps a swarm that gains and loses one peer from copying each
// time), and returns nil for an empty s.
func shrink[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	if cap(s) >= 8 && len(s) <= cap(s)/4 {
		return realloc(s, newCap(len(s)))
	}
	return s
}
