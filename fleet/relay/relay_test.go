package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/fleet"
	"trackd/fleet/fleettest"
	"trackd/signaling"
)

// conn is a local connection for tests: it records what it is sent.
type conn struct {
	name   string
	mu     sync.Mutex
	got    []string
	refuse bool
}

func (c *conn) Send(msg []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refuse {
		return false
	}
	c.got = append(c.got, string(msg))
	return true
}

func (c *conn) messages() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

func pid(n int) bittorrent.PeerID {
	var id bittorrent.PeerID
	copy(id[:], fmt.Sprintf("-WW0001-%012d", n))
	return id
}

// link is one instance's view of the Bus: a test can cut its sending
// (muted: its messages are lost, as in a partition) or hold it (gate:
// every Send waits for a value on it).
type link struct {
	bus   fleet.Messenger
	muted atomic.Bool
	gate  chan struct{}
}

func (l *link) Send(ctx context.Context, to fleet.Instance, msg []byte) error {
	if l.gate != nil {
		select {
		case <-l.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if l.muted.Load() {
		return nil
	}
	return l.bus.Send(ctx, to, msg)
}

func (l *link) Listen(ctx context.Context, self fleet.Instance, fn func([]byte)) error {
	return l.bus.Listen(ctx, self, fn)
}

// node is one instance of a test fleet.
type node struct {
	*Registry
	link *link
	stop func() // ends Run and waits for it
}

// testOptions are quick to converge and never time an instance out.
func testOptions() Options {
	return Options{FlushInterval: 5 * time.Millisecond, Heartbeat: 10 * time.Millisecond, Timeout: time.Hour, Logger: slog.New(slog.DiscardHandler)}
}

func instanceID(i int) fleet.Instance { return fleet.Instance{0xf0, byte(i + 1)} }

// newFleet starts n Registries on one Bus, each with opts (and Self
// instanceID(i)), and waits until each knows the others. The test's end
// stops them.
func newFleet(t *testing.T, n int, opts Options) (*fleettest.Bus, []*node) {
	t.Helper()
	bus := fleettest.NewBus(1)
	nodes := make([]*node, n)
	for i := range nodes {
		nodes[i] = startNode(t, bus, i, opts, nil)
	}
	eventually(t, "instances know each other", func() bool {
		for _, nd := range nodes {
			if nd.Stats().Instances != n-1 {
				return false
			}
		}
		return true
	})
	return bus, nodes
}

func startNode(t *testing.T, bus fleet.Messenger, i int, opts Options, gate chan struct{}) *node {
	t.Helper()
	opts.Self = instanceID(i)
	l := &link{bus: bus, gate: gate}
	nd := &node{Registry: New(l, opts), link: l}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- nd.Run(ctx) }()
	var once sync.Once
	nd.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return")
			}
		})
	}
	t.Cleanup(nd.stop)
	return nd
}

// eventually waits up to 10 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// peers is the number of peers swarm ih has on r.
func peers(r *Registry, ih bittorrent.InfoHash) int {
	st := r.Scrape([]bittorrent.InfoHash{ih}, nil)[0]
	return int(st.Seeders + st.Leechers)
}

func announce(t *testing.T, r *Registry, ih bittorrent.InfoHash, id bittorrent.PeerID, via signaling.Sender, ev bittorrent.Event, seeder bool, want int) []signaling.Sender {
	t.Helper()
	to, _, err := r.Announce(&signaling.Announce{InfoHash: ih, PeerID: id, Via: via, Event: ev, Seeder: seeder, NumWant: want}, nil)
	if err != nil {
		t.Fatalf("announce of %q: %v", id[:], err)
	}
	return to
}

