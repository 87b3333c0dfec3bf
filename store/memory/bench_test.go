package memory

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/store"
)

const (
	benchTorrents = 100_000
	benchPeers    = 1_000_000
)

func benchHash(i int) bittorrent.InfoHash {
	var h bittorrent.InfoHash
	binary.LittleEndian.PutUint64(h[:], uint64(i)*0x9E3779B97F4A7C15)
	binary.LittleEndian.PutUint64(h[8:], uint64(i))
	return h
}

// benchAnnounce returns the announce of peer i of a realistic swarm mix:
// IPv4, 75% seeders, peers spread at random over benchTorrents torrents
// (about ten a torrent, Poisson).
func benchAnnounce(i int) store.Announce {
	r := rand.NewPCG(uint64(i), 0x5eed)
	x := r.Uint64()
	var id bittorrent.PeerID
	copy(id[:], "-TR3000-")
	binary.LittleEndian.PutUint64(id[8:], x)
	ip := [4]byte{byte(x >> 24), byte(x >> 32), byte(x >> 40), byte(i)}
	return store.Announce{
		InfoHash: benchHash(int(x % benchTorrents)),
		Peer:     bittorrent.Peer{ID: id, Addr: netip.AddrPortFrom(netip.AddrFrom4(ip), uint16(1024+i%50000))},
		Seeder:   (x>>56)%4 != 0,
		NumWant:  50,
	}
}

func fill(s *Store, n int) {
	ctx := context.Background()
	for i := range n {
		a := benchAnnounce(i)
		a.NumWant = 0
		if _, _, err := s.Announce(ctx, a, nil); err != nil {
			panic(err)
		}
	}
}

var (
	filledOnce sync.Once
	filled     *Store
	filledAnns []store.Announce
)

// filledStore returns a store of benchPeers peers over benchTorrents
// torrents, shared by the benchmarks that only re-announce or scrape, and
// those peers' announces in a random order.
func filledStore() (*Store, []store.Announce) {
	filledOnce.Do(func() {
		filled = New(store.Options{PeerLifetime: time.Hour})
		fill(filled, benchPeers)
		filledAnns = make([]store.Announce, benchPeers)
		for i, j := range rand.New(rand.NewPCG(1, 1)).Perm(benchPeers) {
			filledAnns[i] = benchAnnounce(j)
		}
	})
	return filled, filledAnns
}

// BenchmarkAnnounce re-announces known peers (no event, same role) of a
// store of 1,000,000 peers over 100,000 torrents, NumWant 50.
func BenchmarkAnnounce(b *testing.B) {
	s, anns := filledStore()
	ctx := context.Background()
	buf := make([]bittorrent.Peer, 0, 50)
	returned := 0
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		buf, _, _ = s.Announce(ctx, anns[i], buf[:0])
		returned += len(buf)
		if i++; i == len(anns) {
			i = 0
		}
	}
	b.ReportMetric(float64(returned)/float64(b.N), "peers/op")
}

// BenchmarkAnnounceParallel is BenchmarkAnnounce from GOMAXPROCS
// goroutines at once.
func BenchmarkAnnounceParallel(b *testing.B) {
	s, anns := filledStore()
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]bittorrent.Peer, 0, 50)
		i := int(next.Add(1)*7919) % len(anns)
		for pb.Next() {
			buf, _, _ = s.Announce(ctx, anns[i], buf[:0])
			if i++; i == len(anns) {
				i = 0
			}
		}
	})
}

// BenchmarkAnnounceBigSwarm re-announces the peers of one swarm of 100,000
// (75% seeders), NumWant 50: the cost of sampling from a big swarm.
func BenchmarkAnnounceBigSwarm(b *testing.B) {
	const n = 100_000
	s := New(store.Options{PeerLifetime: time.Hour})
	defer s.Close()
	ctx := context.Background()
	anns := make([]store.Announce, n)
	for i := range anns {
		anns[i] = benchAnnounce(i)
		anns[i].InfoHash = benchHash(-1)
		s.Announce(ctx, anns[i], nil)
	}
	buf := make([]bittorrent.Peer, 0, 50)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		buf, _, _ = s.Announce(ctx, anns[i], buf[:0])
		if i++; i == n {
			i = 0
		}
	}
}

// BenchmarkAnnounceNew has new peers join 100,000 torrents (75% seeders),
// NumWant 50; the store grows by b.N peers.
func BenchmarkAnnounceNew(b *testing.B) {
	s := New(store.Options{PeerLifetime: time.Hour})
	defer s.Close()
	ctx := context.Background()
	buf := make([]bittorrent.Peer, 0, 50)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		a := benchAnnounce(i)
		buf, _, _ = s.Announce(ctx, a, buf[:0])
		i++
	}
}

// BenchmarkScrape scrapes one known torrent at a time.
func BenchmarkScrape(b *testing.B) {
	s, anns := filledStore()
	ctx := context.Background()
	hashes := make([]bittorrent.InfoHash, 1)
	stats := make([]store.Stats, 0, 1)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		hashes[0] = anns[i].InfoHash
		stats, _ = s.Scrape(ctx, hashes, stats[:0])
		if i++; i == len(anns) {
			i = 0
		}
	}
}

// BenchmarkMemoryPerPeer fills a new store with 1,000,000 IPv4 peers over
// 100,000 torrents (75% seeders) and reports the heap it takes per peer:
// bytes/peer from HeapAlloc (live objects), heapinuse-bytes/peer from
// HeapInuse (spans in use, including the free slots of partly used spans).
// Run it with -benchtime=1x.
func BenchmarkMemoryPerPeer(b *testing.B) {
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := New(store.Options{PeerLifetime: time.Hour})
		fill(s, benchPeers)
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&after)
		tot, _ := s.Totals(context.Background())
		if tot.Peers() != benchPeers {
			b.Fatalf("store holds %d peers, want %d (address collision?)", tot.Peers(), benchPeers)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/benchPeers, "bytes/peer")
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/benchPeers, "heapinuse-bytes/peer")
		b.ReportMetric(float64(tot.Torrents), "torrents")
		runtime.KeepAlive(s)
		s.Close()
	}
}

// BenchmarkChurnBigSwarm has peers join and leave one swarm of 100,000
// (75% seeders), NumWant 0: what a layout that keeps peers sorted pays a
// memmove of the array for.
func BenchmarkChurnBigSwarm(b *testing.B) {
	const n = 100_000
	s := New(store.Options{PeerLifetime: time.Hour})
	defer s.Close()
	ctx := context.Background()
	for i := range n {
		a := benchAnnounce(i)
		a.InfoHash, a.NumWant = benchHash(-1), 0
		s.Announce(ctx, a, nil)
	}
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		// Peer n+i/2, not in the swarm, joins (even i), then stops.
		a := benchAnnounce(n + i/2)
		a.InfoHash, a.NumWant = benchHash(-1), 0
		if i%2 == 1 {
			a.Event = bittorrent.EventStopped
		}
		s.Announce(ctx, a, nil)
		i++
	}
}
