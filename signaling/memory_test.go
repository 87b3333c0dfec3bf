package signaling

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/internal/race"
)

// conn is a Sender for tests: a connection by its pointer.
type conn struct{ name string }

func (c *conn) Send([]byte) bool { return true }

func pid(n int) bittorrent.PeerID {
	var id bittorrent.PeerID
	copy(id[:], fmt.Sprintf("-WW0001-%012d", n))
	return id
}

// clock is a registry's time, moved by the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newMem(t testing.TB, opts Options) (*Memory, *clock) {
	t.Helper()
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	opts.Now = c.now
	return NewMemory(opts), c
}

// TestAnnounceEvents: counts after each announce of a sequence, in one
// swarm, by peers 1..3 each on a connection of its own.
func TestAnnounceEvents(t *testing.T) {
	type step struct {
		peer   int
		event  bittorrent.Event
		seeder bool
		want   bittorrent.Stats
	}
	S := func(seeders, leechers, downloaded uint32) bittorrent.Stats {
		return bittorrent.Stats{Seeders: seeders, Leechers: leechers, Downloaded: downloaded}
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"leecher joins", []step{{1, bittorrent.EventStarted, false, S(0, 1, 0)}}},
		{"seeder joins", []step{{1, bittorrent.EventStarted, true, S(1, 0, 0)}}},
		{"update without started joins", []step{{1, bittorrent.EventNone, false, S(0, 1, 0)}}},
		{"started twice is an update", []step{
			{1, bittorrent.EventStarted, false, S(0, 1, 0)},
			{1, bittorrent.EventStarted, false, S(0, 1, 0)}}},
		{"completed counts a download", []step{
			{1, bittorrent.EventStarted, false, S(0, 1, 0)},
			{1, bittorrent.EventCompleted, true, S(1, 0, 1)}}},
		{"completed twice counts once", []step{
			{1, bittorrent.EventStarted, false, S(0, 1, 0)},
			{1, bittorrent.EventCompleted, true, S(1, 0, 1)},
			{1, bittorrent.EventCompleted, true, S(1, 0, 1)}}},
		{"completed from a newcomer counts", []step{{1, bittorrent.EventCompleted, true, S(1, 0, 1)}}},
		{"completed with bytes left is no download", []step{
			{1, bittorrent.EventStarted, false, S(0, 1, 0)},
			{1, bittorrent.EventCompleted, false, S(0, 1, 0)}}},
		{"left 0 without completed: a seeder, no download", []step{
			{1, bittorrent.EventStarted, false, S(0, 1, 0)},
			{1, bittorrent.EventNone, true, S(1, 0, 0)}}},
		{"seeder back to leecher", []step{
			{1, bittorrent.EventStarted, true, S(1, 0, 0)},
			{1, bittorrent.EventNone, false, S(0, 1, 0)}}},
		{"stopped leaves", []step{
			{1, bittorrent.EventStarted, false, S(0, 1, 0)},
			{2, bittorrent.EventStarted, true, S(1, 1, 0)},
			{1, bittorrent.EventStopped, false, S(1, 0, 0)}}},
		{"stopped of a stranger changes nothing", []step{
			{1, bittorrent.EventStarted, false, S(0, 1, 0)},
			{2, bittorrent.EventStopped, false, S(0, 1, 0)}}},
		{"three peers", []step{
			{1, bittorrent.EventStarted, false, S(0, 1, 0)},
			{2, bittorrent.EventStarted, false, S(0, 2, 0)},
			{3, bittorrent.EventStarted, true, S(1, 2, 0)},
			{2, bittorrent.EventCompleted, true, S(2, 1, 1)},
			{3, bittorrent.EventStopped, true, S(1, 1, 1)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newMem(t, Options{})
			conns := map[int]*conn{}
			for i, s := range tt.steps {
				if conns[s.peer] == nil {
					conns[s.peer] = &conn{}
				}
				a := Announce{InfoHash: bittorrent.InfoHash{1}, PeerID: pid(s.peer), Via: conns[s.peer], Event: s.event, Seeder: s.seeder}
				_, st, err := r.Announce(&a, nil)
				if err != nil || st != s.want {
					t.Fatalf("step %d: %+v, %v; want %+v", i, st, err, s.want)
				}
				if sc := r.Scrape([]bittorrent.InfoHash{{1}}, nil); sc[0] != s.want {
					t.Fatalf("step %d: scrape %+v, want %+v", i, sc[0], s.want)
				}
			}
			last := tt.steps[len(tt.steps)-1].want
			if tot := r.Totals(); tot.Seeders != uint64(last.Seeders) || tot.Leechers != uint64(last.Leechers) {
				t.Errorf("totals %+v, want %+v", tot, last)
			}
		})
	}
}