// TestOfferAndAnswer: a peer on instance 0 offers to the peers of the
// swarm, which are connected to the other instances; each offer reaches
// its peer's connection there, and each answer, Routed there, reaches
// the offerer's connection.
func TestOfferAndAnswer(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d instances", n), func(t *testing.T) {
			_, nodes := newFleet(t, n, testOptions())
			ih := bittorrent.InfoHash{1}
			conns := make([]*conn, n)
			for i, nd := range nodes {
				conns[i] = &conn{name: fmt.Sprint("peer on ", i)}
				announce(t, nd.Registry, ih, pid(i), conns[i], bittorrent.EventStarted, i > 0, 0)
			}
			eventually(t, "every instance has every peer", func() bool {
				for _, nd := range nodes {
					if peers(nd.Registry, ih) != n {
						return false
					}
				}
				return true
			})
			to := announce(t, nodes[0].Registry, ih, pid(0), conns[0], bittorrent.EventNone, false, n)
			if len(to) != n-1 {
				t.Fatalf("picked %d peers, want %d", len(to), n-1)
			}
			for i, s := range to {
				if _, ok := s.(*remote); !ok {
					t.Fatalf("picked %T, want a remote peer", s)
				}
				if !s.Send(fmt.Appendf(nil, "offer %d", i)) {
					t.Fatal("Send to a remote peer refused")
				}
			}
			for i := 1; i < n; i++ {
				eventually(t, "offer delivered", func() bool { return len(conns[i].messages()) == 1 })
				msg := conns[i].messages()[0]
				back, err := nodes[i].Route(ih, pid(i), conns[i], pid(0))
				if err != nil {
					t.Fatalf("Route on instance %d: %v", i, err)
				}
				back.Send([]byte("answer to " + msg))
			}
			eventually(t, "answers delivered", func() bool { return len(conns[0].messages()) == n-1 })
			got := conns[0].messages()
			slices.Sort(got)
			for i, m := range got {
				if want := fmt.Sprintf("answer to offer %d", i); m != want {
					t.Errorf("answer %d is %q, want %q", i, m, want)
				}
			}
			for i, nd := range nodes {
				st := nd.Stats()
				if st.Invalid != 0 || st.Undeliverable != 0 || st.RelayDropped != 0 {
					t.Errorf("instance %d: %+v", i, st)
				}
			}
		})
	}
}

// TestOffererKnownFromOffer: an offer to another instance's peer carries
// the offerer's membership, so the answer finds the offerer there even
// though the offerer's instance never broadcast it.
func TestOffererKnownFromOffer(t *testing.T) {
	bus := fleettest.NewBus(1)
	opts := testOptions()
	b := startNode(t, bus, 1, opts, nil)
	opts.FlushInterval = time.Hour // a broadcasts nothing
	a := startNode(t, bus, 0, opts, nil)
	ih := bittorrent.InfoHash{2}
	ca, cb := &conn{}, &conn{}
	announce(t, b.Registry, ih, pid(2), cb, bittorrent.EventStarted, false, 0)
	eventually(t, "a has b's peer", func() bool { return peers(a.Registry, ih) == 1 })
	to := announce(t, a.Registry, ih, pid(1), ca, bittorrent.EventStarted, false, 5)
	if len(to) != 1 || !to[0].Send([]byte("offer")) {
		t.Fatalf("picked %v", to)
	}
	eventually(t, "offer delivered", func() bool { return len(cb.messages()) == 1 })
	back, err := b.Route(ih, pid(2), cb, pid(1))
	if err != nil {
		t.Fatalf("Route to the offerer: %v", err)
	}
	back.Send([]byte("answer"))
	eventually(t, "answer delivered", func() bool { return len(ca.messages()) == 1 })
	if got := a.Stats().ChangesSent; got != 0 {
		t.Errorf("a broadcast %d changes, want none", got)
	}
}

// TestRemoval: a peer that leaves (its connection closes) or stops is
// removed on every instance; a completed event counts everywhere.
func TestRemoval(t *testing.T) {
	tests := []struct {
		name   string
		remove func(r *Registry, ih bittorrent.InfoHash, id bittorrent.PeerID, c *conn)
	}{
		{"leave", func(r *Registry, ih bittorrent.InfoHash, id bittorrent.PeerID, c *conn) {
			if !r.Leave(ih, id, c) {
				t.Error("Leave found no peer")
			}
		}},
		{"stopped", func(r *Registry, ih bittorrent.InfoHash, id bittorrent.PeerID, c *conn) {
			announce(t, r, ih, id, c, bittorrent.EventStopped, false, 0)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, nodes := newFleet(t, 3, testOptions())
			ih := bittorrent.InfoHash{3}
			c := &conn{}
			announce(t, nodes[0].Registry, ih, pid(1), c, bittorrent.EventStarted, false, 0)
			announce(t, nodes[0].Registry, ih, pid(1), c, bittorrent.EventCompleted, true, 0)
			announce(t, nodes[1].Registry, ih, pid(2), &conn{}, bittorrent.EventStarted, false, 0)
			eventually(t, "both peers everywhere", func() bool {
				for _, nd := range nodes {
					st := nd.Scrape([]bittorrent.InfoHash{ih}, nil)[0]
					if st != (bittorrent.Stats{Seeders: 1, Leechers: 1, Downloaded: 1}) {
						return false
					}
				}
				return true
			})
			tt.remove(nodes[0].Registry, ih, pid(1), c)
			eventually(t, "peer removed everywhere", func() bool {
				for _, nd := range nodes {
					if peers(nd.Registry, ih) != 1 {
						return false
					}
				}
				return true
			})
			for i, nd := range nodes[1:] {
				if _, ok := nd.mem.Lookup(ih, pid(1)); ok {
					t.Errorf("instance %d still has the peer", i+1)
				}
				if st := nd.Stats(); st.RemotePeers != i {
					t.Errorf("instance %d holds %d remote peers, want %d", i+1, st.RemotePeers, i)
				}
			}
		})
	}
}

