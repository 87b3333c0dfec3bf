package fleet_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/fleet"
	"trackd/fleet/fleettest"
	"trackd/snapshot"
	"trackd/store"
)

// view is an instance's swarms as a join must reproduce them: counts and
// peers (address, role, completed flag, id), expiry aside (each instance
// runs it on its own clock).
type view map[bittorrent.InfoHash]string

func (in *instance) view() view {
	v := make(view)
	in.st.Dump(func(s *snapshot.Swarm) error {
		ps := make([]string, 0, len(s.Peers))
		for _, p := range s.Peers {
			ps = append(ps, fmt.Sprintf("%v/%v/%v/%x", p.Addr, p.Seeder, p.Completed, p.ID))
		}
		slices.Sort(ps)
		v[s.InfoHash] = fmt.Sprintf("downloaded %d peers %v", s.Downloaded, ps)
		return nil
	})
	return v
}

// diff describes how b differs from a, or is "" if it does not.
func diff(a, b view) string {
	for h, s := range a {
		if b[h] != s {
			return fmt.Sprintf("swarm %x: %s, want %s", h[:4], b[h], s)
		}
	}
	for h, s := range b {
		if _, ok := a[h]; !ok {
			return fmt.Sprintf("swarm %x: %s, want none", h[:4], s)
		}
	}
	return ""
}

// quiet waits until no instance of fl has changes waiting to be
// published and none applied any for a while: settle for a fleet with a
// joined instance, which does not replay what its snapshot had.
func quiet(t *testing.T, fl []*instance) {
	t.Helper()
	var last uint64
	still := 0
	eventually(t, "the fleet is quiet", func() bool {
		var applied uint64
		for _, in := range fl {
			s := in.node.Stats()
			if s.PendingBytes != 0 {
				still = 0
				return false
			}
			applied += s.Applied + s.Refused + s.Duplicates
		}
		if applied != last {
			last, still = applied, 0
			return false
		}
		still++
		time.Sleep(20 * time.Millisecond)
		return still >= 5
	})
}

// same waits until every instance of fl has the swarms of fl[0].
func same(t *testing.T, fl []*instance) {
	t.Helper()
	quiet(t, fl)
	var why string
	deadline := time.Now().Add(5 * time.Second)
	for {
		why = ""
		want := fl[0].view()
		for _, in := range fl[1:] {
			if d := diff(want, in.view()); d != "" {
				why = fmt.Sprintf("%s differs from %s: %s", in.name, fl[0].name, d)
				break
			}
		}
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(why)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// population announces to the instances of fl, in turn, n torrents of k
// peers each: IPv4 and IPv6, leechers and seeders, some completed.
func population(t *testing.T, fl []*instance, n, k int) {
	for i := range n {
		h := ih(fmt.Sprintf("torrent %d", i))
		for j := range k {
			p := bittorrent.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), byte(j)}), uint16(1000+j))}
			if j%4 == 3 {
				p.Addr = netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i), 15: byte(j)}), 6881)
			}
			a := store.Announce{InfoHash: h, Peer: p, Event: bittorrent.EventStarted, Seeder: j%3 == 0}
			if j%5 == 1 {
				a.Event, a.Seeder = bittorrent.EventCompleted, true
			}
			announce(t, fl[(i+j)%len(fl)], a)
		}
	}
}

// TestJoin: an instance that joins a fleet gets every swarm (peers,
// roles, downloads), then stays in step.
func TestJoin(t *testing.T) {
	for _, streams := range []int{1, 4} {
		t.Run(fmt.Sprintf("%d streams", streams), func(t *testing.T) {
			bus := fleettest.NewBus(streams)
			su := setup{opts: store.Options{PeerIDs: true}, nodeCfg: fleet.Config{ChunkSize: 1000}}
			fl := startFleet(t, bus, 2, su)
			population(t, fl, 300, 6)
			settle(t, fl)
			su.join = &fleet.JoinConfig{Wait: 5 * time.Second}
			j := start(t, bus, "J", su)
			if j.joinErr != nil {
				t.Fatal(j.joinErr)
			}
			if j.joined.Swarms != 300 || j.joined.Peers != 300*6 || j.joined.Bytes < 10000 {
				t.Errorf("join took %+v, want 300 swarms, 1800 peers in several chunks", j.joined)
			}
			if d := diff(fl[0].view(), j.view()); d != "" {
				t.Fatalf("J right after the join: %s", d)
			}
			donor := fl[0]
			if j.joined.Donor == fl[1].st.Instance() {
				donor = fl[1]
			}
			if s := donor.node.Stats(); s.Donations != 1 || s.LastPause <= 0 {
				t.Errorf("donor stats %+v", s)
			}
			// In step afterwards, whoever takes the announces.
			fl = append(fl, j)
			h := ih("torrent 7")
			p := bittorrent.Peer{Addr: addr("192.0.2.9:9")}
			announce(t, j, store.Announce{InfoHash: h, Peer: p, Event: bittorrent.EventCompleted, Seeder: true})
			announce(t, fl[0], store.Announce{InfoHash: ih("new"), Peer: p})
			announce(t, fl[1], store.Announce{InfoHash: ih("torrent 8"), Peer: bittorrent.Peer{Addr: addr("10.0.1.8:1001")}, Event: bittorrent.EventStopped})
			same(t, fl)
			if st := j.stats(h); st.Downloaded != 2 {
				t.Errorf("torrent 7 counts %d downloads, want 2", st.Downloaded)
			}
			if s := j.node.Stats(); s.Gaps != 0 || s.Garbage != 0 {
				t.Errorf("J stats %+v", s)
			}
		})
	}
}