// TestPick: offers go to other peers, each once, never to the sender; a
// seeder's go to leechers only; never more than asked or than there are.
func TestPick(t *testing.T) {
	for _, n := range []int{1, 2, 5, 15, 16, 17, 40, 300} { // around indexFrom, and beyond MaxPick
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			r, _ := newMem(t, Options{})
			ih := bittorrent.InfoHash{2}
			conns := make([]*conn, n)
			seeders := map[Sender]bool{}
			for i := range n {
				conns[i] = &conn{name: fmt.Sprint(i)}
				seeder := i%3 == 0
				seeders[conns[i]] = seeder
				if _, _, err := r.Announce(&Announce{InfoHash: ih, PeerID: pid(i), Via: conns[i], Seeder: seeder}, nil); err != nil {
					t.Fatal(err)
				}
			}
			leechers := 0
			for _, s := range seeders {
				if !s {
					leechers++
				}
			}
			for _, k := range []int{1, 3, 10, 50, 500} {
				for self := range min(n, 6) {
					seeder := seeders[conns[self]]
					got, _, err := r.Announce(&Announce{InfoHash: ih, PeerID: pid(self), Via: conns[self], Seeder: seeder, NumWant: k}, nil)
					if err != nil {
						t.Fatal(err)
					}
					avail := n - 1
					if seeder {
						avail = leechers
					}
					if want := min(k, avail, MaxPick); len(got) != want {
						t.Fatalf("k=%d self=%d: %d picked, want %d", k, self, len(got), want)
					}
					seen := map[Sender]bool{}
					for _, s := range got {
						if s == Sender(conns[self]) {
							t.Fatalf("k=%d: picked the sender", k)
						}
						if seen[s] {
							t.Fatalf("k=%d: %v picked twice", k, s)
						}
						if seeder && seeders[s] {
							t.Fatalf("k=%d: a seeder's offer to a seeder", k)
						}
						seen[s] = true
					}
				}
			}
		})
	}
}

// TestPickUniform: each of the other peers is picked about equally often.
func TestPickUniform(t *testing.T) {
	r, _ := newMem(t, Options{})
	ih := bittorrent.InfoHash{3}
	const n, k, rounds = 30, 5, 30000
	conns := make([]*conn, n)
	index := map[Sender]int{}
	for i := range n {
		conns[i] = &conn{}
		index[conns[i]] = i
		r.Announce(&Announce{InfoHash: ih, PeerID: pid(i), Via: conns[i], Seeder: i%2 == 0}, nil)
	}
	counts := make([]int, n)
	var dst []Sender
	for range rounds {
		dst, _, _ = r.Announce(&Announce{InfoHash: ih, PeerID: pid(1), Via: conns[1], NumWant: k}, dst[:0])
		for _, s := range dst {
			counts[index[s]]++
		}
	}
	want := float64(rounds*k) / (n - 1) // about 5172
	for i, c := range counts {
		if i == 1 {
			if c != 0 {
				t.Errorf("the sender was picked %d times", c)
			}
			continue
		}
		if d := float64(c) - want; d > 0.08*want || d < -0.08*want {
			t.Errorf("peer %d picked %d times, want about %.0f", i, c, want)
		}
	}
}

