package loadgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"

	"trackd/bittorrent"
)

// Ports of simulated peers lie in [portBase, 65535].
const (
	portBase = 1024
	portSpan = 65536 - portBase // 64512 = 2^10 · 3^2 · 7
)

// MaxSourceAddrs bounds the number of distinct source addresses.
const MaxSourceAddrs = 4096

// peerIDPrefix marks simulated peers in the Azureus style ("-XXnnnn-").
const peerIDPrefix = "-TL0100-"

// Weight is the popularity weight of the torrent of rank i (0 is the most
// popular) in a population of peers spread over torrents:
//
//	weight(i) = peers/torrents + exp(6.5 − 500·i/torrents)
//
// a flat long tail plus an exponential hot head of a few thousand torrents
// per million. Peers are dealt to torrents in proportion to these weights.
func Weight(i, torrents, peers int) float64 {
	return float64(peers)/float64(torrents) + math.Exp(6.5-500*float64(i)/float64(torrents))
}

// Workload is the simulated population. Torrent t has an info hash derived
// from the seed and t. Peer j belongs to one torrent, and has a stable
// source address (one of SourceAddrs: index j mod SourceAddrs), port, peer
// id, key and seeder flag, all derived from the seed and j, so that two
// runs with the same flags simulate the same peers.
//
// The peers of a torrent are consecutive indices, and (address, port) only
// repeats every SourceAddrs·64512 indices, so no two peers of a torrent
// share an (address, port) unless a torrent has more peers than that.
//
// A Workload is read-only once built and safe for concurrent use.
type Workload struct {
	torrents, peers, addrs int
	seed                   uint64
	seederProb             float64
	first                  []uint32 // first[t] is torrent t's first peer; len torrents+1
	torrentOf              []uint32 // torrentOf[j] is peer j's torrent
	portMul, portAdd       int
	ihSeed, idSeed, sdSeed uint64
}

// ZipfWeight is the popularity weight of the torrent of rank i (0 is the
// most popular) under Zipf's law with exponent s: 1/(i+1)^s. The torrent of
// rank i then has about 1/(i+1)^s of the hottest torrent's peers.
func ZipfWeight(i int, s float64) float64 {
	return math.Pow(float64(i+1), -s)
}

// MaxZipf bounds the Zipf exponent (beyond it nearly every peer is on the
// hottest torrent).
const MaxZipf = 5.0

// NewWorkload builds a population of peers over torrents, with addrs
// distinct source addresses, from seed. seederProb is the chance that a
// peer is a seeder. Peers are dealt to torrents by [Weight].
func NewWorkload(torrents, peers, addrs int, seed uint64, seederProb float64) (*Workload, error) {
	return newWorkload(torrents, peers, addrs, seed, seederProb, 0)
}

// NewZipfWorkload is [NewWorkload] with the peers dealt to torrents by
// Zipf's law of exponent s ([ZipfWeight]) instead of [Weight]: with s = 1
// the hottest of 100,000 torrents holds about 8 % of the peers, the 1000th
// about 1/1000 of that. s must be in (0, MaxZipf].
func NewZipfWorkload(torrents, peers, addrs int, seed uint64, seederProb, s float64) (*Workload, error) {
	if !(s > 0 && s <= MaxZipf) {
		return nil, fmt.Errorf("the Zipf exponent must be in (0, %g]", MaxZipf)
	}
	return newWorkload(torrents, peers, addrs, seed, seederProb, s)
}

// newWorkload builds a workload; zipf 0 picks Weight, else ZipfWeight.
func newWorkload(torrents, peers, addrs int, seed uint64, seederProb, zipf float64) (*Workload, error) {
	switch {
	case torrents < 1:
		return nil, errors.New("need at least one torrent")
	case peers < 1:
		return nil, errors.New("need at least one peer")
	case torrents > math.MaxUint32/2 || peers > math.MaxUint32/2:
		return nil, errors.New("population too large")
	case addrs < 1 || addrs > MaxSourceAddrs:
		return nil, fmt.Errorf("source addresses must be between 1 and %d", MaxSourceAddrs)
	case seederProb < 0 || seederProb > 1 || math.IsNaN(seederProb):
		return nil, errors.New("seeder probability must be between 0 and 1")
	}
	w := &Workload{
		torrents: torrents, peers: peers, addrs: addrs,
		seed: seed, seederProb: seederProb,
		first:     make([]uint32, torrents+1),
		torrentOf: make([]uint32, peers),
		ihSeed:    mix64(seed ^ 0x1a2b3c4d),
		idSeed:    mix64(seed ^ 0x5e6f7a8b),
		sdSeed:    mix64(seed ^ 0x9cadbecf),
	}
	// The port permutation r -> (mul·r + add) mod portSpan needs a
	// multiplier coprime with portSpan: odd, and no multiple of 3 or 7.
	m := mix64(seed ^ 0x0f1e2d3c)
	w.portAdd = int(m % portSpan)
	w.portMul = int((m>>20)%portSpan) | 1
	for gcd(w.portMul, portSpan) != 1 {
		w.portMul += 2
	}

	// Deal peers to torrents by systematic sampling of the weights: peer j
	// goes to the torrent whose cumulative weight covers (j+½)·W/peers.
	// Every torrent gets its expected share rounded up or down, and the
	// peers of a torrent are consecutive.
	weight := func(i int) float64 { return Weight(i, torrents, peers) }
	if zipf > 0 {
		weight = func(i int) float64 { return ZipfWeight(i, zipf) }
	}
	var total float64
	for i := 0; i < torrents; i++ {
		total += weight(i)
	}
	step := total / float64(peers)
	var cum float64
	j := 0
	for t := 0; t < torrents; t++ {
		cum += weight(t)
		w.first[t] = uint32(j)
		for j < peers && (float64(j)+0.5)*step < cum {
			w.torrentOf[j] = uint32(t)
			j++
		}
	}
	for ; j < peers; j++ { // rounding leftovers
		w.torrentOf[j] = uint32(torrents - 1)
	}
	w.first[torrents] = uint32(peers)
	return w, nil
}