// TestInstanceGone: the peers of an instance that stops sending are
// dropped by the others once Timeout passes, and come back with its
// next announces; an instance that stops says bye and its peers go at
// once.
func TestInstanceGone(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		opts := testOptions()
		opts.Timeout = 500 * time.Millisecond
		_, nodes := newFleet(t, 3, opts)
		ih := bittorrent.InfoHash{4}
		knows := func(nd *node, id fleet.Instance) bool {
			for _, inst := range nd.known() {
				if inst.id == id {
					return true
				}
			}
			return false
		}
		c := &conn{}
		announce(t, nodes[0].Registry, ih, pid(1), c, bittorrent.EventStarted, false, 0)
		eventually(t, "peer everywhere", func() bool {
			return peers(nodes[1].Registry, ih) == 1 && peers(nodes[2].Registry, ih) == 1
		})
		nodes[0].link.muted.Store(true)
		eventually(t, "instance 0 dropped", func() bool {
			// (on a slow machine 1 and 2 may drop each other too, for a
			// while: they have no peers)
			for _, nd := range nodes[1:] {
				st := nd.Stats()
				if peers(nd.Registry, ih) != 0 || st.InstancesGone == 0 || st.RemotePeers != 0 || knows(nd, nodes[0].Self()) {
					return false
				}
			}
			return true
		})
		if peers(nodes[0].Registry, ih) != 1 {
			t.Error("instance 0 lost its own peer")
		}
		nodes[0].link.muted.Store(false)
		announce(t, nodes[0].Registry, ih, pid(1), c, bittorrent.EventNone, false, 0)
		eventually(t, "peer back everywhere", func() bool {
			return peers(nodes[1].Registry, ih) == 1 && peers(nodes[2].Registry, ih) == 1
		})
	})
	t.Run("bye", func(t *testing.T) {
		_, nodes := newFleet(t, 2, testOptions()) // Timeout: an hour
		ih := bittorrent.InfoHash{5}
		announce(t, nodes[0].Registry, ih, pid(1), &conn{}, bittorrent.EventStarted, false, 0)
		eventually(t, "peer on 1", func() bool { return peers(nodes[1].Registry, ih) == 1 })
		nodes[0].stop()
		eventually(t, "peer gone from 1", func() bool {
			return peers(nodes[1].Registry, ih) == 0 && nodes[1].Stats().InstancesGone == 1
		})
	})
}

// hello sends heartbeats from origin to nd until nd knows it: nd is
// then listening.
func hello(t *testing.T, bus *fleettest.Bus, nd *node, origin fleet.Instance) {
	t.Helper()
	n := nd.Stats().Instances
	eventually(t, "hello heard", func() bool {
		bus.Send(context.Background(), nd.Self(), appendHeader(nil, origin))
		return nd.Stats().Instances > n
	})
}

// inject sends nd a frame from origin and waits until nd applied it.
func inject(t *testing.T, bus *fleettest.Bus, nd *node, origin fleet.Instance, frame []byte) {
	t.Helper()
	before := nd.Stats()
	bus.Send(context.Background(), nd.Self(), append(appendHeader(nil, origin), frame...))
	eventually(t, "frame applied", func() bool {
		st := nd.Stats()
		return st.ChangesApplied+st.Conflicts+st.Full+st.Delivered+st.Undeliverable+st.Stale >
			before.ChangesApplied+before.Conflicts+before.Full+before.Delivered+before.Undeliverable+before.Stale
	})
}

