package memory

import (
	"encoding/binary"
	"net/netip"

	"trackd/bittorrent"
)

// Peer records and the sorted slices that hold them.
//
// A swarm keeps its IPv4 peers in one slice of peer4 and its IPv6 peers in
// another of peer6. Each slice is split in two parts, seeders first:
//
//	[0, ns)        seeders,  sorted by (ip, port)
//	[ns, len)      leechers, sorted by (ip, port)
//
// so a session is found by two binary searches, the candidates for a seeder
// (leechers only) and for a leecher (everyone) are each one contiguous range,
// and a peer changing role is moved by one memmove of the records between
// its old and its new place. Records hold no pointers, so the garbage
// collector never scans them.

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

// key4 orders IPv4 sessions by (ip, port).
func key4(ip uint32, port uint16) uint64 { return uint64(ip)<<16 | uint64(port) }

func (p *peer4) key() uint64 { return key4(p.ip, p.port) }

func (p *peer4) peer() bittorrent.Peer {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], p.ip)
	return bittorrent.Peer{ID: p.id, Addr: netip.AddrPortFrom(netip.AddrFrom4(a), p.port)}
}

// linearMax is the length up to which search4 and search6 scan instead of
// bisecting.
const linearMax = 16

// search4 returns where k is or would be inserted in s, sorted by key, and
// whether it is there.
func search4(s []peer4, k uint64) (int, bool) {
	if len(s) <= linearMax {
		// A scan of a few records costs less than a binary search: its
		// loads do not wait on each other's comparisons.
		for i := range s {
			if sk := s[i].key(); sk >= k {
				return i, sk == k
			}
		}
		return len(s), false
	}
	lo, hi := 0, len(s)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s[m].key() < k {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(s) && s[lo].key() == k
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

// key6 orders IPv6 sessions by (ip, port): hi and lo are the address's
// halves read big-endian.
type key6 struct {
	hi, lo uint64
	port   uint16
}

func makeKey6(ip *[16]byte, port uint16) key6 {
	return key6{binary.BigEndian.Uint64(ip[:8]), binary.BigEndian.Uint64(ip[8:]), port}
}

func (k key6) less(o key6) bool {
	if k.hi != o.hi {
		return k.hi < o.hi
	}
	if k.lo != o.lo {
		return k.lo < o.lo
	}
	return k.port < o.port
}

func (p *peer6) key() key6 { return makeKey6(&p.ip, p.port) }

func (p *peer6) peer() bittorrent.Peer {
	return bittorrent.Peer{ID: p.id, Addr: netip.AddrPortFrom(netip.AddrFrom16(p.ip), p.port)}
}

func search6(s []peer6, k key6) (int, bool) {
	if len(s) <= linearMax {
		for i := range s {
			if sk := s[i].key(); !sk.less(k) {
				return i, sk == k
			}
		}
		return len(s), false
	}
	lo, hi := 0, len(s)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s[m].key().less(k) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(s) && s[lo].key() == k
}

// Slice surgery shared by both record types. None of it allocates but
// insertAt when the slice is full.

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

// insertAt inserts v at index i of s.
func insertAt[T any](s []T, i int, v T) []T {
	if len(s) == cap(s) {
		s = realloc(s, newCap(len(s)))
	}
	s = s[:len(s)+1]
	copy(s[i+1:], s[i:])
	s[i] = v
	return s
}

// removeAt removes index i of s, and frees the array or moves s to a
// smaller one when it is at most a quarter full.
func removeAt[T any](s []T, i int) []T {
	copy(s[i:], s[i+1:])
	return shrink(s[:len(s)-1])
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

// moveDown moves s[from] to index to <= from, shifting s[to:from] up by one.
func moveDown[T any](s []T, from, to int) {
	v := s[from]
	copy(s[to+1:from+1], s[to:from])
	s[to] = v
}

// moveUp moves s[from] to index to >= from, shifting s[from+1:to+1] down by
// one.
func moveUp[T any](s []T, from, to int) {
	v := s[from]
	copy(s[from:to], s[from+1:to+1])
	s[to] = v
}
