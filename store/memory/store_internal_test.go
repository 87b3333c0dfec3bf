package memory

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/store"
)

// TestMemoryBounded has peers come and go for a long time and checks that
// the store's memory follows its population, and goes back to nothing when
// it is empty: free blocks are reused, regions compacted, large blocks
// unmapped.
func TestMemoryBounded(t *testing.T) {
	for _, ids := range []bool{false, true} {
		clock := newFakeClock()
		s := NewWithConfig(store.Options{PeerLifetime: 10 * time.Minute, PeerIDs: ids, Now: clock.Now}, Config{Shards: 4, SweepInterval: -1})
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(1, 1))
		announce := func(n int, event bittorrent.Event) {
			// Torrent 0 is big (a few large blocks), the others small.
			torrent := 0
			if n%3 != 0 {
				torrent = 1 + n%500
			}
			addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}), 1)
			if n%7 == 0 {
				addr = netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 13: byte(n >> 16), 14: byte(n >> 8), 15: byte(n)}), 1)
			}
			a := store.Announce{InfoHash: bittorrent.InfoHash{byte(torrent), byte(torrent >> 8)}, Peer: bittorrent.Peer{Addr: addr}, Event: event, Seeder: n%4 != 0}
			if _, _, err := s.Announce(ctx, a, nil); err != nil {
				t.Fatal(err)
			}
		}
		// 30,000 peers, then churn: each round a random tenth leaves and as
		// many new ones join.
		const pop = 30000
		live := make([]int, pop)
		for i := range live {
			live[i] = i
			announce(i, bittorrent.EventStarted)
		}
		_, held0 := s.memoryUsage()
		next := pop
		for round := range 30 {
			for range pop / 10 {
				j := rng.IntN(pop)
				announce(live[j], bittorrent.EventStopped)
				live[j] = next
				announce(next, bittorrent.EventStarted)
				next++
			}
			inUse, held := s.memoryUsage()
			if u := s.MemoryUsage(); u.Held != held || u.Bytes > inUse+int64(len(s.shards))*pageSize || u.Bytes <= 0 {
				t.Fatalf("ids %v, round %d: MemoryUsage says %+v, the shards hold %d, %d in use", ids, round, u, held, inUse)
			}
			if tot, _ := s.Totals(ctx); tot.Peers() != pop {
				t.Fatalf("ids %v, round %d: %d peers, want %d", ids, round, tot.Peers(), pop)
			}
			if held > held0*5/4+int64(len(s.shards))*pageSize || held > inUse*3/2 {
				t.Fatalf("ids %v, round %d: %d bytes held for %d in use (%d after the fill)", ids, round, held, inUse, held0)
			}
		}
		clock.Advance(11 * time.Minute)
		if tot, _ := s.Totals(ctx); tot != (store.Totals{}) {
			t.Errorf("ids %v: totals %+v after everyone expired", ids, tot)
		}
		if inUse, held := s.memoryUsage(); inUse != 0 || held != 0 {
			t.Errorf("ids %v: %d bytes in use, %d held after everyone expired", ids, inUse, held)
		}
		if u := s.MemoryUsage(); u.Bytes != 0 || u.Held != 0 {
			t.Errorf("ids %v: MemoryUsage says %+v after everyone expired", ids, u)
		}
		s.Close()
	}
}

// TestClose checks that a closed store refuses requests rather than touch
// the memory it gave back, and that Close may be called twice.
func TestClose(t *testing.T) {
	s := New(store.Options{PeerLifetime: time.Minute})
	ctx := context.Background()
	a := store.Announce{InfoHash: bittorrent.InfoHash{1}, Peer: bittorrent.Peer{Addr: netip.MustParseAddrPort("192.0.2.1:1")}, NumWant: 10}
	if _, _, err := s.Announce(ctx, a, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Announce(ctx, a, nil); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Announce after Close: %v, want store.ErrClosed", err)
	}
	if _, err := s.Scrape(ctx, []bittorrent.InfoHash{{1}}, nil); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Scrape after Close: %v, want store.ErrClosed", err)
	}
	if err := s.ScrapeAll(ctx, func(bittorrent.InfoHash, bittorrent.Stats) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("ScrapeAll after Close: %v, want store.ErrClosed", err)
	}
	if _, err := s.Totals(ctx); err != nil {
		t.Errorf("Totals after Close: %v", err)
	}
}

func TestInvalidAddr(t *testing.T) {
	s := New(store.Options{PeerLifetime: time.Minute})
	defer s.Close()
	_, _, err := s.Announce(context.Background(), store.Announce{}, nil)
	if err == nil {
		t.Error("announce without an address succeeded")
	}
}

// TestReannounceAllocs checks that a re-announce of a known peer allocates
// nothing when the caller's slice has room, with and without ids.
func TestReannounceAllocs(t *testing.T) {
	// 200 peers: picked one by one; 3000: in runs (runMin).
	for _, tc := range []struct {
		ids bool
		n   int
	}{{false, 200}, {true, 200}, {false, 3000}, {true, 3000}} {
		ids := tc.ids
		s := New(store.Options{PeerLifetime: time.Hour, PeerIDs: ids})
		ctx := context.Background()
		h := bittorrent.InfoHash{9}
		for i := range tc.n {
			addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 1)
			if i%5 == 0 {
				addr = netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 14: byte(i >> 8), 15: byte(i)}), 1)
			}
			s.Announce(ctx, store.Announce{InfoHash: h, Peer: bittorrent.Peer{Addr: addr}, Seeder: i%4 != 0}, nil)
		}
		buf := make([]bittorrent.Peer, 0, 50)
		for _, addr := range []string{"10.0.0.1:1", "10.0.0.4:1", "[2000::5]:1"} {
			for _, seeder := range []bool{false, true} {
				a := store.Announce{InfoHash: h, Peer: bittorrent.Peer{Addr: netip.MustParseAddrPort(addr)}, Seeder: seeder, NumWant: 50}
				s.Announce(ctx, a, buf)
				allocs := testing.AllocsPerRun(1000, func() {
					buf, _, _ = s.Announce(ctx, a, buf[:0])
				})
				if allocs != 0 {
					t.Errorf("ids %v, %d peers: re-announce of %s (seeder %v): %v allocations", ids, tc.n, addr, seeder, allocs)
				}
			}
		}
		s.Close()
	}
}
