package memory

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/snapshot"
	"trackd/store"
)

func snapPeer(i int, v6 bool) bittorrent.Peer {
	var id bittorrent.PeerID
	copy(id[:], fmt.Sprintf("-SN0001-%012d", i))
	a := netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)})
	if v6 {
		a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
	}
	return bittorrent.Peer{ID: id, Addr: netip.AddrPortFrom(a, uint16(2000+i))}
}

func dumpAll(t *testing.T, s *Store) []snapshot.Swarm {
	t.Helper()
	var out []snapshot.Swarm
	err := s.Dump(func(sw *snapshot.Swarm) error {
		c := *sw
		c.Peers = slices.Clone(sw.Peers)
		out = append(out, c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func scrapeMap(t *testing.T, s *Store) map[bittorrent.InfoHash]bittorrent.Stats {
	t.Helper()
	m := map[bittorrent.InfoHash]bittorrent.Stats{}
	if err := s.ScrapeAll(context.Background(), func(h bittorrent.InfoHash, st bittorrent.Stats) error { m[h] = st; return nil }); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSnapshotRoundTrip: what Dump gives, restored into a new store, makes
// the same swarms: counts, download counters (also of a swarm without
// peers), roles, ids, completed flags (a second completed is not a second
// download), IPv6, expiry times.
func TestSnapshotRoundTrip(t *testing.T) {
	for _, ids := range []bool{false, true} {
		t.Run(fmt.Sprintf("ids=%v", ids), func(t *testing.T) {
			clk := newFakeClock()
			opts := store.Options{PeerLifetime: time.Hour, PeerIDs: ids, Now: clk.Now}
			a := NewWithConfig(opts, Config{SweepInterval: -1})
			defer a.Close()
			ctx := context.Background()
			h1, h2, h3 := bittorrent.InfoHash{1}, bittorrent.InfoHash{2}, bittorrent.InfoHash{3}
			for i := range 700 { // big enough for an IPv4 index
				a.Announce(ctx, store.Announce{InfoHash: h1, Peer: snapPeer(i, i%5 == 0), Seeder: i%3 == 0}, nil)
			}
			a.Announce(ctx, store.Announce{InfoHash: h1, Peer: snapPeer(1, false), Event: bittorrent.EventCompleted, Seeder: true}, nil)
			a.Announce(ctx, store.Announce{InfoHash: h2, Peer: snapPeer(9, true), Event: bittorrent.EventCompleted, Seeder: true}, nil)
			a.Announce(ctx, store.Announce{InfoHash: h2, Peer: snapPeer(9, true), Event: bittorrent.EventStopped}, nil)
			clk.Advance(10 * time.Minute)
			a.Announce(ctx, store.Announce{InfoHash: h3, Peer: snapPeer(3, false)}, nil) // expires 10 min after the others

			dump := dumpAll(t, a)
			want, wantTot := scrapeMap(t, a), mustTotals(t, a)

			clk.Advance(time.Minute) // the restart
			b := NewWithConfig(opts, Config{SweepInterval: -1})
			defer b.Close()
			for k := range dump {
				if err := b.Restore(&dump[k]); err != nil {
					t.Fatal(err)
				}
			}
			if got := scrapeMap(t, b); !mapsEqual(got, want) {
				t.Errorf("restored scrape %v, want %v", got, want)
			}
			if got := mustTotals(t, b); got != wantTot {
				t.Errorf("restored totals %+v, want %+v", got, wantTot)
			}
			if want[h2] != (bittorrent.Stats{Downloaded: 1}) {
				t.Errorf("swarm without peers: %+v", want[h2])
			}
			// completed again from the session that completed: no second download
			_, st, _ := b.Announce(ctx, store.Announce{InfoHash: h1, Peer: snapPeer(1, false), Event: bittorrent.EventCompleted, Seeder: true}, nil)
			if st.Downloaded != 1 {
				t.Errorf("completed flag lost: downloaded %d after a repeated completed", st.Downloaded)
			}
			// ids come back, when kept
			peers, _, _ := b.Announce(ctx, store.Announce{InfoHash: h3, Peer: snapPeer(99, false), NumWant: 5}, nil)
			if len(peers) != 1 || peers[0].Addr != snapPeer(3, false).Addr {
				t.Fatalf("peers of h3: %v", peers)
			}
			if wantID := snapPeer(3, false).ID; ids && peers[0].ID != wantID || !ids && peers[0].ID != (bittorrent.PeerID{}) {
				t.Errorf("id %q after restore (ids kept: %v)", peers[0].ID, ids)
			}
			// expiry times survive: the first 700 expire an hour after
			// their announce (but peer 1, which announced again above),
			// h3's peer 10 minutes later
			clk.Advance(49*time.Minute + time.Second)
			got := scrapeMap(t, b)
			if got[h1].Seeders+got[h1].Leechers != 1 || got[h3].Leechers != 2 {
				t.Errorf("after the first peers' lifetime: h1 %+v, h3 %+v", got[h1], got[h3])
			}
		})
	}
}

func mustTotals(t *testing.T, s *Store) store.Totals {
	t.Helper()
	tot, err := s.Totals(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tot
}

func mapsEqual(a, b map[bittorrent.InfoHash]bittorrent.Stats) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestRestoreDropsExpired: peers whose lifetime passed while trackd was
// down are not restored; a swarm left with neither peers nor downloads is
// not created.
func TestRestoreDropsExpired(t *testing.T) {
	clk := newFakeClock()
	opts := store.Options{PeerLifetime: time.Hour, Now: clk.Now}
	s := NewWithConfig(opts, Config{SweepInterval: -1})
	defer s.Close()
	now := clk.Now()
	snap := snapshot.Swarm{InfoHash: bittorrent.InfoHash{7}, Peers: []snapshot.Peer{
		{Addr: snapPeer(1, false).Addr, Expires: now.Add(-time.Second)},
		{Addr: snapPeer(2, true).Addr, Expires: now.Add(30 * time.Minute), Seeder: true},
		{Addr: snapPeer(3, false).Addr, Expires: now.Add(48 * time.Hour)}, // cut back to the lifetime
	}}
	if err := s.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	if got := scrapeMap(t, s); got[snap.InfoHash] != (bittorrent.Stats{Seeders: 1, Leechers: 1}) {
		t.Errorf("restored %+v", got)
	}
	if tot := mustTotals(t, s); tot != (store.Totals{Torrents: 1, Seeders: 1, Leechers: 1, Seeders6: 1}) {
		t.Errorf("totals %+v", tot)
	}
	clk.Advance(time.Hour + time.Second)
	if got := scrapeMap(t, s); len(got) != 0 {
		t.Errorf("after the lifetime: %v", got)
	}
	if n := s.Expired(); n != 2 {
		t.Errorf("Expired() = %d, want 2", n)
	}
	dead := snapshot.Swarm{InfoHash: bittorrent.InfoHash{8}, Peers: []snapshot.Peer{{Addr: snapPeer(1, false).Addr, Expires: now}}}
	s.Restore(&dead)
	if got := scrapeMap(t, s); len(got) != 0 {
		t.Errorf("a swarm of expired peers was created: %v", got)
	}
}

// TestSnapshotUnderLoad writes snapshots to a file while announces run
// (under -race in CI), then restores the last one: every restored count is
// what the file holds, and nothing is lost or torn.
func TestSnapshotUnderLoad(t *testing.T) {
	opts := store.Options{PeerLifetime: time.Hour, PeerIDs: true}
	s := New(opts)
	defer s.Close()
	path := filepath.Join(t.TempDir(), "state.snap")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []bittorrent.Peer
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				a := store.Announce{InfoHash: bittorrent.InfoHash{byte(i % 50), byte(w)}, Peer: snapPeer(i%3000, i%7 == 0), Seeder: i%2 == 0, NumWant: 10}
				if i%11 == 0 {
					a.Event = bittorrent.EventCompleted
				}
				if i%13 == 0 {
					a.Event = bittorrent.EventStopped
				}
				buf, _, _ = s.Announce(context.Background(), a, buf[:0])
			}
		}()
	}
	var info snapshot.Info
	for range 5 {
		var err error
		info, err = snapshot.Write(path, snapshot.FlagPeerIDs, func(put func(*snapshot.Swarm) error) error { return s.Dump(put) })
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	b := New(opts)
	defer b.Close()
	var peers, downloads uint64
	read, err := snapshot.Read(path, func(sw *snapshot.Swarm) error {
		peers += uint64(len(sw.Peers))
		downloads += uint64(sw.Downloaded)
		return b.Restore(sw)
	})
	if err != nil {
		t.Fatal(err)
	}
	if read.Swarms != info.Swarms || read.Peers != info.Peers || peers != info.Peers {
		t.Fatalf("wrote %+v, read %+v", info, read)
	}
	tot := mustTotals(t, b)
	var got uint64
	for _, st := range scrapeMap(t, b) {
		got += uint64(st.Downloaded)
	}
	if tot.Peers() != peers || got != downloads || peers == 0 {
		t.Errorf("restored %d peers and %d downloads, the file has %d and %d", tot.Peers(), got, peers, downloads)
	}
}

// DumpMarked dumps what Dump does, and calls mark before the swarms of
// each shard.
func TestDumpMarked(t *testing.T) {
	s := New(store.Options{PeerLifetime: time.Hour})
	defer s.Close()
	ctx := context.Background()
	for i := range 500 {
		h := bittorrent.InfoHash{byte(i), byte(i >> 8), 1}
		if _, _, err := s.Announce(ctx, store.Announce{InfoHash: h, Peer: bittorrent.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 1)}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	var want, got int
	s.Dump(func(*snapshot.Swarm) error { want++; return nil })
	marks := 0
	err := s.DumpMarked(func() { marks++ }, func(*snapshot.Swarm) error {
		if marks == 0 {
			t.Fatal("a swarm before the first mark")
		}
		got++
		return nil
	})
	if err != nil || got != want || want != 500 || marks < 2 || marks > got {
		t.Fatalf("DumpMarked: %d swarms of %d, %d marks, err %v", got, want, marks, err)
	}
}
