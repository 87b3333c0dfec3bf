package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/fleet"
	"trackd/fleet/fleettest"
	"trackd/snapshot"
	"trackd/store"
	"trackd/store/memory"
)

const lifetime = time.Minute

// clock is a fake clock a test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// instance is one trackd of a test's fleet: a memory store wrapped in a
// fleet.Store, and its Node running on the test's Bus.
type instance struct {
	name  string
	st    *fleet.Store
	node  *fleet.Node
	clock *clock
	stop  context.CancelFunc
	done  chan struct{}
	// joined and joinErr are what Join returned, with setup.join.
	joined  fleet.JoinInfo
	joinErr error
}

type setup struct {
	storeCfg fleet.StoreConfig
	nodeCfg  fleet.Config
	opts     store.Options
	// join, if set, makes the instance Join before it runs.
	join *fleet.JoinConfig
}

// start starts an instance on bus and waits until it reads every stream.
func start(t *testing.T, bus fleet.Bus, name string, su setup) *instance {
	t.Helper()
	clk := newClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	opts := su.opts
	opts.PeerLifetime = lifetime
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	cfg := su.storeCfg
	cfg.Streams = bus.NumStreams()
	cfg.PeerIDs = opts.PeerIDs
	st := fleet.NewStore(memory.New(opts), cfg)
	ncfg := su.nodeCfg
	if ncfg.FlushInterval == 0 {
		ncfg.FlushInterval = 5 * time.Millisecond
	}
	if ncfg.MaxBackoff == 0 {
		ncfg.MaxBackoff = 20 * time.Millisecond
	}
	if ncfg.ReadBlock == 0 {
		ncfg.ReadBlock = 100 * time.Millisecond
	}
	node, err := fleet.NewNode(st, bus, ncfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{name: name, st: st, node: node, clock: clk, stop: cancel, done: make(chan struct{})}
	if su.join != nil {
		in.joined, in.joinErr = node.Join(ctx, *su.join)
	}
	go func() {
		defer close(in.done)
		if err := node.Run(ctx); err != nil {
			t.Errorf("%s: Run: %v", name, err)
		}
	}()
	t.Cleanup(func() {
		in.halt(t)
		st.Close()
	})
	select {
	case <-node.Ready():
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: not ready after 5s", name)
	}
	return in
}

// halt stops the instance's Node and waits for Run to return.
func (in *instance) halt(t *testing.T) {
	in.stop()
	select {
	case <-in.done:
	case <-time.After(5 * time.Second):
		t.Errorf("%s: Run did not return 5s after its context ended", in.name)
	}
}

func startFleet(t *testing.T, bus fleet.Bus, n int, su setup) []*instance {
	var fl []*instance
	for i := range n {
		fl = append(fl, start(t, bus, string(rune('A'+i)), su))
	}
	return fl
}

var ctx = context.Background()

func announce(t *testing.T, in *instance, a store.Announce) {
	t.Helper()
	if _, _, err := in.st.Announce(ctx, a, nil); err != nil {
		t.Fatalf("%s: announce: %v", in.name, err)
	}
}

// swarm returns the swarm of h in the instance's store, as a snapshot
// would keep it (zero if it has none).
func (in *instance) swarm(h bittorrent.InfoHash) snapshot.Swarm {
	var out snapshot.Swarm
	in.st.Dump(func(s *snapshot.Swarm) error {
		if s.InfoHash == h {
			out = *s
			out.Peers = append([]snapshot.Peer(nil), s.Peers...)
		}
		return nil
	})
	return out
}

// peer returns the peer at addr in the swarm of h, and whether there is
// one.
func (in *instance) peer(h bittorrent.InfoHash, addr netip.AddrPort) (snapshot.Peer, bool) {
	for _, p := range in.swarm(h).Peers {
		if p.Addr == addr {
			return p, true
		}
	}
	return snapshot.Peer{}, false
}

func (in *instance) stats(h bittorrent.InfoHash) bittorrent.Stats {
	st, err := in.st.Scrape(ctx, []bittorrent.InfoHash{h}, nil)
	if err != nil {
		panic(err)
	}
	return st[0]
}

// eventually waits up to 5 s for cond, and fails the test with what if it
// does not come.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 5s: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// settle waits until every instance has published what it recorded and
// applied what the others published: changes of one session announced to
// two instances at once are applied in no common order (as a client
// does not do), so a test that moves a session between instances waits
// for the first instance's changes to be everywhere first.
func settle(t *testing.T, fl []*instance) {
	t.Helper()
	eventually(t, "every instance has applied every change", func() bool {
		var published uint64
		stats := make([]fleet.Stats, len(fl))
		for i, in := range fl {
			stats[i] = in.node.Stats()
			published += stats[i].Published
		}
		for _, s := range stats {
			if s.PendingBytes != 0 || s.Applied+s.Refused != published-s.Published {
				return false
			}
		}
		return true
	})
}

func ih(s string) bittorrent.InfoHash {
	var h bittorrent.InfoHash
	copy(h[:], s)
	return h
}

func addr(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestFleetSharesSwarms(t *testing.T) {
	for _, tt := range []struct {
		instances, streams int
		ids                bool
	}{
		{2, 1, false},
		{3, 1, true},
		{3, 4, false},
	} {
		t.Run(fmt.Sprintf("%d instances %d streams ids %v", tt.instances, tt.streams, tt.ids), func(t *testing.T) {
			bus := fleettest.NewBus(tt.streams)
			fl := startFleet(t, bus, tt.instances, setup{opts: store.Options{PeerIDs: tt.ids}})
			a, others := fl[0], fl[1:]
			h := ih("shared")
			p := bittorrent.Peer{ID: bittorrent.PeerID{'-', 'T', 'R'}, Addr: addr("10.0.0.1:6881")}
			p6 := bittorrent.Peer{ID: bittorrent.PeerID{'-', 'q', 'B'}, Addr: addr("[2001:db8::7]:51413")}

			// A join on A is seen everywhere, with its id if the fleet
			// keeps ids.
			announce(t, a, store.Announce{InfoHash: h, Peer: p, Event: bittorrent.EventStarted})
			announce(t, fl[len(fl)-1], store.Announce{InfoHash: h, Peer: p6, Event: bittorrent.EventStarted, Seeder: true})
			for _, in := range fl {
				eventually(t, in.name+" has both peers", func() bool {
					st := in.stats(h)
					return st.Seeders == 1 && st.Leechers == 1
				})
				got, _ := in.peer(h, p.Addr)
				want := bittorrent.PeerID{}
				if tt.ids {
					want = p.ID
				}
				if got.ID != want || got.Seeder {
					t.Errorf("%s: peer %+v, want id %v, leecher", in.name, got, want)
				}
			}
			// The peer a local announce returns on B is the one
			// announced on A.
			b := others[0]
			peers, _, err := b.st.Announce(ctx, store.Announce{InfoHash: h, Peer: bittorrent.Peer{Addr: addr("10.0.0.99:1")}, NumWant: 10}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(peers) != 2 {
				t.Errorf("B returned %v, want the peers of A and %s", peers, fl[len(fl)-1].name)
			}

			// Completed, twice on A and once more on B for the same
			// session: one download everywhere. The leecher is now a
			// seeder everywhere.
			announce(t, a, store.Announce{InfoHash: h, Peer: p, Event: bittorrent.EventCompleted, Seeder: true})
			announce(t, a, store.Announce{InfoHash: h, Peer: p, Event: bittorrent.EventCompleted, Seeder: true})
			settle(t, fl)
			announce(t, b, store.Announce{InfoHash: h, Peer: p, Event: bittorrent.EventCompleted, Seeder: true})
			for _, in := range fl {
				eventually(t, in.name+" counts one download and A's peer a seeder", func() bool {
					st := in.stats(h)
					got, _ := in.peer(h, p.Addr)
					return st.Downloaded == 1 && st.Seeders == 2 && got.Seeder
				})
			}
			settle(t, fl)
			// Back to leeching (a new download of the same session).
			announce(t, b, store.Announce{InfoHash: h, Peer: p})
			for _, in := range fl {
				eventually(t, in.name+" has A's peer a leecher again", func() bool {
					got, ok := in.peer(h, p.Addr)
					return ok && !got.Seeder
				})
			}
			settle(t, fl)
			// Stopped on the last instance: gone everywhere.
			announce(t, fl[len(fl)-1], store.Announce{InfoHash: h, Peer: p, Event: bittorrent.EventStopped})
			for _, in := range fl {
				eventually(t, in.name+" has A's peer gone", func() bool {
					_, ok := in.peer(h, p.Addr)
					return !ok
				})
			}
			for _, in := range fl {
				if st := in.stats(h); st.Downloaded != 1 {
					t.Errorf("%s: %d downloads, want 1", in.name, st.Downloaded)
				}
				s := in.node.Stats()
				if s.Gaps != 0 || s.Garbage != 0 || s.Dropped != 0 || s.Refused != 0 || !s.Connected || s.LastContact.IsZero() {
					t.Errorf("%s: stats %+v", in.name, s)
				}
			}
		})
	}
}

// TestOwnChangesNotReplayed checks that an instance skips its own
// batches, and that each change is applied once by each other instance.
func TestOwnChangesNotReplayed(t *testing.T) {
	bus := fleettest.NewBus(1)
	fl := startFleet(t, bus, 2, setup{})
	for i := range 100 {
		announce(t, fl[0], store.Announce{InfoHash: ih("t"), Peer: bittorrent.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 1)}})
	}
	eventually(t, "B applies 100 changes", func() bool { return fl[1].node.Stats().Applied == 100 })
	eventually(t, "A publishes 100", func() bool { return fl[0].node.Stats().Published == 100 })
	if s := fl[0].node.Stats(); s.Applied != 0 {
		t.Errorf("A applied %d changes, want none (they are its own)", s.Applied)
	}
}

// lines is a slog handler that keeps the messages logged.
type lines struct {
	mu   sync.Mutex
	msgs []string
}

func (l *lines) Enabled(context.Context, slog.Level) bool { return true }
func (l *lines) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.msgs = append(l.msgs, r.Message)
	l.mu.Unlock()
	return nil
}
func (l *lines) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *lines) WithGroup(string) slog.Handler      { return l }

