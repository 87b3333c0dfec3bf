package memory

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/internal/cputime"
	"trackd/store"
	"trackd/store/storetest"
)

func fill(s *Store, n int) {
	ctx := context.Background()
	for i := range n {
		a := storetest.BenchAnnounce(i)
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

// filledStore returns a store of storetest.BenchPeers peers over storetest.BenchTorrents
// torrents, shared by the benchmarks that only re-announce or scrape, and
// those peers' announces in a random order.
func filledStore() (*Store, []store.Announce) {
	filledOnce.Do(func() {
		filled = New(store.Options{PeerLifetime: time.Hour})
		fill(filled, storetest.BenchPeers)
		filledAnns = make([]store.Announce, storetest.BenchPeers)
		for i, j := range rand.New(rand.NewPCG(1, 1)).Perm(storetest.BenchPeers) {
			filledAnns[i] = storetest.BenchAnnounce(j)
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
	defer cputime.PerOp(b)()
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
	defer cputime.PerOp(b)()
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
		anns[i] = storetest.BenchAnnounce(i)
		anns[i].InfoHash = storetest.BenchHash(-1)
		s.Announce(ctx, anns[i], nil)
	}
	buf := make([]bittorrent.Peer, 0, 50)
	i := 0
	b.ReportAllocs()
	defer cputime.PerOp(b)()
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
	defer cputime.PerOp(b)()
	for b.Loop() {
		a := storetest.BenchAnnounce(i)
		buf, _, _ = s.Announce(ctx, a, buf[:0])
		i++
	}
}

// BenchmarkScrape scrapes one known torrent at a time.
func BenchmarkScrape(b *testing.B) {
	s, anns := filledStore()
	ctx := context.Background()
	hashes := make([]bittorrent.InfoHash, 1)
	stats := make([]bittorrent.Stats, 0, 1)
	i := 0
	b.ReportAllocs()
	defer cputime.PerOp(b)()
	for b.Loop() {
		hashes[0] = anns[i].InfoHash
		stats, _ = s.Scrape(ctx, hashes, stats[:0])
		if i++; i == len(anns) {
			i = 0
		}
	}
}

// BenchmarkMemoryPerPeer fills a new store and reports the memory it takes
// per peer, in three populations: 1,000,000 IPv4 peers (75% seeders) over
// 100,000 torrents at random (uniform: about ten a torrent, Poisson), and
// the two of bench/compare.sh, where torrent popularity is skewed as
// trackd-load makes it (a hot head and a long tail, see loadgen.Weight):
// 1,000,000 peers over 100,000 torrents and 2,000,000 over 1,000,000.
//
// It reports, per peer:
//   - bytes/peer: the live data: the Go heap's (HeapAlloc, after two GCs)
//     and the store's blocks in use;
//   - held-bytes/peer: what the store and the Go heap hold: HeapInuse (which
//     counts the free slots of spans in use) and the store's free blocks;
//   - rss-bytes/peer (Linux): the growth of the process's resident set
//     (VmRSS), what bench/compare.sh measures from outside.
//
// Each is the difference between the filled store and before it was made.
// Run it with -benchtime=1x.
func BenchmarkMemoryPerPeer(b *testing.B) {
	for _, pop := range []struct {
		name            string
		peers, torrents int
		skewed          bool
	}{
		{"uniform-1M-100k", storetest.BenchPeers, storetest.BenchTorrents, false},
		{"skewed-1M-100k", 1_000_000, 100_000, true},
		{"skewed-2M-1M", 2_000_000, 1_000_000, true},
	} {
		b.Run(pop.name, func(b *testing.B) {
			var anns []store.Announce
			if pop.skewed {
				anns = skewedAnnounces(pop.peers, pop.torrents)
			}
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.GC()
				runtime.ReadMemStats(&before)
				rss0 := vmRSS()
				s := New(store.Options{PeerLifetime: time.Hour})
				if pop.skewed {
					ctx := context.Background()
					for _, a := range anns {
						if _, _, err := s.Announce(ctx, a, nil); err != nil {
							b.Fatal(err)
						}
					}
				} else {
					fill(s, pop.peers)
				}
				runtime.GC()
				runtime.GC()
				runtime.ReadMemStats(&after)
				rss1 := vmRSS()
				inUse, held := s.memoryUsage()
				tot, _ := s.Totals(context.Background())
				if tot.Peers() != uint64(pop.peers) {
					b.Fatalf("store holds %d peers, want %d (address collision?)", tot.Peers(), pop.peers)
				}
				n := float64(pop.peers)
				b.ReportMetric((float64(after.HeapAlloc)-float64(before.HeapAlloc)+float64(inUse))/n, "bytes/peer")
				b.ReportMetric((float64(after.HeapInuse)-float64(before.HeapInuse)+float64(held))/n, "held-bytes/peer")
				if rss0 > 0 && rss1 > 0 {
					b.ReportMetric(float64(rss1-rss0)/n, "rss-bytes/peer")
				}
				b.ReportMetric(float64(tot.Torrents), "torrents")
				runtime.KeepAlive(s)
				s.Close()
			}
		})
	}
}

// skewedAnnounces returns the announces that fill a store with peers over
// torrents as trackd-load's fill does: torrent i gets peers in proportion
// to peers/torrents + exp(6.5 - 500*i/torrents) (loadgen.Weight), dealt by
// systematic sampling; each peer has its own IPv4 address and port, 75%
// are seeders, no peer ids are needed by the store.
func skewedAnnounces(peers, torrents int) []store.Announce {
	weight := func(i int) float64 {
		return float64(peers)/float64(torrents) + math.Exp(6.5-500*float64(i)/float64(torrents))
	}
	total := 0.0
	for i := range torrents {
		total += weight(i)
	}
	anns := make([]store.Announce, 0, peers)
	r := rand.New(rand.NewPCG(3, 4))
	t, cum := 0, weight(0)
	for j := range peers {
		for x := (float64(j) + 0.5) * total / float64(peers); cum < x && t < torrents-1; {
			t++
			cum += weight(t)
		}
		ip := [4]byte{10 + byte(j>>24), byte(j >> 16), byte(j >> 8), byte(j)}
		anns = append(anns, store.Announce{
			InfoHash: storetest.BenchHash(t),
			Peer:     bittorrent.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4(ip), uint16(1024+r.IntN(60000)))},
			Seeder:   r.IntN(4) != 0,
		})
	}
	r.Shuffle(len(anns), func(i, j int) { anns[i], anns[j] = anns[j], anns[i] })
	return anns
}

// vmRSS returns the resident set of the process in bytes, 0 where
// /proc/self/status cannot tell.
func vmRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
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
		a := storetest.BenchAnnounce(i)
		a.InfoHash, a.NumWant = storetest.BenchHash(-1), 0
		s.Announce(ctx, a, nil)
	}
	i := 0
	b.ReportAllocs()
	defer cputime.PerOp(b)()
	for b.Loop() {
		// Peer n+i/2, not in the swarm, joins (even i), then stops.
		a := storetest.BenchAnnounce(n + i/2)
		a.InfoHash, a.NumWant = storetest.BenchHash(-1), 0
		if i%2 == 1 {
			a.Event = bittorrent.EventStopped
		}
		s.Announce(ctx, a, nil)
		i++
	}
}

