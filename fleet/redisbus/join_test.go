package redisbus

import (
	"context"
	"flag"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/fleet"
	"trackd/internal/redistest"
	"trackd/store"
	"trackd/store/memory"
)

var joinTorrents = flag.Int("join.torrents", 100_000, "BenchmarkJoin: torrents of the donor, 10 peers each")

// BenchmarkJoin measures joining a fleet over a loopback redis-server:
// a donor holds -join.torrents torrents of 10 peers each (100,000: a
// million peers), announced to it directly; each iteration is a new
// instance that joins (fleet.Node.Join) and has every swarm. It reports
// the time from the request to the last swarm restored (join-ms, the
// median of the iterations; join-max-ms), the donor's pause (its readers
// held while it dumps: pause-ms), the snapshot's size (MB), and what the
// donor's request path saw meanwhile: announces made on it, without a
// pause, from one goroutine (donor-announces, the slowest donor-max-us;
// idle-max-us is the slowest of 2 s of the same announces before any
// join, the machine's own noise; donor-p99-us and idle-p99-us their 99th
// percentiles).
// Run it with -benchtime=Nx: each iteration is a join.
func BenchmarkJoin(b *testing.B) {
	s := redistest.Start(b)
	ctx := context.Background()
	bus := open(b, s.URL(), Options{})
	opts := store.Options{PeerLifetime: time.Hour}
	donor := fleet.NewStore(memory.New(opts), fleet.StoreConfig{Streams: bus.NumStreams()})
	defer donor.Close()
	peers := 0
	for t := range *joinTorrents {
		h := bittorrent.InfoHash{byte(t >> 24), byte(t >> 16), byte(t >> 8), byte(t), 'j'}
		for p := range 10 {
			a := store.Announce{InfoHash: h, Seeder: p < 3,
				Peer: bittorrent.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(t >> 16), byte(t >> 8), byte(t)}), uint16(1000+p))}}
			if _, _, err := donor.Inner().Announce(ctx, a, nil); err != nil {
				b.Fatal(err)
			}
			peers++
		}
	}
	node, err := fleet.NewNode(donor, bus, fleet.Config{})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var ran sync.WaitGroup
	ran.Go(func() { node.Run(runCtx) })
	defer func() { stop(); ran.Wait() }()
	<-node.Ready()
	time.Sleep(200 * time.Millisecond) // its listener subscribed
	runtime.GC()

	// The donor's frontends: one goroutine announcing, all along.
	var announces atomic.Int64
	var slowest atomic.Int64
	// lat holds the latencies of the announces (bounded: the first
	// million of each phase), for their 99th percentile.
	var latMu sync.Mutex
	lat := make([]time.Duration, 0, 1<<20)
	loadCtx, stopLoad := context.WithCancel(ctx)
	var load sync.WaitGroup
	load.Go(func() {
		for k := 0; loadCtx.Err() == nil; k++ {
			h := bittorrent.InfoHash{byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k), 'l'}
			t0 := time.Now()
			donor.Announce(ctx, store.Announce{InfoHash: h, Peer: bittorrent.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 200, byte(k >> 8), byte(k)}), 1)}, NumWant: 50}, nil)
			d := time.Since(t0)
			if int64(d) > slowest.Load() {
				slowest.Store(int64(d))
			}
			latMu.Lock()
			if len(lat) < cap(lat) {
				lat = append(lat, d)
			}
			latMu.Unlock()
			announces.Add(1)
			if k%64 == 0 {
				time.Sleep(100 * time.Microsecond) // a frontend's pace, not a spin
			}
		}
	})

	// The slowest announce of 2 s without a join, on this machine now:
	// what the slowest during the joins compares with.
	time.Sleep(2 * time.Second)
	idleSlowest := slowest.Swap(0)
	p99 := func() time.Duration {
		latMu.Lock()
		defer latMu.Unlock()
		slices.Sort(lat)
		p := lat[len(lat)*99/100]
		lat = lat[:0]
		return p
	}
	idleP99 := p99()

	var took, pauses []time.Duration
	var bytes int
	b.ResetTimer()
	for range b.N {
		j := fleet.NewStore(memory.New(opts), fleet.StoreConfig{Streams: bus.NumStreams()})
		jn, err := fleet.NewNode(j, bus, fleet.Config{})
		if err != nil {
			b.Fatal(err)
		}
		before := node.Stats().Donations
		info, err := jn.Join(ctx, fleet.JoinConfig{Wait: 10 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if info.Peers < uint64(peers) {
			b.Fatalf("joined %d peers, the donor has %d", info.Peers, peers)
		}
		tot, _ := j.Totals(ctx)
		if tot.Peers() < uint64(peers) {
			b.Fatalf("the joiner holds %d peers, the donor %d", tot.Peers(), peers)
		}
		for node.Stats().Donations == before { // the donor's log and stats come after its last chunk
			time.Sleep(time.Millisecond)
		}
		took = append(took, info.Took)
		pauses = append(pauses, node.Stats().LastPause)
		bytes = info.Bytes
		j.Close()
		runtime.GC()
		b.StartTimer()
	}
	b.StopTimer()
	stopLoad()
	load.Wait()
	slices.Sort(took)
	slices.Sort(pauses)
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	b.ReportMetric(ms(took[len(took)/2]), "join-ms")
	b.ReportMetric(ms(took[len(took)-1]), "join-max-ms")
	b.ReportMetric(ms(pauses[len(pauses)/2]), "pause-ms")
	b.ReportMetric(float64(bytes)/1e6, "MB")
	b.ReportMetric(float64(peers), "peers")
	b.ReportMetric(float64(announces.Load()), "donor-announces")
	b.ReportMetric(float64(slowest.Load())/1e3, "donor-max-us")
	b.ReportMetric(float64(idleSlowest)/1e3, "idle-max-us")
	b.ReportMetric(float64(p99())/1e3, "donor-p99-us")
	b.ReportMetric(float64(idleP99)/1e3, "idle-p99-us")
	b.ReportMetric(0, "ns/op")
}