func (l *lines) count(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

func TestBusDown(t *testing.T) {
	bus := fleettest.NewBus(1)
	logA := new(lines)
	a := start(t, bus, "A", setup{nodeCfg: fleet.Config{Logger: slog.New(logA)}})
	b := start(t, bus, "B", setup{})
	h := ih("outage")
	announce(t, a, store.Announce{InfoHash: h, Peer: bittorrent.Peer{Addr: addr("10.0.0.1:1")}})
	eventually(t, "B has the first peer", func() bool { return b.stats(h).Leechers == 1 })

	bus.SetDown(true)
	for i := range 500 {
		// Every announce succeeds while the Bus is down.
		announce(t, a, store.Announce{InfoHash: h, Peer: bittorrent.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 1)}})
	}
	eventually(t, "A sees the Bus down", func() bool { return !a.node.Stats().Connected && a.node.Stats().BusErrors > 0 })
	time.Sleep(50 * time.Millisecond)
	if got := b.stats(h).Leechers; got != 1 {
		t.Errorf("B has %d leechers while the Bus is down, want 1", got)
	}
	if s := a.node.Stats(); s.PendingBatches == 0 || s.PendingBytes < 500*27 {
		t.Errorf("A's pending while down: %+v, want the 500 changes", s)
	}

	bus.SetDown(false)
	eventually(t, "B has A's 501 peers after the Bus returns", func() bool { return b.stats(h).Leechers == 501 })
	// A counts its batch published when the Bus's call returns, which may
	// be after B has applied it.
	eventually(t, "both see the Bus again, A with nothing pending", func() bool {
		return a.node.Stats().Connected && b.node.Stats().Connected && a.node.Stats().PendingBytes == 0
	})
	sa, sb := a.node.Stats(), b.node.Stats()
	if sa.Dropped != 0 || sb.Gaps != 0 || sa.PendingBytes != 0 {
		t.Errorf("A %+v\nB %+v: want nothing dropped, no gap, nothing pending", sa, sb)
	}
	// The outage is logged once, however many calls failed, and its end
	// once.
	if sa.BusErrors < 2 {
		t.Errorf("A: %d bus errors, want several (retries)", sa.BusErrors)
	}
	eventually(t, "A logs the end of the outage", func() bool { return logA.count("sync: the bus is reachable again") > 0 })
	if down, up := logA.count("sync: the bus is unreachable"), logA.count("sync: the bus is reachable again"); down != 1 || up != 1 {
		t.Errorf("A logged the outage %d times and its end %d times, want once each", down, up)
	}
}