// TestPeerIDConflicts: a peer id keeps, on each instance, the binding it
// had first: another instance's change does not take a local peer's id,
// a local announce does not take a remote peer's, one instance's peer
// does not take another's, and one instance's leave does not remove
// another's peer.
func TestPeerIDConflicts(t *testing.T) {
	ih := bittorrent.InfoHash{6}
	x, y := instanceID(7), instanceID(8)
	change := func(o op, seeder bool) []byte { return appendChange(nil, ih, pid(1), o, seeder) }
	t.Run("remote does not take local", func(t *testing.T) {
		bus := fleettest.NewBus(1)
		b := startNode(t, bus, 1, testOptions(), nil)
		hello(t, bus, b, x)
		local := &conn{}
		announce(t, b.Registry, ih, pid(1), local, bittorrent.EventStarted, false, 0)
		inject(t, bus, b, x, change(opAnnounce, true))
		if st := b.Stats(); st.Conflicts != 1 || st.RemotePeers != 0 {
			t.Errorf("Conflicts %d, RemotePeers %d; want 1, 0", st.Conflicts, st.RemotePeers)
		}
		if s, _ := b.mem.Lookup(ih, pid(1)); s != signaling.Sender(local) {
			t.Errorf("bound to %v, want the local connection", s)
		}
		// x's leave of its (refused) peer leaves the local one alone
		inject(t, bus, b, x, change(opLeave, false))
		// a message to the id goes to the local connection
		inject(t, bus, b, x, appendMessage(nil, ih, pid(1), []byte("offer")))
		if got := local.messages(); len(got) != 1 || got[0] != "offer" {
			t.Errorf("local connection got %q", got)
		}
	})
	t.Run("local does not take remote", func(t *testing.T) {
		bus := fleettest.NewBus(1)
		b := startNode(t, bus, 1, testOptions(), nil)
		hello(t, bus, b, x)
		inject(t, bus, b, x, change(opAnnounce, false))
		local := &conn{}
		if _, _, err := b.Announce(&signaling.Announce{InfoHash: ih, PeerID: pid(1), Via: local}, nil); !errors.Is(err, signaling.ErrPeerIDTaken) {
			t.Fatalf("local announce over a remote peer's id: %v, want ErrPeerIDTaken", err)
		}
		inject(t, bus, b, x, change(opLeave, false))
		announce(t, b.Registry, ih, pid(1), local, bittorrent.EventStarted, false, 0)
	})
	t.Run("first instance keeps it", func(t *testing.T) {
		bus := fleettest.NewBus(1)
		b := startNode(t, bus, 1, testOptions(), nil)
		hello(t, bus, b, x)
		hello(t, bus, b, y)
		inject(t, bus, b, x, change(opAnnounce, false))
		inject(t, bus, b, y, change(opAnnounce, true))
		inject(t, bus, b, y, change(opLeave, false))
		s, _ := b.mem.Lookup(ih, pid(1))
		if p, ok := s.(*remote); !ok || p.inst.id != x {
			t.Errorf("bound to %v, want x's peer", s)
		}
		if st := b.Scrape([]bittorrent.InfoHash{ih}, nil)[0]; st.Leechers != 1 || st.Seeders != 0 {
			t.Errorf("counts %+v, want x's leecher", st)
		}
		if st := b.Stats(); st.Conflicts != 1 || st.RemotePeers != 1 {
			t.Errorf("Conflicts %d, RemotePeers %d; want 1, 1", st.Conflicts, st.RemotePeers)
		}
	})
}

// TestExpiry: remote peers expire by the peer lifetime since their last
// change, as local ones, and are refreshed by their announces.
func TestExpiry(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	opts := testOptions()
	opts.PeerLifetime = time.Minute
	opts.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	_, nodes := newFleet(t, 2, opts)
	a, b := nodes[0], nodes[1]
	ih := bittorrent.InfoHash{7}
	c1, c2 := &conn{}, &conn{}
	announce(t, a.Registry, ih, pid(1), c1, bittorrent.EventStarted, false, 0)
	announce(t, a.Registry, ih, pid(2), c2, bittorrent.EventStarted, false, 0)
	// b has applied a's changes up to number n (a dump may bring the
	// peers earlier; the broadcast must not come after the clock moved)
	applied := func(n uint64) func() bool {
		return func() bool {
			for _, inst := range b.known() {
				inst.mu.Lock()
				done := inst.id == a.Self() && inst.applied >= n
				inst.mu.Unlock()
				if done {
					return true
				}
			}
			return false
		}
	}
	eventually(t, "b has both", applied(2))
	advance(40 * time.Second)
	announce(t, a.Registry, ih, pid(1), c1, bittorrent.EventNone, false, 0)
	eventually(t, "refresh applied", applied(3))
	advance(40 * time.Second) // peer 2 is 80 s old, peer 1 40 s
	if n := b.Expire(); n != 1 {
		t.Errorf("b expired %d peers, want 1", n)
	}
	if n := a.Expire(); n != 1 {
		t.Errorf("a expired %d peers, want 1", n)
	}
	if st := b.Stats(); st.RemotePeers != 1 || peers(b.Registry, ih) != 1 {
		t.Errorf("b holds %d remote peers, %d in the swarm; want 1", st.RemotePeers, peers(b.Registry, ih))
	}
	advance(2 * time.Minute)
	b.Expire()
	if st := b.Stats(); st.RemotePeers != 0 || peers(b.Registry, ih) != 0 {
		t.Errorf("b holds %d remote peers after all expired", st.RemotePeers)
	}
	// an expired peer announcing again comes back
	announce(t, a.Registry, ih, pid(2), c2, bittorrent.EventStarted, false, 0)
	eventually(t, "peer back", func() bool { return peers(b.Registry, ih) == 1 && b.Stats().RemotePeers == 1 })
}

