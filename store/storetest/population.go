package storetest

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"

	"trackd/bittorrent"
	"trackd/store"
)

// The benchmarks' population, one for every backend's benchmarks (and the
// fleet's) so that their figures compare: BenchPeers IPv4 peers, 75%
// seeders, spread at random over BenchTorrents torrents (about ten a
// torrent, Poisson).
const (
	BenchTorrents = 100_000
	BenchPeers    = 1_000_000
)

// BenchHash returns the info hash of torrent i of the population.
func BenchHash(i int) bittorrent.InfoHash {
	var h bittorrent.InfoHash
	binary.LittleEndian.PutUint64(h[:], uint64(i)*0x9E3779B97F4A7C15)
	binary.LittleEndian.PutUint64(h[8:], uint64(i))
	return h
}

// BenchAnnounce returns the announce of peer i of the population, with
// NumWant 50. The same i gives the same peer, torrent and role.
func BenchAnnounce(i int) store.Announce {
	r := rand.NewPCG(uint64(i), 0x5eed)
	x := r.Uint64()
	var id bittorrent.PeerID
	copy(id[:], "-TR3000-")
	binary.LittleEndian.PutUint64(id[8:], x)
	ip := [4]byte{byte(x >> 24), byte(x >> 32), byte(x >> 40), byte(i)}
	return store.Announce{
		InfoHash: BenchHash(int(x % BenchTorrents)),
		Peer:     bittorrent.Peer{ID: id, Addr: netip.AddrPortFrom(netip.AddrFrom4(ip), uint16(1024+i%50000))},
		Seeder:   (x>>56)%4 != 0,
		NumWant:  50,
	}
}