// TestPendingBound checks that the changes waiting while the Bus is down
// are bounded: the oldest are dropped and counted, the newest arrive when
// it returns, and the receiver counts the gap.
func TestPendingBound(t *testing.T) {
	bus := fleettest.NewBus(1)
	su := setup{storeCfg: fleet.StoreConfig{MaxBatchBytes: 1 << 10, MaxPending: 4 << 10}}
	fl := startFleet(t, bus, 2, su)
	a, b := fl[0], fl[1]
	h := ih("bound")
	announce(t, a, store.Announce{InfoHash: h, Peer: bittorrent.Peer{Addr: addr("10.0.0.1:1")}})
	eventually(t, "B has the first peer", func() bool { return b.stats(h).Leechers == 1 })

	bus.SetDown(true)
	const n = 2000 // 54 KB of changes, 4 KB kept
	for i := range n {
		announce(t, a, store.Announce{InfoHash: h, Peer: bittorrent.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 1)}})
	}
	s := a.node.Stats()
	if s.PendingBytes > 4<<10 {
		t.Errorf("%d bytes pending, want at most the bound, 4096", s.PendingBytes)
	}
	if s.Dropped == 0 {
		t.Fatalf("nothing dropped: %+v", s)
	}
	bus.SetDown(false)
	last := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, (n - 1) >> 8, (n - 1) & 0xff}), 1)
	eventually(t, "B has the last peer announced", func() bool { _, ok := b.peer(h, last); return ok })
	eventually(t, "A has published all it kept", func() bool { return a.node.Stats().PendingBytes == 0 })
	sa, sb := a.node.Stats(), b.node.Stats()
	if sb.Gaps != 1 || sb.Lost != sa.Dropped {
		t.Errorf("B counted %d gaps, %d lost; want 1 gap of the %d A dropped", sb.Gaps, sb.Lost, sa.Dropped)
	}
	if got := b.stats(h).Leechers; uint64(got) != n+1-sa.Dropped {
		t.Errorf("B has %d leechers, want %d (%d announced, %d dropped)", got, n+1-sa.Dropped, n+1, sa.Dropped)
	}
	if sa.Published+sa.Dropped != n+1 {
		t.Errorf("A published %d and dropped %d of %d", sa.Published, sa.Dropped, n+1)
	}
}