// TestJoinAlone: with no other instance, Join says so within its wait,
// and the instance reads the streams from their end as without Join.
func TestJoinAlone(t *testing.T) {
	bus := fleettest.NewBus(2)
	a := start(t, bus, "A", setup{join: &fleet.JoinConfig{Wait: 100 * time.Millisecond}})
	if !errors.Is(a.joinErr, fleet.ErrNoDonor) {
		t.Fatalf("Join alone: %v, want ErrNoDonor", a.joinErr)
	}
	b := start(t, bus, "B", setup{join: &fleet.JoinConfig{Wait: 5 * time.Second}})
	if b.joinErr != nil || b.joined.Swarms != 0 {
		t.Fatalf("Join to an empty instance: %+v, %v", b.joined, b.joinErr)
	}
	announce(t, a, store.Announce{InfoHash: ih("x"), Peer: bittorrent.Peer{Addr: addr("10.0.0.1:1")}})
	same(t, []*instance{a, b})
	if st := b.stats(ih("x")); st.Leechers != 1 {
		t.Errorf("B: %+v", st)
	}
}

// TestJoinBusDown: with the Bus down, Join fails at once and the
// instance serves, catching up once the Bus is back.
func TestJoinBusDown(t *testing.T) {
	bus := fleettest.NewBus(1)
	a := start(t, bus, "A", setup{})
	announce(t, a, store.Announce{InfoHash: ih("before"), Peer: bittorrent.Peer{Addr: addr("10.0.0.1:1")}})
	settle(t, []*instance{a})
	bus.SetDown(true)
	began := time.Now()
	done := make(chan *instance)
	go func() {
		done <- start(t, bus, "J", setup{join: &fleet.JoinConfig{Wait: 5 * time.Second}})
	}()
	time.Sleep(100 * time.Millisecond)
	bus.SetDown(false)
	j := <-done
	if !errors.Is(j.joinErr, fleettest.ErrDown) {
		t.Fatalf("Join with the bus down: %v", j.joinErr)
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("Join with the bus down took %v", took)
	}
	announce(t, j, store.Announce{InfoHash: ih("after"), Peer: bittorrent.Peer{Addr: addr("10.0.0.2:1")}})
	announce(t, a, store.Announce{InfoHash: ih("after"), Peer: bittorrent.Peer{Addr: addr("10.0.0.3:1")}})
	eventually(t, "both see both peers of after", func() bool {
		return a.stats(ih("after")).Leechers == 2 && j.stats(ih("after")).Leechers == 2
	})
	if st := j.stats(ih("before")); st.Leechers != 0 {
		t.Errorf("J has a swarm from before it started without a snapshot: %+v", st)
	}
}

// TestJoinUnderLoad: the instances go on announcing (joins, completions,
// moves, stops) while one joins; the donor keeps answering throughout,
// and once the load stops every instance, the joiner too, has the same
// swarms and the same downloads: the exact count of sessions that
// completed.
func TestJoinUnderLoad(t *testing.T) {
	bus := fleettest.NewBus(4)
	su := setup{nodeCfg: fleet.Config{ChunkSize: 4096}}
	fl := startFleet(t, bus, 2, su)
	population(t, fl, 2000, 5)
	settle(t, fl)

	// Sessions 10.9.x.y:port on torrents "load N": each starts on one
	// instance, completes (some announce completed again to the other,
	// as a client that moved), and the last third stop.
	const torrents, sessions = 50, 1500
	var (
		stop       atomic.Bool
		wg         sync.WaitGroup
		mu         sync.Mutex
		completed  = make(map[bittorrent.InfoHash]int)
		maxLatency time.Duration
		failed     atomic.Int64
		done       atomic.Int64
	)
	do := func(in *instance, a store.Announce) {
		t0 := time.Now()
		if _, _, err := in.st.Announce(ctx, a, nil); err != nil {
			failed.Add(1)
		}
		d := time.Since(t0)
		mu.Lock()
		maxLatency = max(maxLatency, d)
		mu.Unlock()
		done.Add(1)
	}
	for w := range 2 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for s := w; s < sessions && !stop.Load(); s += 2 {
				h := ih(fmt.Sprintf("load %d", s%torrents))
				p := bittorrent.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, byte(s >> 8), byte(s)}), 7000)}
				in := fl[r.IntN(2)]
				do(in, store.Announce{InfoHash: h, Peer: p, Event: bittorrent.EventStarted})
				do(in, store.Announce{InfoHash: h, Peer: p, Event: bittorrent.EventCompleted, Seeder: true})
				mu.Lock()
				completed[h]++
				mu.Unlock()
				if s%3 == 2 {
					time.Sleep(time.Millisecond)
					do(in, store.Announce{InfoHash: h, Peer: p, Event: bittorrent.EventStopped})
				}
				if s%50 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	before := done.Load()
	j := start(t, bus, "J", setup{nodeCfg: su.nodeCfg, join: &fleet.JoinConfig{Wait: 5 * time.Second}})
	during := done.Load() - before
	stop.Store(true)
	wg.Wait()
	if j.joinErr != nil {
		t.Fatal(j.joinErr)
	}
	if failed.Load() != 0 || during == 0 || maxLatency > time.Second {
		t.Errorf("%d announces failed, %d made during the join, the slowest took %v", failed.Load(), during, maxLatency)
	}
	fl = append(fl, j)
	same(t, fl)
	for h, n := range completed {
		for _, in := range fl {
			if got := in.stats(h).Downloaded; got != uint32(n) {
				t.Errorf("%s: %x counts %d downloads, want %d", in.name, h[:6], got, n)
			}
		}
	}
	t.Logf("%d announces, %d of them during the join (%v); the slowest %v", done.Load(), during, j.joined.Took, maxLatency)
}