// TestPeerIDBinding: a peer id is its connection's in a swarm until it
// leaves or expires; Leave, Route and Has follow the binding.
func TestPeerIDBinding(t *testing.T) {
	r, clk := newMem(t, Options{PeerLifetime: time.Minute})
	ih := bittorrent.InfoHash{4}
	a, b, c := &conn{"a"}, &conn{"b"}, &conn{"c"}
	ann := func(id int, via Sender, ev bittorrent.Event) error {
		_, _, err := r.Announce(&Announce{InfoHash: ih, PeerID: pid(id), Via: via, Event: ev}, nil)
		return err
	}
	if err := ann(1, a, bittorrent.EventStarted); err != nil {
		t.Fatal(err)
	}
	if err := ann(1, b, bittorrent.EventStarted); !errors.Is(err, ErrPeerIDTaken) {
		t.Fatalf("same peer id from another connection: %v", err)
	}
	if err := ann(1, b, bittorrent.EventStopped); !errors.Is(err, ErrPeerIDTaken) {
		t.Fatalf("stopped for another connection's peer id: %v", err)
	}
	if r.Leave(ih, pid(1), b) {
		t.Fatal("Leave through the wrong connection removed the peer")
	}
	if !r.Has(ih, pid(1), a) || r.Has(ih, pid(1), b) {
		t.Fatal("Has does not follow the binding")
	}
	if err := ann(2, c, bittorrent.EventStarted); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		from    int
		via     Sender
		to      int
		want    Sender
		wantErr error
	}{
		{2, c, 1, a, nil},
		{1, a, 2, c, nil},
		{1, b, 2, nil, ErrNotMember}, // answer from a peer id not bound to its connection
		{3, c, 1, nil, ErrNotMember}, // from a stranger
		{2, c, 9, nil, ErrNoPeer},    // to a stranger
	}
	for _, tt := range tests {
		got, err := r.Route(ih, pid(tt.from), tt.via, pid(tt.to))
		if got != tt.want || !errors.Is(err, tt.wantErr) {
			t.Errorf("Route(%d via %v → %d) = %v, %v; want %v, %v", tt.from, tt.via, tt.to, got, err, tt.want, tt.wantErr)
		}
	}
	if _, err := r.Route(bittorrent.InfoHash{99}, pid(2), c, pid(1)); !errors.Is(err, ErrNotMember) {
		t.Errorf("Route in an unknown swarm: %v", err)
	}

	// Past its lifetime the peer is neither picked nor routed to, and
	// its id can be taken by another connection.
	clk.add(50 * time.Second)
	if err := ann(2, c, bittorrent.EventNone); err != nil { // 2 stays fresh
		t.Fatal(err)
	}
	clk.add(20 * time.Second) // 1 is 70 s old
	if got, _, _ := r.Announce(&Announce{InfoHash: ih, PeerID: pid(2), Via: c, NumWant: 5}, nil); len(got) != 0 {
		t.Errorf("an expired peer was picked: %v", got)
	}
	if _, err := r.Route(ih, pid(2), c, pid(1)); !errors.Is(err, ErrNoPeer) {
		t.Errorf("route to an expired peer: %v", err)
	}
	if r.Has(ih, pid(1), a) {
		t.Error("Has reports an expired peer")
	}
	if err := ann(1, b, bittorrent.EventStarted); err != nil {
		t.Fatalf("taking an expired peer's id: %v", err)
	}
	if r.Leave(ih, pid(1), a) {
		t.Error("the old connection's Leave removed the rebound peer")
	}
	if got, err := r.Route(ih, pid(2), c, pid(1)); got != Sender(b) || err != nil {
		t.Errorf("route to the rebound peer: %v, %v", got, err)
	}
	if !r.Leave(ih, pid(1), b) || !r.Leave(ih, pid(2), c) {
		t.Fatal("Leave failed")
	}
	if tot := r.Totals(); tot != (Totals{}) {
		t.Errorf("totals after all left: %+v", tot)
	}
}

