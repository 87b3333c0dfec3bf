package redis

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"trackd/bittorrent"
	"trackd/internal/redistest"
	"trackd/store"
	"trackd/store/storetest"
)

// fillAnnounces applies anns with NumWant 0, 1000 to a pipeline.
func fillAnnounces(b testing.TB, s *Store, anns []store.Announce) {
	b.Helper()
	ctx := context.Background()
	for lo := 0; lo < len(anns); lo += 1000 {
		pipe := s.rdb.Pipeline()
		for _, a := range anns[lo:min(lo+1000, len(anns))] {
			a.NumWant = 0
			keys, arg := s.announceArgs(&a)
			s.sc.announce.EvalSha(ctx, pipe, keys, arg)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatalf("fill: %v", err)
		}
	}
}

// benchStore starts a redis-server and opens a store on it filled with the
// benchmark population; it returns the store, a client of the server and
// the peers' announces in a random order.
func benchStore(b *testing.B, ids bool) (*Store, *goredis.Client, []store.Announce) {
	srv := redistest.Start(b)
	s := open(b, srv.URL(), store.Options{PeerLifetime: time.Hour, PeerIDs: ids}, Options{})
	anns := make([]store.Announce, storetest.BenchPeers)
	for i := range anns {
		anns[i] = storetest.BenchAnnounce(i)
	}
	start := time.Now()
	fillAnnounces(b, s, anns)
	b.Logf("filled %d peers in %v", len(anns), time.Since(start).Round(time.Millisecond))
	rand.New(rand.NewPCG(1, 1)).Shuffle(len(anns), func(i, j int) { anns[i], anns[j] = anns[j], anns[i] })
	return s, srv.Client(), anns
}

// startCommands returns what reportCommands needs: the servers' command
// stats and CPU time now.
func startCommands(b *testing.B, rdb *goredis.Client) map[string]int64 {
	m := commandStats(b, rdb)
	m["cpu"] = int64(redisCPU(b, rdb))
	return m
}

// reportCommands reports the Redis commands run per op since before:
// scripts/op (EVALSHA and EVAL: round trips for an announce), commands/op
// (every command, those the scripts run included), and redis-µs/op, the
// time the server spent on them (wall clock: on a loaded machine, with its
// waits for a CPU) in the scripts if scripts, else in every command; and
// redis-cpu-µs/op, the CPU time of the server's main thread (all it did,
// network included). The background rounds' few commands a second are
// counted too.
func reportCommands(b *testing.B, rdb *goredis.Client, before map[string]int64, scripts bool) {
	after := commandStats(b, rdb)
	b.ReportMetric((redisCPU(b, rdb)-float64(before["cpu"]))/float64(b.N), "redis-cpu-µs/op")
	var nScripts, all, usec int64
	for name, n := range after {
		d := n - before[name]
		switch {
		case name == "info" || name == "usec:info" || name == "cpu":
		case name == "evalsha" || name == "eval":
			nScripts += d
			all += d
		case name == "usec:evalsha" || name == "usec:eval":
			if scripts {
				usec += d
			}
		case strings.HasPrefix(name, "usec:"):
			if !scripts {
				usec += d
			}
		default:
			all += d
		}
	}
	b.ReportMetric(float64(nScripts)/float64(b.N), "scripts/op")
	b.ReportMetric(float64(all)/float64(b.N), "commands/op")
	b.ReportMetric(float64(usec)/float64(b.N), "redis-µs/op")
}

