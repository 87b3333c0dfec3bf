package memory

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/store"
)

// boundHash is the info hash of torrent i of a bound test.
func boundHash(batch, i int) bittorrent.InfoHash {
	return bittorrent.InfoHash{0: 0xb0, 1: byte(batch), 2: byte(batch >> 8), 3: byte(i), 4: byte(i >> 8), 5: byte(i >> 16)}
}

func boundPeer(i int, port uint16) bittorrent.Peer {
	return bittorrent.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), port)}
}

// TestMemoryLimitShed fills a store past the high-water mark with torrents
// of one peer made second after second, a few swarms of three peers and a
// few torrents with a download count and no peer left, and checks that
// shed evicts the torrents without a peer, then the single-peer torrents
// oldest first, and no swarm of more than one peer, down below the
// high-water mark.
func TestMemoryLimitShed(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		clock := newFakeClock()
		s := NewWithConfig(store.Options{PeerLifetime: 10 * time.Minute, Now: clock.Now}, Config{Shards: 8, SweepInterval: -1})
		ctx := context.Background()
		announce := func(h bittorrent.InfoHash, p bittorrent.Peer, ev bittorrent.Event) {
			t.Helper()
			if v6 && p.Addr.Addr().Is4() {
				b := p.Addr.Addr().As4()
				p.Addr = netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 12: b[0], 13: b[1], 14: b[2], 15: b[3]}), p.Addr.Port())
			}
			if _, _, err := s.Announce(ctx, store.Announce{InfoHash: h, Peer: p, Event: ev}, nil); err != nil {
				t.Fatal(err)
			}
		}
		const swarms, batches, perBatch, dead = 50, 20, 1000, 100
		for i := range swarms {
			for k := range 3 {
				announce(boundHash(0xffff, i), boundPeer(i, uint16(1+k)), bittorrent.EventStarted)
			}
		}
		for b := range batches {
			clock.Advance(time.Second)
			for i := range perBatch {
				announce(boundHash(b, i), boundPeer(i, 7), bittorrent.EventStarted)
			}
		}
		// The newest: a download counted, then the peer left.
		for i := range dead {
			announce(boundHash(0xfffe, i), boundPeer(i, 9), bittorrent.EventCompleted)
			announce(boundHash(0xfffe, i), boundPeer(i, 9), bittorrent.EventStopped)
		}
		held := s.MemoryUsage().Bytes
		limit := held * 100 / 92 // above the high-water mark (90%)
		s.SetMemoryLimit(limit)
		now := s.nowSec()
		s.shed(now)

		u := s.MemoryUsage()
		if u.Bytes >= limit/10*9 || u.Evicted == 0 || !u.Shedding || u.Limit != limit {
			t.Fatalf("v6 %v: after shed %+v, want under %d (90%% of the limit), some evicted, shedding", v6, u, limit/10*9)
		}
		scrape := func(h bittorrent.InfoHash) bittorrent.Stats {
			st, err := s.Scrape(ctx, []bittorrent.InfoHash{h}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return st[0]
		}
		for i := range swarms {
			if st := scrape(boundHash(0xffff, i)); st.Seeders+st.Leechers != 3 {
				t.Fatalf("v6 %v: swarm %d of 3 peers has %+v after shed", v6, i, st)
			}
		}
		for i := range dead {
			if st := scrape(boundHash(0xfffe, i)); st.Downloaded != 0 {
				t.Fatalf("v6 %v: torrent %d without peers was kept (%+v), newer single-peer ones evicted instead", v6, i, st)
			}
		}
		// Oldest first: batches before the cut are gone, those after it
		// whole; the cut's batch may be in part.
		var gone uint64 = dead
		cut := -1
		for b := range batches {
			present := 0
			for i := range perBatch {
				if st := scrape(boundHash(b, i)); st.Seeders+st.Leechers == 1 {
					present++
				}
			}
			gone += uint64(perBatch - present)
			switch {
			case cut < 0 && present > 0:
				cut = b
			case cut >= 0 && present != perBatch:
				t.Fatalf("v6 %v: batch %d has %d of %d torrents after batch %d was kept: not oldest first", v6, b, present, perBatch, cut)
			}
		}
		if cut <= 0 {
			t.Fatalf("v6 %v: cut at batch %d: nothing or everything evicted", v6, cut)
		}
		if u.Evicted != gone {
			t.Errorf("v6 %v: %d evictions counted, %d torrents gone", v6, u.Evicted, gone)
		}
		tot, _ := s.Totals(ctx)
		if want := uint64(swarms + batches*perBatch + dead - int(gone)); tot.Torrents != want || tot.Peers() != 3*swarms+want-swarms {
			t.Errorf("v6 %v: totals %+v, want %d torrents", v6, tot, want)
		}
		if v6 && tot.Seeders6+tot.Leechers6 != tot.Peers() {
			t.Errorf("v6 %v: totals %+v: IPv6 peers miscounted", v6, tot)
		}
		if _, held := s.memoryUsage(); held != s.MemoryUsage().Held {
			t.Errorf("v6 %v: MemoryUsage says %d bytes held, the shards hold %d", v6, s.MemoryUsage().Held, held)
		}
		// Below the mark, shed leaves the store alone.
		before := s.MemoryUsage().Evicted
		s.shed(now)
		if after := s.MemoryUsage().Evicted; after != before {
			t.Errorf("v6 %v: shed under the high-water mark evicted %d", v6, after-before)
		}
		s.Close()
	}
}

