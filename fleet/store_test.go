package fleet_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/fleet"
	"trackd/internal/cputime"
	"trackd/store"
	"trackd/store/memory"
	"trackd/store/storetest"
)

// The in-memory store is what a fleet.Store wraps.
var _ fleet.Local = (*memory.Store)(nil)

// TestAbilities checks that wrapping the in-memory store keeps every
// ability the server asks a store.Store for: losing one would silently
// downgrade the server (no event loops without InProcess, no state file
// without Snapshotter, no max_memory without MemoryBounded …).
func TestAbilities(t *testing.T) {
	var st store.Store = fleet.NewStore(memory.New(store.Options{PeerLifetime: lifetime}), fleet.StoreConfig{})
	defer st.Close()
	var inner store.Store = memory.New(store.Options{PeerLifetime: lifetime})
	defer inner.Close()
	abilities := []struct {
		name string
		has  func(store.Store) bool
	}{
		{"InProcess", func(s store.Store) bool { _, ok := s.(store.InProcess); return ok }},
		{"Prober", func(s store.Store) bool { _, ok := s.(store.Prober); return ok }},
		{"ExpiryCounter", func(s store.Store) bool { _, ok := s.(store.ExpiryCounter); return ok }},
		{"MemoryBounded", func(s store.Store) bool { _, ok := s.(store.MemoryBounded); return ok }},
		{"Snapshotter", func(s store.Store) bool { _, ok := s.(store.Snapshotter); return ok }},
		{"Settler", func(s store.Store) bool { _, ok := s.(store.Settler); return ok }},
	}
	for _, a := range abilities {
		if got, want := a.has(st), a.has(inner); got != want {
			t.Errorf("%s: the wrapped store has it %v, the in-memory store %v", a.name, got, want)
		}
	}
	if err := st.(store.Prober).Probe(ctx); err != nil {
		t.Errorf("Probe: %v", err)
	}
	mb := st.(store.MemoryBounded)
	mb.SetMemoryLimit(1 << 30)
	if got := mb.MemoryUsage().Limit; got != 1<<30 {
		t.Errorf("the limit set through the wrapper is %d, want 1 GiB", got)
	}
}

// TestConformance runs the store conformance suite on the wrapper: it
// must keep every semantics of the store it wraps.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, opts store.Options) store.Store {
		return fleet.NewStore(memory.New(opts), fleet.StoreConfig{Streams: 3, PeerIDs: opts.PeerIDs})
	})
}

// TestAnnounceAllocs checks that recording a change allocates nothing
// once the Store's buffers exist, whether the changes are published or
// pile up and are dropped.
func TestAnnounceAllocs(t *testing.T) {
	for _, tt := range []struct {
		name    string
		publish bool
	}{{"published", true}, {"dropped", false}} {
		t.Run(tt.name, func(t *testing.T) {
			st := fleet.NewStore(memory.New(store.Options{PeerLifetime: lifetime}),
				fleet.StoreConfig{MaxBatchBytes: 4 << 10, MaxPending: 16 << 10})
			defer st.Close()
			if tt.publish {
				stop := runNull(t, st)
				defer stop()
			}
			anns := make([]store.Announce, 1000)
			for i := range anns {
				anns[i] = storetest.BenchAnnounce(i)
			}
			buf := make([]bittorrent.Peer, 0, 50)
			i := 0
			run := func() {
				buf, _, _ = st.Announce(ctx, anns[i%len(anns)], buf[:0])
				i++
			}
			for range 10000 { // every peer joined, the buffers made
				run()
			}
			if a := testing.AllocsPerRun(5000, run); a != 0 {
				t.Errorf("%v allocs per announce, want 0", a)
			}
		})
	}
}

// nullBus is a Bus that takes every batch and never has one to read: the
// Node's publishing without a network, for benchmarks.
type nullBus struct {
	fleet.Bus // not called
	batches   atomic.Int64
}

func (*nullBus) NumStreams() int { return 1 }
func (b *nullBus) Publish(context.Context, int, []byte) error {
	b.batches.Add(1)
	return nil
}
func (*nullBus) Tail(context.Context, int) (string, error) { return "", nil }

// Listen hears nothing (no instance joins).
func (*nullBus) Listen(ctx context.Context, _ fleet.Instance, _ func([]byte)) error {
	<-ctx.Done()
	return ctx.Err()
}
func (*nullBus) Read(ctx context.Context, _ int, _ string, _ int, block time.Duration) ([]fleet.Entry, error) {
	t := time.NewTimer(block)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, nil
	}
}

// runNull runs a Node that publishes st's batches to a nullBus, until the
// function it returns is called.
func runNull(tb testing.TB, st *fleet.Store) (stop func()) {
	node, err := fleet.NewNode(st, &nullBus{}, fleet.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { node.Run(ctx) })
	return func() { cancel(); wg.Wait() }
}

var (
	benchOnce sync.Once
	benchMem  *memory.Store
	benchAnns []store.Announce
)

// benchStore returns an in-memory store of storetest.BenchPeers peers, shared by
// the benchmarks, and those peers' announces in a random order.
func benchStore() (*memory.Store, []store.Announce) {
	benchOnce.Do(func() {
		benchMem = memory.New(store.Options{PeerLifetime: time.Hour})
		for i := range storetest.BenchPeers {
			a := storetest.BenchAnnounce(i)
			a.NumWant = 0
			if _, _, err := benchMem.Announce(ctx, a, nil); err != nil {
				panic(err)
			}
		}
		benchAnns = make([]store.Announce, storetest.BenchPeers)
		for i, j := range rand.New(rand.NewPCG(1, 1)).Perm(storetest.BenchPeers) {
			benchAnns[i] = storetest.BenchAnnounce(j)
		}
	})
	return benchMem, benchAnns
}

// benchTargets are the stores the announce benchmarks compare: the
// in-memory store alone, and wrapped in a fleet.Store whose Node
// publishes to a Bus that takes every batch at once (nullBus): what sync
// adds to an announce on its instance, without the network.
func benchTargets(b *testing.B, fn func(b *testing.B, s store.Store)) {
	mem, _ := benchStore()
	b.Run("memory", func(b *testing.B) { fn(b, mem) })
	b.Run("fleet", func(b *testing.B) {
		// Not closed: it would close the shared store.
		st := fleet.NewStore(mem, fleet.StoreConfig{})
		stop := runNull(b, st)
		defer stop()
		fn(b, st)
	})
}

// BenchmarkAnnounce is store/memory's BenchmarkAnnounce (re-announces of
// known peers of a store of 1,000,000 peers over 100,000 torrents,
// NumWant 50), on the store alone and wrapped.
func BenchmarkAnnounce(b *testing.B) {
	benchTargets(b, func(b *testing.B, s store.Store) {
		_, anns := benchStore()
		buf := make([]bittorrent.Peer, 0, 50)
		i := 0
		b.ReportAllocs()
		defer cputime.PerOp(b)()
		for b.Loop() {
			buf, _, _ = s.Announce(ctx, anns[i], buf[:0])
			if i++; i == len(anns) {
				i = 0
			}
		}
	})
}

// BenchmarkAnnounceParallel is BenchmarkAnnounce from GOMAXPROCS
// goroutines at once: what the lock of the Store's batch costs when
// cores contend for it.
func BenchmarkAnnounceParallel(b *testing.B) {
	benchTargets(b, func(b *testing.B, s store.Store) {
		_, anns := benchStore()
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
	})
}