// TestBounds: the changes waiting and the messages waiting per instance
// are bounded, and what did not fit is counted; so are instances.
func TestBounds(t *testing.T) {
	t.Run("pending changes", func(t *testing.T) {
		r := New(&link{bus: fleettest.NewBus(1)}, Options{MaxPendingBytes: seqLen + 10*changeLen})
		c := &conn{}
		for i := range 25 {
			announce(t, r, bittorrent.InfoHash{8}, pid(i), c, bittorrent.EventStarted, false, 0)
		}
		if st := r.Stats(); st.ChangesDropped != 15 {
			t.Errorf("ChangesDropped %d, want 15", st.ChangesDropped)
		}
		if got := peers(r, bittorrent.InfoHash{8}); got != 25 {
			t.Errorf("%d peers locally, want 25: a dropped change is applied here", got)
		}
	})
	t.Run("queue per instance", func(t *testing.T) {
		bus := fleettest.NewBus(1)
		msg := make([]byte, 1000)
		opts := testOptions()
		opts.MaxQueueBytes = 4 * messageLen(msg)
		gate := make(chan struct{})
		b := startNode(t, bus, 1, opts, nil)
		a := startNode(t, bus, 0, opts, gate)
		ih := bittorrent.InfoHash{9}
		announce(t, b.Registry, ih, pid(2), &conn{}, bittorrent.EventStarted, false, 0)
		eventually(t, "a has b's peer", func() bool { return peers(a.Registry, ih) == 1 })
		s, _ := a.mem.Lookup(ih, pid(2))
		p := s.(*remote)
		accepted := 0
		for range 100 {
			if p.Send(msg) {
				accepted++
			}
			time.Sleep(10 * time.Microsecond)
		}
		// 4 wait in the queue; at most 4 more were taken by the sender,
		// which waits at the gate.
		if accepted < 4 || accepted > 8 {
			t.Errorf("%d of 100 accepted, want 4 to 8", accepted)
		}
		if st := a.Stats(); st.Relayed != uint64(accepted) || st.RelayDropped != uint64(100-accepted) {
			t.Errorf("Relayed %d, RelayDropped %d; %d accepted", st.Relayed, st.RelayDropped, accepted)
		}
		if p.Send(make([]byte, MaxMessageBytes+1)) {
			t.Error("a message over MaxMessageBytes accepted")
		}
		close(gate)
	})
	t.Run("max peers", func(t *testing.T) {
		bus := fleettest.NewBus(1)
		opts := testOptions()
		a := startNode(t, bus, 0, opts, nil)
		opts.MaxPeers = 2
		b := startNode(t, bus, 1, opts, nil)
		ih := bittorrent.InfoHash{16}
		announce(t, b.Registry, ih, pid(100), &conn{}, bittorrent.EventStarted, false, 0)
		for i := range 3 {
			announce(t, a.Registry, ih, pid(i), &conn{}, bittorrent.EventStarted, false, 0)
		}
		eventually(t, "b full", func() bool { st := b.Stats(); return st.Full >= 2 && st.RemotePeers == 1 })
		if got := peers(b.Registry, ih); got != 2 {
			t.Errorf("b holds %d peers, want its bound, 2", got)
		}
		if _, _, err := b.Announce(&signaling.Announce{InfoHash: ih, PeerID: pid(101), Via: &conn{}}, nil); !errors.Is(err, signaling.ErrFull) {
			t.Errorf("a local peer over the bound: %v, want ErrFull", err)
		}
	})
	t.Run("leaves remembered", func(t *testing.T) {
		inst := &instance{}
		for i := range 3 * maxLeft {
			inst.remember(peerKey{id: pid(i)}, uint64(i+1), 0)
		}
		if n := len(inst.left) + len(inst.leftOld); n > maxLeft {
			t.Errorf("%d leaves remembered, over %d", n, maxLeft)
		}
		if got := inst.leftAt(peerKey{id: pid(3*maxLeft - 1)}); got != 3*maxLeft {
			t.Errorf("the latest leave remembered as %d", got)
		}
	})
	t.Run("instances", func(t *testing.T) {
		bus := fleettest.NewBus(1)
		opts := testOptions()
		opts.MaxInstances = 2
		r := startNode(t, bus, 0, opts, nil)
		eventually(t, "instances counted", func() bool {
			for i := range 5 { // again until r listens
				bus.Send(context.Background(), fleet.Instance{}, appendHeader(nil, instanceID(10+i)))
			}
			st := r.Stats()
			return st.Instances == 2 && st.TooManyInstances >= 3
		})
	})
}