// TestMemoryLimitShedNothingToEvict: above the high-water mark with only
// swarms of two peers, shed evicts nothing and the store does not say it
// is shedding (it refuses nothing yet either).
func TestMemoryLimitShedNothingToEvict(t *testing.T) {
	clock := newFakeClock()
	s := NewWithConfig(store.Options{PeerLifetime: 10 * time.Minute, Now: clock.Now}, Config{Shards: 8, SweepInterval: -1})
	defer s.Close()
	ctx := context.Background()
	for i := range 2000 {
		for k := range 2 {
			if _, _, err := s.Announce(ctx, store.Announce{InfoHash: boundHash(1, i), Peer: boundPeer(i, uint16(1+k))}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	limit := s.MemoryUsage().Bytes * 100 / 92 // above the high-water mark
	s.SetMemoryLimit(limit)
	s.shed(s.nowSec())
	if u := s.MemoryUsage(); u.Evicted != 0 || u.Shedding {
		t.Errorf("after shed with no single-peer torrent: %+v, want nothing evicted and not shedding", u)
	}
}

// TestMemoryLimitRefuse checks the refusals near the bound: from 95% a new
// torrent is refused and a known one still takes new peers; at the bound a
// new peer is refused too; re-announces, stops and scrapes always work.
func TestMemoryLimitRefuse(t *testing.T) {
	clock := newFakeClock()
	s := NewWithConfig(store.Options{PeerLifetime: 10 * time.Minute, Now: clock.Now}, Config{Shards: 4, SweepInterval: -1})
	defer s.Close()
	ctx := context.Background()
	ann := func(h bittorrent.InfoHash, p bittorrent.Peer, ev bittorrent.Event) (bittorrent.Stats, error) {
		_, st, err := s.Announce(ctx, store.Announce{InfoHash: h, Peer: p, Event: ev}, nil)
		return st, err
	}
	for i := range 5000 {
		if _, err := ann(boundHash(1, i), boundPeer(i, 7), 0); err != nil {
			t.Fatal(err)
		}
	}
	known := boundHash(1, 0)
	a := boundPeer(0, 7)
	newTorrent := boundHash(2, 0)

	s.SetMemoryLimit(s.MemoryUsage().Bytes * 100 / 97) // at 97%
	if _, err := ann(newTorrent, a, bittorrent.EventStarted); !errors.Is(err, store.ErrNoNewTorrents) {
		t.Fatalf("new torrent at 97%% of the bound: err %v, want ErrNoNewTorrents", err)
	}
	if st, err := ann(known, boundPeer(1, 8), bittorrent.EventStarted); err != nil || st.Leechers != 2 {
		t.Fatalf("new peer of a known torrent at 97%%: %+v, %v", st, err)
	}
	if st := s.MemoryUsage(); st.Refused != 1 || !st.Shedding {
		t.Fatalf("usage %+v: want 1 refused, shedding", st)
	}

	s.SetMemoryLimit(s.MemoryUsage().Bytes) // at the bound
	if _, err := ann(known, boundPeer(2, 8), bittorrent.EventStarted); !errors.Is(err, store.ErrNoNewPeers) {
		t.Fatalf("new peer at the bound: err %v, want ErrNoNewPeers", err)
	}
	if _, err := ann(boundHash(3, 0), a, 0); !errors.Is(err, store.ErrNoNewTorrents) {
		t.Fatalf("new torrent at the bound: err %v, want ErrNoNewTorrents", err)
	}
	if st, err := ann(known, a, bittorrent.EventCompleted); err != nil || st.Leechers != 2 || st.Downloaded != 1 {
		t.Fatalf("re-announce at the bound: %+v, %v", st, err)
	}
	if st, err := ann(known, boundPeer(1, 8), bittorrent.EventStopped); err != nil || st.Leechers != 1 {
		t.Fatalf("stop at the bound: %+v, %v", st, err)
	}
	if st, err := s.Scrape(ctx, []bittorrent.InfoHash{known, newTorrent}, nil); err != nil || st[0].Leechers != 1 || st[1] != (bittorrent.Stats{}) {
		t.Fatalf("scrape at the bound: %+v, %v", st, err)
	}
	if st := s.MemoryUsage(); st.Refused != 3 {
		t.Fatalf("usage %+v: want 3 refused", st)
	}
	if tot, _ := s.Totals(ctx); tot.Torrents != 5000 || tot.Peers() != 5000 {
		t.Fatalf("totals %+v after refusals, want 5000 torrents of one peer", tot)
	}

	s.SetMemoryLimit(0)
	if _, err := ann(newTorrent, a, bittorrent.EventStarted); err != nil {
		t.Fatalf("new torrent without a bound: %v", err)
	}
	clock.Advance(shedLinger * time.Second)
	if s.MemoryUsage().Shedding {
		t.Errorf("still shedding %v after the last refusal", shedLinger*time.Second)
	}
}

// TestMemoryLimitSweeper checks that the background sweeper sheds.
func TestMemoryLimitSweeper(t *testing.T) {
	s := NewWithConfig(store.Options{PeerLifetime: 10 * time.Minute}, Config{Shards: 8, SweepInterval: 10 * time.Millisecond})
	defer s.Close()
	for i := range 20000 {
		if _, _, err := s.Announce(context.Background(), store.Announce{InfoHash: boundHash(1, i), Peer: boundPeer(i, 7)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	s.SetMemoryLimit(s.MemoryUsage().Bytes * 100 / 95)
	for deadline := time.Now().Add(10 * time.Second); s.MemoryUsage().Evicted == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("nothing evicted within 10s: %+v", s.MemoryUsage())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkShed measures one pass of shed over a store of 1,000,000
// torrents of one peer, made over 100 seconds, with its bound set so that
// the store is at 92%: it evicts the oldest to get back to 80%, about
// 130,000 torrents.
func BenchmarkShed(b *testing.B) {
	const n = 1_000_000
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		clock := newFakeClock()
		s := NewWithConfig(store.Options{PeerLifetime: 30 * time.Minute, Now: clock.Now}, Config{SweepInterval: -1})
		for i := range n {
			if i%(n/100) == 0 {
				clock.Advance(time.Second)
			}
			if _, _, err := s.Announce(ctx, store.Announce{InfoHash: boundHash(i>>24, i), Peer: boundPeer(i, 7)}, nil); err != nil {
				b.Fatal(err)
			}
		}
		s.SetMemoryLimit(s.MemoryUsage().Bytes * 100 / 92)
		b.StartTimer()
		s.shed(s.nowSec())
		b.StopTimer()
		b.ReportMetric(float64(s.MemoryUsage().Evicted), "evicted")
		s.Close()
		b.StartTimer()
	}
}