// TestExpire: Expire removes exactly the peers past their lifetime, and
// the swarms they leave empty.
func TestExpire(t *testing.T) {
	r, clk := newMem(t, Options{PeerLifetime: time.Minute})
	for i := range 40 {
		r.Announce(&Announce{InfoHash: bittorrent.InfoHash{byte(i % 4)}, PeerID: pid(i), Via: &conn{}, Seeder: i%5 == 0}, nil)
		if i == 19 {
			clk.add(30 * time.Second)
		}
	}
	clk.add(40 * time.Second) // the first 20 are 70 s old, the rest 40 s
	if n := r.Expire(); n != 20 {
		t.Errorf("Expire removed %d, want 20", n)
	}
	if tot := r.Totals(); tot.Peers() != 20 || tot.Swarms != 4 {
		t.Errorf("totals %+v, want 20 peers in 4 swarms", tot)
	}
	clk.add(time.Minute)
	if n := r.Expire(); n != 20 {
		t.Errorf("second Expire removed %d, want 20", n)
	}
	if tot := r.Totals(); tot != (Totals{}) {
		t.Errorf("totals %+v after all expired", tot)
	}
}

// TestMaxPeers: a new peer beyond the bound is refused, a known one is
// not.
func TestMaxPeers(t *testing.T) {
	r, _ := newMem(t, Options{MaxPeers: 2})
	c := &conn{}
	for i := range 2 {
		if _, _, err := r.Announce(&Announce{InfoHash: bittorrent.InfoHash{byte(i)}, PeerID: pid(i), Via: c}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := r.Announce(&Announce{InfoHash: bittorrent.InfoHash{9}, PeerID: pid(9), Via: c}, nil); err != ErrFull {
		t.Errorf("third peer: %v, want ErrFull", err)
	}
	if tot := r.Totals(); tot.Swarms != 2 {
		t.Errorf("a refused peer left a swarm behind: %+v", tot)
	}
	if _, _, err := r.Announce(&Announce{InfoHash: bittorrent.InfoHash{1}, PeerID: pid(1), Via: c, Seeder: true}, nil); err != nil {
		t.Errorf("re-announce at the bound: %v", err)
	}
}

// TestModel: random joins, moves and leaves in a few swarms agree with a
// plain map, through the swarms growing past indexFrom and shrinking.
func TestModel(t *testing.T) {
	r, _ := newMem(t, Options{})
	type key struct {
		ih bittorrent.InfoHash
		id bittorrent.PeerID
	}
	model := map[key]bool{} // seeder?
	conns := map[key]*conn{}
	rng := rand.New(rand.NewPCG(1, 2))
	for step := range 20000 {
		k := key{bittorrent.InfoHash{byte(rng.IntN(3))}, pid(rng.IntN(60))}
		if conns[k] == nil {
			conns[k] = &conn{}
		}
		switch op := rng.IntN(10); {
		case op < 6:
			seeder := rng.IntN(2) == 0
			if _, _, err := r.Announce(&Announce{InfoHash: k.ih, PeerID: k.id, Via: conns[k], Seeder: seeder}, nil); err != nil {
				t.Fatal(err)
			}
			model[k] = seeder
		case op < 8:
			r.Announce(&Announce{InfoHash: k.ih, PeerID: k.id, Via: conns[k], Event: bittorrent.EventStopped}, nil)
			delete(model, k)
		default:
			_, in := model[k]
			if left := r.Leave(k.ih, k.id, conns[k]); left != in {
				t.Fatalf("step %d: Leave = %v, peer in the model %v", step, left, in)
			}
			delete(model, k)
		}
		if step%97 == 0 {
			for kk, seeder := range model {
				if !r.Has(kk.ih, kk.id, conns[kk]) {
					t.Fatalf("step %d: peer lost", step)
				}
				_ = seeder
			}
			var s, l uint64
			for _, seeder := range model {
				if seeder {
					s++
				} else {
					l++
				}
			}
			if tot := r.Totals(); tot.Seeders != s || tot.Leechers != l {
				t.Fatalf("step %d: totals %+v, model %d seeders %d leechers", step, tot, s, l)
			}
		}
	}
}

// TestConcurrent: many connections announcing, routing, leaving at once
// (run with -race); the registry ends empty.
func TestConcurrent(t *testing.T) {
	r, _ := newMem(t, Options{})
	workers, rounds := 8, 2000
	if race.Enabled {
		rounds = 500
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &conn{}
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			var dst []Sender
			for i := range rounds {
				ih := bittorrent.InfoHash{byte(rng.IntN(4))}
				dst, _, _ = r.Announce(&Announce{InfoHash: ih, PeerID: pid(w), Via: c, NumWant: 5, Seeder: i%7 == 0}, dst[:0])
				r.Route(ih, pid(w), c, pid(rng.IntN(workers)))
				r.Scrape([]bittorrent.InfoHash{ih}, nil)
				if i%5 == 0 {
					r.Leave(ih, pid(w), c)
				}
				if i%50 == 0 {
					r.Expire()
					r.Totals()
				}
			}
			for ih := range 4 {
				r.Leave(bittorrent.InfoHash{byte(ih)}, pid(w), c)
			}
		}()
	}
	wg.Wait()
	if tot := r.Totals(); tot != (Totals{}) {
		t.Errorf("totals %+v after every peer left", tot)
	}
}

// TestAnnounceAllocs: announcing and picking allocate nothing in a
// swarm that exists.
func TestAnnounceAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("allocations differ under the race detector")
	}
	r, _ := newMem(t, Options{})
	ih := bittorrent.InfoHash{5}
	for i := range 100 {
		r.Announce(&Announce{InfoHash: ih, PeerID: pid(i), Via: &conn{}}, nil)
	}
	c := &conn{}
	r.Announce(&Announce{InfoHash: ih, PeerID: pid(1000), Via: c}, nil)
	dst := make([]Sender, 0, 10)
	a := Announce{InfoHash: ih, PeerID: pid(1000), Via: c, NumWant: 10}
	if n := testing.AllocsPerRun(1000, func() { dst, _, _ = r.Announce(&a, dst[:0]) }); n != 0 {
		t.Errorf("announce with 10 picks: %v allocs", n)
	}
	from, to := pid(1000), pid(5)
	if n := testing.AllocsPerRun(1000, func() { r.Route(ih, from, c, to) }); n != 0 {
		t.Errorf("route: %v allocs", n)
	}
}