// TestGarbage: messages that are not frames are counted and skipped
// whole; the Registry goes on.
func TestGarbage(t *testing.T) {
	bus, nodes := newFleet(t, 2, testOptions())
	a, b := nodes[0], nodes[1]
	ih := bittorrent.InfoHash{10}
	cb := &conn{}
	announce(t, b.Registry, ih, pid(2), cb, bittorrent.EventStarted, false, 0)
	eventually(t, "a has b's peer", func() bool { return peers(a.Registry, ih) == 1 })
	garbage := invalidFrames()
	for _, g := range garbage {
		bus.Send(context.Background(), a.Self(), g.frame)
	}
	bus.Send(context.Background(), fleet.Instance{}, []byte(`{"another":"protocol"}`))
	eventually(t, "garbage counted", func() bool {
		st := a.Stats()
		return st.Invalid == uint64(len(garbage)) && st.Foreign == 1
	})
	// a frame with a good change and then garbage changes nothing
	f := appendHeader(nil, instanceID(1))
	f = appendChange(f, ih, pid(3), opAnnounce, false)
	f = append(f, 0xff)
	bus.Send(context.Background(), a.Self(), f)
	eventually(t, "bad tail counted", func() bool { return a.Stats().Invalid == uint64(len(garbage))+1 })
	if peers(a.Registry, ih) != 1 {
		t.Error("a frame refused was applied in part")
	}
	// and a message to a peer not here is counted
	f = appendMessage(appendHeader(nil, instanceID(1)), ih, pid(99), []byte("x"))
	bus.Send(context.Background(), a.Self(), f)
	eventually(t, "undeliverable counted", func() bool { return a.Stats().Undeliverable == 1 })
	// the relay still works
	to := announce(t, a.Registry, ih, pid(1), &conn{}, bittorrent.EventStarted, false, 1)
	to[0].Send([]byte("offer"))
	eventually(t, "offer delivered", func() bool { return len(cb.messages()) == 1 })
}

// TestLocalOnly: before Run, and without other instances, the Registry
// is a single instance's; a second Run at once is refused.
func TestLocalOnly(t *testing.T) {
	r := New(&link{bus: fleettest.NewBus(1)}, Options{})
	ih := bittorrent.InfoHash{11}
	c1, c2 := &conn{}, &conn{}
	announce(t, r, ih, pid(1), c1, bittorrent.EventStarted, false, 0)
	to := announce(t, r, ih, pid(2), c2, bittorrent.EventStarted, false, 3)
	if len(to) != 1 || to[0] != signaling.Sender(c1) {
		t.Fatalf("picked %v, want the other local peer", to)
	}
	if s, err := r.Route(ih, pid(1), c1, pid(2)); err != nil || s != signaling.Sender(c2) {
		t.Fatalf("Route: %v, %v", s, err)
	}
	if !r.Has(ih, pid(1), c1) || r.Totals().Peers() != 2 {
		t.Error("Has or Totals wrong")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	eventually(t, "running", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.ctx != nil })
	if err := r.Run(ctx); !errors.Is(err, errRunning) {
		t.Errorf("second Run: %v", err)
	}
	cancel()
	<-done
}