// deadStream is a Bus whose stream 0 refuses every batch, as a Redis
// Cluster whose master of that stream is down.
type deadStream struct{ *fleettest.Bus }

func (d deadStream) Publish(ctx context.Context, i int, batch []byte) error {
	if i == 0 {
		return fleettest.ErrDown
	}
	return d.Bus.Publish(ctx, i, batch)
}

func (d deadStream) PublishMany(ctx context.Context, i int, batches [][]byte) (int, error) {
	if i == 0 {
		return 0, fleettest.ErrDown
	}
	return d.Bus.PublishMany(ctx, i, batches)
}

// TestOneStreamDown checks that the streams that work carry their
// changes while another fails.
func TestOneStreamDown(t *testing.T) {
	bus := fleettest.NewBus(2)
	a := start(t, deadStream{bus}, "A", setup{})
	b := start(t, bus, "B", setup{})
	// The stream of a torrent is its info hash's bytes 12 to 20 modulo
	// the number of streams.
	h0, h1 := ih("zero"), ih("one")
	h1[19] = 1
	for range 3 {
		announce(t, a, store.Announce{InfoHash: h0, Peer: bittorrent.Peer{Addr: addr("10.0.0.1:1")}})
		announce(t, a, store.Announce{InfoHash: h1, Peer: bittorrent.Peer{Addr: addr("10.0.0.1:1")}})
		time.Sleep(30 * time.Millisecond)
	}
	eventually(t, "B has the torrent of stream 1", func() bool { return b.stats(h1).Leechers == 1 })
	eventually(t, "A counts the failures of stream 0", func() bool { return a.node.Stats().BusErrors > 0 })
	if st := b.stats(h0); st.Leechers != 0 {
		t.Errorf("B has the torrent of the dead stream: %+v", st)
	}
	if s := a.node.Stats(); s.PendingBatches == 0 {
		t.Errorf("A holds nothing of the dead stream: %+v", s)
	}
}

// gatedBus holds the Reads of one instance's Node while closed.
type gatedBus struct {
	*fleettest.Bus
	mu   sync.Mutex
	gate chan struct{} // nil when open
}

func (g *gatedBus) close() {
	g.mu.Lock()
	g.gate = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedBus) open() {
	g.mu.Lock()
	close(g.gate)
	g.gate = nil
	g.mu.Unlock()
}

func (g *gatedBus) Read(ctx context.Context, i int, after string, max int, block time.Duration) ([]fleet.Entry, error) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.Bus.Read(ctx, i, after, max, block)
}