// BenchmarkAnnouncePick: a re-announce picking 10 peers of a swarm of
// about 100, from parallel connections over 1000 swarms that each of
// them has joined before the timer starts.
func BenchmarkAnnouncePick(b *testing.B) {
	r, _ := newMem(b, Options{})
	const swarms, per, workers = 1000, 100, 64
	hash := func(s int) bittorrent.InfoHash { return bittorrent.InfoHash{byte(s), byte(s >> 8)} }
	for s := range swarms {
		for i := range per {
			r.Announce(&Announce{InfoHash: hash(s), PeerID: pid(i), Via: &conn{}, Seeder: i%4 == 0}, nil)
		}
	}
	conns := make([]*conn, workers)
	for w := range conns {
		conns[w] = &conn{}
		for s := range swarms {
			r.Announce(&Announce{InfoHash: hash(s), PeerID: pid(per + w), Via: conns[w]}, nil)
		}
	}
	var next atomic.Int32
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := int(next.Add(1)-1) % workers
		a := Announce{PeerID: pid(per + w), Via: conns[w], NumWant: 10}
		dst := make([]Sender, 0, 10)
		i := w * 7
		for pb.Next() {
			a.InfoHash = hash(i % swarms)
			i++
			dst, _, _ = r.Announce(&a, dst[:0])
		}
	})
}