// Torrents returns the number of torrents.
func (w *Workload) Torrents() int { return w.torrents }

// Peers returns the number of simulated peers.
func (w *Workload) Peers() int { return w.peers }

// SourceAddrs returns the number of distinct source addresses.
func (w *Workload) SourceAddrs() int { return w.addrs }

// TorrentPeers returns the peer indices [lo, hi) of torrent t.
func (w *Workload) TorrentPeers(t int) (lo, hi int) {
	return int(w.first[t]), int(w.first[t+1])
}

// TorrentOf returns peer j's torrent.
func (w *Workload) TorrentOf(j int) int { return int(w.torrentOf[j]) }

// InfoHash returns torrent t's info hash.
func (w *Workload) InfoHash(t int) bittorrent.InfoHash {
	var h bittorrent.InfoHash
	a := mix64(w.ihSeed + uint64(t))
	b := mix64(a)
	c := mix64(b)
	binary.BigEndian.PutUint64(h[0:8], a)
	binary.BigEndian.PutUint64(h[8:16], b)
	binary.BigEndian.PutUint32(h[16:20], uint32(c))
	return h
}

// Peer is one simulated peer as the generator announces it.
type Peer struct {
	Index    int
	Torrent  int
	InfoHash bittorrent.InfoHash
	ID       bittorrent.PeerID
	// AddrIndex picks the source address; see SourceAddr.
	AddrIndex int
	Port      uint16
	Key       uint32
	Seeder    bool
}

// Peer fills p with peer j. It does not allocate.
func (w *Workload) Peer(j int, p *Peer) {
	t := int(w.torrentOf[j])
	p.Index = j
	p.Torrent = t
	p.InfoHash = w.InfoHash(t)
	p.AddrIndex = j % w.addrs
	r := (j / w.addrs) % portSpan
	p.Port = uint16(portBase + (w.portMul*r+w.portAdd)%portSpan)
	a := mix64(w.idSeed + uint64(j))
	b := mix64(a)
	copy(p.ID[:8], peerIDPrefix)
	binary.BigEndian.PutUint64(p.ID[8:16], a)
	binary.BigEndian.PutUint32(p.ID[16:20], uint32(b))
	p.Key = uint32(b >> 32)
	p.Seeder = float64(mix64(w.sdSeed+uint64(j))>>11)*(1.0/(1<<53)) < w.seederProb
}

// SourceAddr returns the loopback source address of index i: 127.0.0.2,
// 127.0.0.3, ... (Linux routes all of 127/8 to lo, so a client socket can
// bind to any of them and the tracker sees distinct addresses).
func SourceAddr(i int) netip.Addr {
	v := uint32(127<<24) + 2 + uint32(i)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// lane is the share of the peers one socket or connection plays: the peers
// of source address addr whose rank among that address's peers is
// offset + stride·i for i in [0, n).
type lane struct {
	addr, offset, stride, n int
}

// lane returns the lane of worker s of count. Worker s uses source address
// s mod SourceAddrs; the workers of an address split its peers. Every peer
// is in exactly one lane when count >= SourceAddrs.
func (w *Workload) lane(s, count int) lane {
	A := w.addrs
	l := lane{addr: s % A, offset: s / A}
	if l.addr >= w.peers {
		return l
	}
	l.stride = (count - l.addr + A - 1) / A // workers on this address
	ranks := (w.peers - l.addr + A - 1) / A // peers on this address
	if l.offset < ranks {
		l.n = (ranks - l.offset + l.stride - 1) / l.stride
	}
	return l
}

// peer returns the global index of the lane's i-th peer.
func (l lane) peer(i, addrs int) int {
	return l.addr + addrs*(l.offset+l.stride*i)
}

// cycle walks a lane's peers in a fixed pseudo-random order, over and over:
// i -> (mul·i + add) mod n with mul coprime to n is a permutation of [0, n).
type cycle struct {
	n, mul, add, pos, round int
}

func newCycle(n int, seed uint64) cycle {
	c := cycle{n: n}
	if n <= 1 {
		c.mul = 1
		return c
	}
	m := mix64(seed)
	c.add = int(m % uint64(n))
	c.mul = int((m>>17)%uint64(n)) | 1
	for gcd(c.mul, n) != 1 {
		c.mul++
	}
	return c
}

// next returns the next local index and whether this is the lane's first
// pass (the peer's first announce).
func (c *cycle) next() (int, bool) {
	i := (c.mul*c.pos + c.add) % c.n
	first := c.round == 0
	c.pos++
	if c.pos == c.n {
		c.pos = 0
		c.round++
	}
	return i, first
}