// TestLaggingReader checks that a reader that falls behind a stream's
// bound (MaxLen) misses batches, counts a gap and goes on.
func TestLaggingReader(t *testing.T) {
	bus := fleettest.NewBus(1)
	bus.MaxLen = 3
	a := start(t, bus, "A", setup{})
	gated := &gatedBus{Bus: bus}
	b := start(t, gated, "B", setup{})
	h := ih("lag")
	announce(t, a, store.Announce{InfoHash: h, Peer: bittorrent.Peer{Addr: addr("10.0.0.1:1")}})
	eventually(t, "B has the first peer", func() bool { return b.stats(h).Leechers == 1 })
	// Let B's reader return to Read, and block there.
	time.Sleep(150 * time.Millisecond)
	gated.close()
	time.Sleep(150 * time.Millisecond)
	for i := range 10 {
		batches := a.node.Stats().Batches
		announce(t, a, store.Announce{InfoHash: h, Peer: bittorrent.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}), 1)}})
		eventually(t, "A publishes a batch", func() bool { return a.node.Stats().Batches > batches })
	}
	gated.open()
	eventually(t, "B has the last peer", func() bool { _, ok := b.peer(h, addr("10.1.0.9:1")); return ok })
	s := b.node.Stats()
	if s.Gaps != 1 || s.Lost == 0 {
		t.Errorf("B: %+v, want 1 gap", s)
	}
	// Whatever B read before it was held, and the last 3 batches.
	if got := b.stats(h).Leechers; got < 4 || got > 11 {
		t.Errorf("B has %d leechers", got)
	}
	// B goes on reading.
	announce(t, a, store.Announce{InfoHash: h, Peer: bittorrent.Peer{Addr: addr("10.2.0.1:1")}})
	eventually(t, "B has a peer announced after the gap", func() bool { _, ok := b.peer(h, addr("10.2.0.1:1")); return ok })
}

// TestExpiryOnReceiversClock checks that a peer replayed on B expires a
// lifetime after B received it, by B's clock, whatever A's says.
func TestExpiryOnReceiversClock(t *testing.T) {
	bus := fleettest.NewBus(1)
	a := start(t, bus, "A", setup{})
	b := start(t, bus, "B", setup{})
	b.clock.Add(7 * time.Second) // B's clock is ahead
	a.clock.Add(-3 * time.Second)
	h := ih("expiry")
	p := addr("10.0.0.1:1")
	announce(t, a, store.Announce{InfoHash: h, Peer: bittorrent.Peer{Addr: p}})
	eventually(t, "B has the peer", func() bool { _, ok := b.peer(h, p); return ok })
	got, _ := b.peer(h, p)
	if want := b.clock.Now().Add(lifetime); got.Expires.Before(want) || got.Expires.After(want.Add(time.Second)) {
		t.Errorf("B expires the peer at %v, want a lifetime after B's now, %v", got.Expires, want)
	}
	b.clock.Add(lifetime - time.Second)
	if st := b.stats(h); st.Leechers != 1 {
		t.Errorf("B dropped the peer before its lifetime: %+v", st)
	}
	b.clock.Add(2 * time.Second)
	if st := b.stats(h); st.Leechers != 0 {
		t.Errorf("B keeps the peer past its lifetime: %+v", st)
	}
	if st := a.stats(h); st.Leechers != 1 {
		t.Errorf("A, whose clock did not move, lost the peer: %+v", st)
	}
}