// sizedPeers is the number of peers of a store of BenchmarkAnnounceSwarmSize:
// 2^20, so that i*oddMul mod sizedPeers walks them all in a scattered order.
const sizedPeers = 1 << 20

var sizedStores = map[int]*Store{}

// sizedAnnounce returns the announce of peer j of a store of sizedPeers
// peers in swarms of n: swarm j/n, its own IPv4 address, 75% seeders.
func sizedAnnounce(j, n, numWant int) store.Announce {
	ip := [4]byte{10, byte(j >> 16), byte(j >> 8), byte(j)}
	return store.Announce{
		InfoHash: storetest.BenchHash(1_000_000 + j/n),
		Peer:     bittorrent.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4(ip), 6881)},
		Seeder:   j%4 != 0,
		NumWant:  numWant,
	}
}

// sizedStore returns a store of sizedPeers peers in swarms of n, made once
// per n.
func sizedStore(n int) *Store {
	if s := sizedStores[n]; s != nil {
		return s
	}
	s := New(store.Options{PeerLifetime: time.Hour})
	ctx := context.Background()
	for j := range sizedPeers {
		if _, _, err := s.Announce(ctx, sizedAnnounce(j, n, 0), nil); err != nil {
			panic(err)
		}
	}
	sizedStores[n] = s
	return s
}