// TestConcurrent: three instances under announces, leaves, offers and
// answers from many goroutines, with garbage arriving; run with -race.
// Once every peer has left, every instance's swarms are empty.
func TestConcurrent(t *testing.T) {
	bus, nodes := newFleet(t, 3, testOptions())
	const workers, rounds = 6, 200
	conns := make([]*conn, workers)
	for w := range workers {
		conns[w] = &conn{}
		for i := range 8 {
			announce(t, nodes[w%len(nodes)].Registry, bittorrent.InfoHash{byte(i % 4)}, pid(w*1000+i), conns[w], bittorrent.EventStarted, false, 0)
		}
	}
	eventually(t, "every peer everywhere", func() bool {
		for _, nd := range nodes {
			if nd.Totals().Peers() != workers*8 {
				return false
			}
		}
		return true
	})
	var wg sync.WaitGroup
	for w := range workers {
		nd := nodes[w%len(nodes)]
		wg.Go(func() {
			c := conns[w]
			for i := range rounds {
				ih := bittorrent.InfoHash{byte(i % 4)}
				id := pid(w*1000 + i%8)
				to, _, err := nd.Announce(&signaling.Announce{InfoHash: ih, PeerID: id, Via: c, Seeder: i%3 == 0, NumWant: 3}, nil)
				if err != nil {
					continue
				}
				for _, s := range to {
					s.Send([]byte("offer"))
				}
				if i%5 == 0 {
					if s, err := nd.Route(ih, id, c, pid((w+1)%workers*1000+i%8)); err == nil {
						s.Send([]byte("answer"))
					}
				}
				if i%7 == 0 {
					nd.Leave(ih, id, c)
				}
				if i%50 == 0 {
					bus.Send(context.Background(), fleet.Instance{}, []byte{1, 2, 3})
					nd.Expire()
					nd.Stats()
				}
			}
			for i := range 8 {
				for h := range 4 {
					nd.Leave(bittorrent.InfoHash{byte(h)}, pid(w*1000+i), c)
				}
			}
		})
	}
	wg.Wait()
	empty := func() bool {
		for _, nd := range nodes {
			if nd.Totals().Peers() != 0 || nd.Stats().RemotePeers != 0 {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(10 * time.Second)
	for !empty() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	var relayed, arrived uint64
	for _, nd := range nodes {
		st := nd.Stats()
		relayed += st.Relayed
		arrived += st.Delivered + st.Undeliverable // most recipients have left by then
	}
	if relayed == 0 || arrived == 0 {
		t.Errorf("%d messages relayed, %d arrived: the test relayed nothing", relayed, arrived)
	}
	if !empty() {
		for i, nd := range nodes {
			t.Errorf("instance %d: %+v", i, nd.Stats())
			nd.mem.Range(func(ih bittorrent.InfoHash, id bittorrent.PeerID, via signaling.Sender, seeder bool) bool {
				t.Errorf("  %x %q %T %v", ih[:1], id[:], via, seeder)
				return true
			})
		}
	}
}

// TestJoin: an instance that starts learns the peers connected to the
// others at once (they send it theirs), without their announcing again;
// and they learn its.
func TestJoin(t *testing.T) {
	bus, nodes := newFleet(t, 2, testOptions())
	ih := bittorrent.InfoHash{12}
	for i := range 20 {
		announce(t, nodes[i%2].Registry, ih, pid(i), &conn{}, bittorrent.EventStarted, i%4 == 0, 0)
	}
	eventually(t, "both have 20", func() bool { return peers(nodes[0].Registry, ih) == 20 && peers(nodes[1].Registry, ih) == 20 })
	opts := testOptions()
	opts.FlushInterval = time.Hour // c broadcasts nothing: what it has and gives comes from the dumps
	c := startNode(t, bus, 2, opts, nil)
	cc := &conn{}
	announce(t, c.Registry, ih, pid(100), cc, bittorrent.EventStarted, false, 0)
	eventually(t, "c has every peer", func() bool { return peers(c.Registry, ih) == 21 && c.Stats().RemotePeers == 20 })
	if st := c.Scrape([]bittorrent.InfoHash{ih}, nil)[0]; st.Seeders != 5 {
		t.Errorf("c counts %d seeders, want 5", st.Seeders)
	}
	eventually(t, "the others have c's peer", func() bool { return peers(nodes[0].Registry, ih) == 21 && peers(nodes[1].Registry, ih) == 21 })
}

// TestOutage: while the Bus is down, changes wait (within their bound)
// and go out when it is back; after an outage longer than Timeout, when
// the instances have dropped each other's peers, they send each other
// theirs again when they hear from each other, so the swarms converge
// without the peers announcing again.
func TestOutage(t *testing.T) {
	for _, tt := range []struct {
		name    string
		timeout time.Duration
		down    time.Duration
	}{
		{"short", time.Hour, 100 * time.Millisecond},
		{"longer than Timeout", 150 * time.Millisecond, 500 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions()
			opts.Timeout = tt.timeout
			bus, nodes := newFleet(t, 3, opts)
			ih := bittorrent.InfoHash{13}
			c1, c2 := &conn{}, &conn{}
			announce(t, nodes[0].Registry, ih, pid(1), c1, bittorrent.EventStarted, false, 0)
			announce(t, nodes[1].Registry, ih, pid(2), c2, bittorrent.EventStarted, false, 0)
			eventually(t, "2 peers everywhere", func() bool {
				for _, nd := range nodes {
					if peers(nd.Registry, ih) != 2 {
						return false
					}
				}
				return true
			})
			bus.SetDown(true)
			announce(t, nodes[0].Registry, ih, pid(3), &conn{}, bittorrent.EventStarted, true, 0) // joins during the outage
			nodes[1].Leave(ih, pid(2), c2)                                                        // leaves during the outage
			time.Sleep(tt.down)
			bus.SetDown(false)
			eventually(t, "peers 1 and 3 everywhere, 2 gone", func() bool {
				for _, nd := range nodes {
					st := nd.Scrape([]bittorrent.InfoHash{ih}, nil)[0]
					if st.Leechers != 1 || st.Seeders != 1 {
						return false
					}
					if _, ok := nd.mem.Lookup(ih, pid(2)); ok {
						return false
					}
				}
				return true
			})
			st := nodes[0].Stats()
			if st.SendErrors == 0 || st.ChangesDropped != 0 {
				t.Errorf("instance 0: SendErrors %d (want some), ChangesDropped %d (want 0)", st.SendErrors, st.ChangesDropped)
			}
			if tt.timeout < tt.down && st.InstancesGone == 0 {
				t.Error("instance 0 dropped no instance during an outage longer than Timeout")
			}
		})
	}
}

// TestOrdering: a hint that comes after the change it repeats, or a
// later one, is skipped; so is a dump's peer that left after the dump
// was made. What is newer is applied.
func TestOrdering(t *testing.T) {
	ih := bittorrent.InfoHash{14}
	x := instanceID(7)
	numbered := func(seq uint64, o op) []byte { return appendChange(appendSeq(nil, seq), ih, pid(1), o, false) }
	dump := func(asOf uint64) []byte {
		return appendChange(appendSeqKind(nil, kindDump, asOf), ih, pid(1), opAnnounce, false)
	}
	hint := func(seq uint64) []byte { return appendHint(nil, ih, pid(1), opAnnounce, false, seq) }
	tests := []struct {
		name      string
		frames    [][]byte
		wantPeer  bool
		wantStale uint64
	}{
		{"hint first", [][]byte{hint(5), numbered(5, opAnnounce)}, true, 0},
		{"hint after its change and a leave", [][]byte{numbered(5, opAnnounce), numbered(6, opLeave), hint(5)}, false, 1},
		{"hint newer than the leave", [][]byte{numbered(6, opLeave), hint(7)}, true, 0},
		{"dump after a later leave", [][]byte{numbered(5, opAnnounce), numbered(10, opLeave), dump(9)}, false, 1},
		{"dump made after the leave", [][]byte{numbered(10, opLeave), dump(11)}, true, 0},
		{"dump before the leave", [][]byte{dump(9), numbered(10, opLeave)}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := fleettest.NewBus(1)
			b := startNode(t, bus, 1, testOptions(), nil)
			hello(t, bus, b, x)
			for _, f := range tt.frames {
				inject(t, bus, b, x, f)
			}
			if _, ok := b.mem.Lookup(ih, pid(1)); ok != tt.wantPeer {
				t.Errorf("peer there: %v, want %v", ok, tt.wantPeer)
			}
			if st := b.Stats(); st.Stale != tt.wantStale {
				t.Errorf("Stale %d, want %d", st.Stale, tt.wantStale)
			}
		})
	}
}

// TestGhostHealed: a remote peer whose leave was lost is removed once a
// message to it reaches its instance, which says it left.
func TestGhostHealed(t *testing.T) {
	_, nodes := newFleet(t, 2, testOptions())
	a, b := nodes[0], nodes[1]
	ih := bittorrent.InfoHash{15}
	cq := &conn{}
	announce(t, b.Registry, ih, pid(2), cq, bittorrent.EventStarted, false, 0)
	eventually(t, "a has b's peer", func() bool { return peers(a.Registry, ih) == 1 })
	b.link.muted.Store(true) // the leave is lost
	b.Leave(ih, pid(2), cq)
	eventually(t, "leave sent and lost", func() bool { return b.Stats().ChangesSent == 2 })
	b.link.muted.Store(false)
	if peers(a.Registry, ih) != 1 {
		t.Fatal("a lost the peer though its leave was lost")
	}
	to := announce(t, a.Registry, ih, pid(1), &conn{}, bittorrent.EventStarted, false, 1)
	if len(to) != 1 || !to[0].Send([]byte("offer")) {
		t.Fatalf("picked %v", to)
	}
	eventually(t, "ghost removed from a", func() bool {
		_, ok := a.mem.Lookup(ih, pid(2))
		return !ok && a.Stats().RemotePeers == 0
	})
	if st := b.Stats(); st.Undeliverable != 1 || st.Delivered != 0 {
		t.Errorf("b: Undeliverable %d, Delivered %d; want 1, 0", st.Undeliverable, st.Delivered)
	}
}