// TestBadBatches checks that batches that do not decode are counted and
// skipped, and that the changes of a batch read twice, wholly or in part,
// are applied once.
func TestBadBatches(t *testing.T) {
	bus := fleettest.NewBus(1)
	b := start(t, bus, "B", setup{})
	other := fleet.Instance{9}
	batch := func(first uint64, addrs ...string) []byte {
		var cs []fleet.Change
		for _, a := range addrs {
			cs = append(cs, fleet.Change{InfoHash: ih("bad"), Peer: bittorrent.Peer{Addr: addr(a)}})
		}
		out, err := fleet.AppendBatch(nil, fleet.Header{Origin: other, First: first}, cs)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	batches := [][]byte{
		nil,
		[]byte("garbage"),
		append(batch(1, "10.0.0.1:1"), 0), // a byte more
		batch(1, "10.0.0.1:1")[:30],       // truncated
		batch(1, "10.0.0.1:1"),
		batch(1, "10.0.0.1:1"),               // read twice
		batch(2, "10.0.0.2:1"),               // next
		batch(2, "10.0.0.2:1", "10.0.0.3:1"), // half read already
	}
	for _, batch := range batches {
		if err := bus.Publish(ctx, 0, batch); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "B applies the good batches", func() bool { return b.stats(ih("bad")).Leechers == 3 })
	s := b.node.Stats()
	if s.Garbage != 4 || s.Duplicates != 1 || s.Applied != 3 || s.Gaps != 0 {
		t.Errorf("stats %+v, want 4 garbage, 1 duplicate, 3 applied", s)
	}
}

// TestRefusedReplay checks that a store at its memory bound refuses the
// replayed changes that would create torrents, as it refuses local
// announces, and that the Node counts them and goes on.
func TestRefusedReplay(t *testing.T) {
	bus := fleettest.NewBus(1)
	a := start(t, bus, "A", setup{})
	b := start(t, bus, "B", setup{})
	// B holds one torrent, and is at 97.5% of its bound: no new
	// torrents.
	announce(t, b, store.Announce{InfoHash: ih("local"), Peer: bittorrent.Peer{Addr: addr("10.0.0.3:1")}})
	used := b.st.MemoryUsage().Bytes
	b.st.SetMemoryLimit(used + used/40)
	for i := range 20 {
		announce(t, a, store.Announce{InfoHash: ih(fmt.Sprint("flood", i)), Peer: bittorrent.Peer{Addr: addr("10.0.0.1:1")}})
	}
	eventually(t, "B refuses the 20 new torrents", func() bool { return b.node.Stats().Refused == 20 })
	if tot, _ := b.st.Totals(ctx); tot.Torrents != 1 {
		t.Errorf("B holds %d torrents, want its own 1", tot.Torrents)
	}
	if _, _, err := b.st.Announce(ctx, store.Announce{InfoHash: ih("local2"), Peer: bittorrent.Peer{Addr: addr("10.0.0.2:1")}}, nil); !errors.Is(err, store.ErrNoNewTorrents) {
		t.Errorf("local announce on the full B: %v, want ErrNoNewTorrents", err)
	}
}

// TestFinalFlush checks that the changes recorded just before a Node stops
// are published as it stops.
func TestFinalFlush(t *testing.T) {
	bus := fleettest.NewBus(1)
	a := start(t, bus, "A", setup{nodeCfg: fleet.Config{FlushInterval: time.Hour}})
	b := start(t, bus, "B", setup{})
	announce(t, a, store.Announce{InfoHash: ih("last"), Peer: bittorrent.Peer{Addr: addr("10.0.0.1:1")}})
	a.halt(t)
	eventually(t, "B has the peer A announced before it stopped", func() bool { return b.stats(ih("last")).Leechers == 1 })
}

func TestNewNodeStreams(t *testing.T) {
	st := fleet.NewStore(memory.New(store.Options{PeerLifetime: lifetime}), fleet.StoreConfig{Streams: 2})
	defer st.Close()
	if _, err := fleet.NewNode(st, fleettest.NewBus(3), fleet.Config{}); err == nil {
		t.Error("NewNode took a Bus of 3 streams for a Store of 2")
	}
}

// TestRunEnds checks that Run returns once its context ends, leaving no
// goroutine behind, with the Bus up or down.
func TestRunEnds(t *testing.T) {
	for _, down := range []bool{false, true} {
		t.Run(fmt.Sprint("down ", down), func(t *testing.T) {
			bus := fleettest.NewBus(4)
			st := fleet.NewStore(memory.New(store.Options{PeerLifetime: lifetime}), fleet.StoreConfig{Streams: 4})
			defer st.Close()
			before := runtime.NumGoroutine()
			node, err := fleet.NewNode(st, bus, fleet.Config{FinalFlush: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			bus.SetDown(down)
			runCtx, cancel := context.WithCancel(ctx)
			done := make(chan error)
			go func() { done <- node.Run(runCtx) }()
			for i := range 100 {
				st.Announce(ctx, store.Announce{InfoHash: ih(fmt.Sprint(i)), Peer: bittorrent.Peer{Addr: addr("10.0.0.1:1")}}, nil)
			}
			time.Sleep(100 * time.Millisecond)
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return 5s after its context ended")
			}
			if err := node.Run(ctx); err == nil {
				t.Error("a second Run did not fail")
			}
			eventually(t, "the goroutines end", func() bool { return runtime.NumGoroutine() <= before })
		})
	}
}