// TestMembershipMemory reports the heap per peer of small swarms (one
// peer per swarm, as most are, and four per swarm).
func TestMembershipMemory(t *testing.T) {
	if testing.Short() || race.Enabled {
		t.Skip("measures memory")
	}
	for _, per := range []int{1, 4} {
		const n = 100_000
		conns := make([]conn, n)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		r := NewMemory(Options{})
		for i := range n {
			ih := bittorrent.InfoHash{byte(i / per), byte(i / per >> 8), byte(i / per >> 16)}
			r.Announce(&Announce{InfoHash: ih, PeerID: pid(i), Via: &conns[i]}, nil)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		t.Logf("%d peers, %d per swarm: %.0f bytes of heap per peer", n, per, float64(after.HeapAlloc-before.HeapAlloc)/n)
		runtime.KeepAlive(r)
	}
}

// TestLookup: Lookup finds a peer's binding in its swarm until it leaves
// or expires, and nothing elsewhere.
func TestLookup(t *testing.T) {
	r, clk := newMem(t, Options{PeerLifetime: time.Minute})
	a, b := &conn{"a"}, &conn{"b"}
	ih := bittorrent.InfoHash{1}
	r.Announce(&Announce{InfoHash: ih, PeerID: pid(1), Via: a}, nil)
	r.Announce(&Announce{InfoHash: ih, PeerID: pid(2), Via: b, Seeder: true}, nil)
	tests := []struct {
		name string
		ih   bittorrent.InfoHash
		id   bittorrent.PeerID
		want Sender
	}{
		{"leecher", ih, pid(1), a},
		{"seeder", ih, pid(2), b},
		{"not in swarm", ih, pid(3), nil},
		{"other swarm", bittorrent.InfoHash{2}, pid(1), nil},
	}
	for _, tt := range tests {
		got, ok := r.Lookup(tt.ih, tt.id)
		if ok != (tt.want != nil) || got != tt.want {
			t.Errorf("%s: Lookup = %v, %v; want %v", tt.name, got, ok, tt.want)
		}
	}
	r.Leave(ih, pid(1), a)
	if _, ok := r.Lookup(ih, pid(1)); ok {
		t.Error("Lookup found a peer that left")
	}
	clk.add(2 * time.Minute)
	if _, ok := r.Lookup(ih, pid(2)); ok {
		t.Error("Lookup found an expired peer")
	}
}

// TestRange: Range sees every peer not expired, once, with its binding
// and role, and stops when asked.
func TestRange(t *testing.T) {
	r, clk := newMem(t, Options{PeerLifetime: time.Minute})
	type seen struct {
		ih     bittorrent.InfoHash
		id     bittorrent.PeerID
		via    Sender
		seeder bool
	}
	old := &conn{"old"}
	r.Announce(&Announce{InfoHash: bittorrent.InfoHash{9}, PeerID: pid(999), Via: old}, nil)
	clk.add(2 * time.Minute) // expired, not yet removed
	want := map[seen]bool{}
	for i := range 40 { // swarms of 20: indexed ones too
		s := seen{bittorrent.InfoHash{byte(i % 2)}, pid(i), &conn{fmt.Sprint(i)}, i%3 == 0}
		want[s] = true
		r.Announce(&Announce{InfoHash: s.ih, PeerID: s.id, Via: s.via, Seeder: s.seeder}, nil)
	}
	got := map[seen]bool{}
	r.Range(func(ih bittorrent.InfoHash, id bittorrent.PeerID, via Sender, seeder bool) bool {
		s := seen{ih, id, via, seeder}
		if got[s] {
			t.Errorf("%q seen twice", id[:])
		}
		got[s] = true
		return true
	})
	if len(got) != len(want) {
		t.Errorf("Range saw %d peers, want %d", len(got), len(want))
	}
	for s := range want {
		if !got[s] {
			t.Errorf("Range missed %q", s.id[:])
		}
	}
	n := 0
	r.Range(func(bittorrent.InfoHash, bittorrent.PeerID, Sender, bool) bool { n++; return n < 5 })
	if n != 5 {
		t.Errorf("Range went on after false: %d calls", n)
	}
}