// BenchmarkRedis measures one store of 1,000,000 peers over 100,000
// torrents (without peer ids) on a local redis-server:
//
//   - Announce: re-announces of known peers (no event, same role),
//     NumWant 50, one at a time: the round trip;
//   - AnnounceParallel: the same from 32 goroutines: the throughput;
//   - Scrape1, Scrape74: scrapes of 1 and of 74 torrents (a full UDP
//     scrape);
//
// each with the Redis commands per op (INFO commandstats).
func BenchmarkRedis(b *testing.B) {
	s, rdb, anns := benchStore(b, false)
	ctx := context.Background()

	b.Run("Announce", func(b *testing.B) {
		buf := make([]bittorrent.Peer, 0, 50)
		returned, i := 0, 0
		before := startCommands(b, rdb)
		b.ReportAllocs()
		for b.Loop() {
			var err error
			buf, _, err = s.Announce(ctx, anns[i%len(anns)], buf[:0])
			if err != nil {
				b.Fatal(err)
			}
			returned += len(buf)
			i++
		}
		b.StopTimer()
		reportCommands(b, rdb, before, true)
		b.ReportMetric(float64(returned)/float64(b.N), "peers/op")
	})

	b.Run("AnnounceParallel", func(b *testing.B) {
		var next atomic.Int64
		before := startCommands(b, rdb)
		b.ReportAllocs()
		b.SetParallelism(16) // 32 goroutines on 2 CPUs: enough to keep Redis busy
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			buf := make([]bittorrent.Peer, 0, 50)
			for pb.Next() {
				i := int(next.Add(1))
				var err error
				buf, _, err = s.Announce(ctx, anns[i%len(anns)], buf[:0])
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		reportCommands(b, rdb, before, true)
	})

	for _, n := range []int{1, 74} {
		b.Run("Scrape"+[]string{1: "1", 74: "74"}[n], func(b *testing.B) {
			hashes := make([]bittorrent.InfoHash, n)
			stats := make([]bittorrent.Stats, 0, n)
			i := 0
			before := startCommands(b, rdb)
			b.ReportAllocs()
			for b.Loop() {
				for j := range hashes {
					hashes[j] = anns[i%len(anns)].InfoHash
					i++
				}
				var err error
				if stats, err = s.Scrape(ctx, hashes, stats[:0]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			reportCommands(b, rdb, before, false)
		})
	}
}

// BenchmarkAnnounceBigSwarm re-announces the peers of one swarm of 100,000
// (75% seeders), NumWant 50: the work of an announce must not grow with
// the swarm.
func BenchmarkAnnounceBigSwarm(b *testing.B) {
	const n = 100_000
	srv := redistest.Start(b)
	s := open(b, srv.URL(), store.Options{PeerLifetime: time.Hour}, Options{})
	rdb := srv.Client()
	anns := make([]store.Announce, n)
	for i := range anns {
		anns[i] = storetest.BenchAnnounce(i)
		anns[i].InfoHash = storetest.BenchHash(-1)
	}
	fillAnnounces(b, s, anns)
	ctx := context.Background()
	buf := make([]bittorrent.Peer, 0, 50)
	i := 0
	before := startCommands(b, rdb)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, _, err = s.Announce(ctx, anns[i%n], buf[:0]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.StopTimer()
	reportCommands(b, rdb, before, true)
}

// BenchmarkMemoryPerPeer fills a new redis-server with the benchmark
// population, without and with peer ids, and reports Redis's memory per
// peer: the growth of INFO memory's used_memory (all keys, bucket keys
// included) over the peers. Run it with -benchtime=1x.
func BenchmarkMemoryPerPeer(b *testing.B) {
	for _, ids := range []bool{false, true} {
		name := "NoPeerIDs"
		if ids {
			name = "PeerIDs"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				srv := redistest.Start(b)
				rdb := srv.Client()
				s := open(b, srv.URL(), store.Options{PeerLifetime: time.Hour, PeerIDs: ids}, Options{Interval: time.Hour})
				anns := make([]store.Announce, storetest.BenchPeers)
				for i := range anns {
					anns[i] = storetest.BenchAnnounce(i)
				}
				before := usedMemory(b, rdb)
				fillAnnounces(b, s, anns)
				after := usedMemory(b, rdb)
				tot, err := s.Scrape(context.Background(), []bittorrent.InfoHash{storetest.BenchHash(0)}, nil)
				if err != nil {
					b.Fatal(err)
				}
				_ = tot
				b.ReportMetric(float64(after-before)/storetest.BenchPeers, "redis-bytes/peer")
				s.Close()
				srv.Stop()
			}
		})
	}
}
