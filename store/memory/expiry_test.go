package memory

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/store"
)

// TestExpiryRounding checks that expiry is rounded up to whole seconds: a
// peer never expires before its lifetime, and at most a second after.
func TestExpiryRounding(t *testing.T) {
	for _, lifetime := range []time.Duration{10 * time.Second, MaxPeerLifetime} {
		clock := newFakeClock()
		s := NewWithConfig(store.Options{PeerLifetime: lifetime, Now: clock.Now}, Config{SweepInterval: -1})
		ctx := context.Background()
		h := bittorrent.InfoHash{7}
		clock.Advance(300 * time.Millisecond)
		p := bittorrent.Peer{Addr: netip.MustParseAddrPort("192.0.2.1:1")}
		s.Announce(ctx, store.Announce{InfoHash: h, Peer: p}, nil)
		clock.Advance(lifetime - time.Nanosecond)
		if st, _ := s.Scrape(ctx, []bittorrent.InfoHash{h}, nil); st[0].Leechers != 1 {
			t.Errorf("lifetime %v: peer expired before its lifetime", lifetime)
		}
		clock.Advance(time.Second + time.Nanosecond)
		if st, _ := s.Scrape(ctx, []bittorrent.InfoHash{h}, nil); st[0].Leechers != 0 {
			t.Errorf("lifetime %v: peer alive a second after its lifetime", lifetime)
		}
		s.Close()
	}
}

// TestLifetimeBounds checks that New takes lifetimes up to MaxPeerLifetime
// and no more.
func TestLifetimeBounds(t *testing.T) {
	for _, tt := range []struct {
		lifetime time.Duration
		ok       bool
	}{
		{time.Nanosecond, true}, {35 * time.Minute, true}, {MaxPeerLifetime, true},
		{0, false}, {-time.Second, false}, {MaxPeerLifetime + time.Nanosecond, false},
	} {
		func() {
			defer func() {
				if r := recover(); (r == nil) != tt.ok {
					t.Errorf("New with PeerLifetime %v: panic %v", tt.lifetime, r)
				}
			}()
			New(store.Options{PeerLifetime: tt.lifetime}).Close()
		}()
	}
}

// TestSweeper checks that the background sweeper frees expired peers and
// empty swarms without any request, and keeps swarms with downloads.
func TestSweeper(t *testing.T) {
	clock := newFakeClock()
	s := NewWithConfig(store.Options{PeerLifetime: time.Minute, Now: clock.Now}, Config{Shards: 16, SweepInterval: time.Millisecond})
	defer s.Close()
	ctx := context.Background()
	for i := range 100 {
		a := store.Announce{InfoHash: bittorrent.InfoHash{byte(i)}, Peer: bittorrent.Peer{Addr: netip.MustParseAddrPort("192.0.2.1:1")}}
		if i%10 == 0 {
			a.Event = bittorrent.EventCompleted
		}
		s.Announce(ctx, a, nil)
	}
	clock.Advance(2 * time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, empty := 0, 0
		for i := range s.shards {
			sh := &s.shards[i]
			sh.mu.Lock()
			for j := range sh.swarms.slots(sh) {
				if sw := &sh.swarms.slots(sh)[j]; sw.minExp != 0 {
					n++
					if sh.numPeers(sw) == 0 {
						empty++
					}
				}
			}
			sh.mu.Unlock()
		}
		if n == 10 && empty == 10 && s.sweptThrough.Load() >= s.nowSec() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sweeper left %d swarms, %d of them empty; want the 10 with downloads, empty", n, empty)
		}
		time.Sleep(time.Millisecond)
	}
	if tot, _ := s.Totals(ctx); tot != (store.Totals{}) {
		t.Errorf("totals %+v after the sweep", tot)
	}
}

// TestTotalsSweeps checks that Totals drops expired peers itself when no
// sweeper has, and frees their swarms and memory.
func TestTotalsSweeps(t *testing.T) {
	clock := newFakeClock()
	s := NewWithConfig(store.Options{PeerLifetime: time.Minute, Now: clock.Now}, Config{Shards: 8, SweepInterval: -1})
	defer s.Close()
	ctx := context.Background()
	for i := range 1000 {
		h := bittorrent.InfoHash{byte(i), byte(i >> 8)}
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i % 7)}), 1)
		s.Announce(ctx, store.Announce{InfoHash: h, Peer: bittorrent.Peer{Addr: addr}, Seeder: i%4 != 0}, nil)
	}
	if tot, _ := s.Totals(ctx); tot != (store.Totals{Torrents: 1000, Seeders: 750, Leechers: 250}) {
		t.Errorf("totals %+v", tot)
	}
	clock.Advance(61 * time.Second)
	if tot, _ := s.Totals(ctx); tot != (store.Totals{}) {
		t.Errorf("totals %+v after expiry", tot)
	}
	for i := range s.shards {
		sh := &s.shards[i]
		if sh.swarms.n != 0 || sh.swarms.h != 0 {
			t.Errorf("shard %d keeps %d swarms", i, sh.swarms.n)
		}
	}
	if inUse, _ := s.memoryUsage(); inUse != 0 {
		t.Errorf("%d bytes in use in an empty store", inUse)
	}
}

// TestTotalsLeavesSweepingToSweeper checks that Totals, asked on every
// announce, does not sweep the store on the request path while the
// background sweeper keeps up, and that the sweeper then brings it to the
// exact counts.
func TestTotalsLeavesSweepingToSweeper(t *testing.T) {
	clock := newFakeClock()
	s := NewWithConfig(store.Options{PeerLifetime: time.Minute, Now: clock.Now}, Config{Shards: 8, SweepInterval: 50 * time.Millisecond})
	defer s.Close()
	ctx := context.Background()
	for i := range 1000 {
		h := bittorrent.InfoHash{byte(i), byte(i >> 8)}
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i % 7)}), 1)
		s.Announce(ctx, store.Announce{InfoHash: h, Peer: bittorrent.Peer{Addr: addr}, Seeder: i%4 != 0}, nil)
	}
	clock.Advance(59 * time.Second)
	s.Totals(ctx) // far behind: Totals catches up itself
	swept := s.sweptThrough.Load()
	if swept != s.nowSec() {
		t.Fatalf("Totals 59 s behind did not sweep: swept through %d, now %d", swept, s.nowSec())
	}
	// The sweeper must not run between the jump and Totals for this check;
	// a Totals that sweeps would wait for the lock: that is a failure too.
	s.sweepMu.Lock()
	clock.Advance(2 * time.Second) // every peer expired, sweeper 2 s behind
	got := make(chan store.Totals, 1)
	go func() { tot, _ := s.Totals(ctx); got <- tot }()
	var tot store.Totals
	select {
	case tot = <-got:
	case <-time.After(5 * time.Second):
		s.sweepMu.Unlock()
		t.Fatal("Totals waited to sweep while the sweeper was 2 s behind")
	}
	s.sweepMu.Unlock()
	if tot.Torrents != 1000 {
		t.Errorf("Totals swept on the request path while the sweeper was %d s behind: %+v", s.nowSec()-swept, tot)
	}
	deadline := time.Now().Add(10 * time.Second)
	for tot != (store.Totals{}) {
		if time.Now().After(deadline) {
			t.Fatalf("sweeper did not bring Totals to zero: %+v", tot)
		}
		time.Sleep(10 * time.Millisecond)
		tot, _ = s.Totals(ctx)
	}
}