// BenchmarkAnnounceSwarmSize re-announces known peers (same role) of a
// store of 2^20 peers in swarms of 100 to 100,000 (75% seeders), in a
// scattered order, with NumWant 30, 50 and 200: what picking peers costs
// as swarms grow, with the store as a whole too big for the caches.
func BenchmarkAnnounceSwarmSize(b *testing.B) {
	for _, n := range []int{100, 1000, 10_000, 100_000} {
		for _, want := range []int{30, 50, 200} {
			b.Run(fmt.Sprintf("peers=%d/numwant=%d", n, want), func(b *testing.B) {
				announceSized(b, sizedStore(n), n, want)
			})
		}
	}
}

// BenchmarkAnnounceCompact is BenchmarkAnnounceSwarmSize through
// AnnounceCompact (store.CompactAnnouncer): the peers written in compact
// form, as the UDP and compact HTTP answers send them. "peers" runs the
// same announces through Announce side by side.
func BenchmarkAnnounceCompact(b *testing.B) {
	for _, n := range []int{1000, 100_000} {
		for _, want := range []int{50, 200} {
			s := sizedStore(n)
			b.Run(fmt.Sprintf("peers=%d/numwant=%d/compact", n, want), func(b *testing.B) {
				announceCompact(b, s, n, want)
			})
			b.Run(fmt.Sprintf("peers=%d/numwant=%d/peers", n, want), func(b *testing.B) {
				announceSized(b, s, n, want)
			})
		}
	}
}

//go:noinline
func announceCompact(b *testing.B, s *Store, n, want int) {
	ctx := context.Background()
	v4, v6 := make([]byte, 0, 6*want), []byte(nil)
	returned, i := 0, 0
	b.ReportAllocs()
	defer cputime.PerOp(b)()
	for b.Loop() {
		j := int(uint32(i)*0x9E3779B1) & (sizedPeers - 1)
		v4, v6, _, _ = s.AnnounceCompact(ctx, sizedAnnounce(j, n, want), v4[:0], v6[:0])
		returned += len(v4)/6 + len(v6)/18
		i++
	}
	b.ReportMetric(float64(returned)/float64(b.N), "peers/op")
}

// announceSized is the loop of BenchmarkAnnounceSwarmSize, in a function of
// its own so that a cache simulator can count it alone:
//
//	valgrind --tool=cachegrind --cache-sim=yes --toggle-collect='*announceSized*' \
//		./memory.test -test.run XXX -test.bench SwarmSize -test.benchtime 20000x
//
//go:noinline
func announceSized(b *testing.B, s *Store, n, want int) {
	ctx := context.Background()
	buf := make([]bittorrent.Peer, 0, want)
	returned, i := 0, 0
	b.ReportAllocs()
	defer cputime.PerOp(b)()
	for b.Loop() {
		j := int(uint32(i)*0x9E3779B1) & (sizedPeers - 1)
		buf, _, _ = s.Announce(ctx, sizedAnnounce(j, n, want), buf[:0])
		returned += len(buf)
		i++
	}
	b.ReportMetric(float64(returned)/float64(b.N), "peers/op")
}
