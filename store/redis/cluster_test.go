package redis

import (
	"context"
	"fmt"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/internal/redistest"
	"trackd/store"
	"trackd/store/storetest"
)

// TestCluster runs against a Redis Cluster of three masters: the
// conformance suite, then announces to torrents spread over every node
// through two instances, whose scrape, full scrape and totals must agree.
func TestCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)

	t.Run("Conformance", func(t *testing.T) {
		n := 0
		storetest.Run(t, func(t *testing.T, opts store.Options) store.Store {
			n++
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := Open(ctx, c.URL(), opts, Options{KeyPrefix: fmt.Sprintf("conformance%d:", n), Timeout: 20 * time.Second})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			return s
		})
	})

	t.Run("Spread", func(t *testing.T) {
		ctx := context.Background()
		clock := newFakeClock()
		opts := store.Options{PeerLifetime: testLifetime, Now: clock.Now, PeerIDs: true}
		ro := Options{KeyPrefix: "spread:", Timeout: 20 * time.Second}
		a, b := open(t, c.URL(), opts, ro), open(t, c.URL(), opts, ro)
		instances := []*Store{a, b}

		const torrents = 400
		hashes := make([]bittorrent.InfoHash, torrents)
		want := make(map[bittorrent.InfoHash]bittorrent.Stats)
		var tot store.Totals
		for i := range hashes {
			h := hashN(i)
			hashes[i] = h
			var st bittorrent.Stats
			var s6, l6 uint64
			peers := i%6 + 1
			for j := range peers {
				s := instances[(i+j)%2]
				a := store.Announce{InfoHash: h, Peer: peerN(i*8+j, j%3 == 1), Seeder: j%2 == 0}
				if j == 0 && i%4 == 0 {
					a.Event = bittorrent.EventCompleted
					st.Downloaded++
				}
				mustAnnounce(t, s, a)
				v6 := j%3 == 1
				if a.Seeder {
					st.Seeders++
					if v6 {
						s6++
					}
				} else {
					st.Leechers++
					if v6 {
						l6++
					}
				}
			}
			if i%10 == 9 { // every peer stops: only the download count stays
				for j := range peers {
					mustAnnounce(t, instances[j%2], store.Announce{InfoHash: h, Peer: peerN(i*8+j, j%3 == 1), Event: bittorrent.EventStopped})
				}
				st.Seeders, st.Leechers, s6, l6 = 0, 0, 0, 0
			}
			if st != (bittorrent.Stats{}) {
				want[h] = st
			}
			if st.Seeders+st.Leechers > 0 {
				tot.Torrents++
			}
			tot.Seeders += uint64(st.Seeders)
			tot.Leechers += uint64(st.Leechers)
			tot.Seeders6 += s6
			tot.Leechers6 += l6
		}

		// A's peers are returned to B.
		peers, _ := mustAnnounce(t, b, store.Announce{InfoHash: hashes[5], Peer: peerN(1<<20, false), NumWant: 50})
		if len(peers) != 6 {
			t.Errorf("B's announce to a torrent of 6 peers got %d", len(peers))
		}
		mustAnnounce(t, b, store.Announce{InfoHash: hashes[5], Peer: peerN(1<<20, false), Event: bittorrent.EventStopped})

		for _, s := range instances {
			got, err := s.Scrape(ctx, hashes, nil)
			if err != nil {
				t.Fatalf("Scrape of %d hashes: %v", len(hashes), err)
			}
			for i, h := range hashes {
				if got[i] != want[h] {
					t.Errorf("Scrape: torrent %d = %+v, want %+v", i, got[i], want[h])
				}
			}
			all := scrapeAll(t, s)
			if len(all) != len(want) {
				t.Errorf("ScrapeAll visited %d torrents, want %d", len(all), len(want))
			}
			for h, w := range want {
				if all[h] != w {
					t.Errorf("ScrapeAll: %v = %+v, want %+v", h, all[h], w)
				}
			}
		}
		if err := a.Settle(ctx); err != nil {
			t.Fatal(err)
		}
		if got, _ := a.Totals(ctx); got != tot {
			t.Errorf("Totals = %+v, want %+v", got, tot)
		}
		waitTotals(t, tot, b) // B reads what the lease holder sums

		// Every node holds some of the torrents.
		for _, n := range c.Nodes {
			if size := n.Client().DBSize(ctx).Val(); size < 50 {
				t.Errorf("node %s holds %d keys; want the torrents spread over every node", n.Addr, size)
			}
		}

		// Everyone expires; the counts of downloads stay.
		clock.Advance(testLifetime + time.Second)
		if err := b.Settle(ctx); err != nil {
			t.Fatal(err)
		}
		if got, _ := b.Totals(ctx); got != (store.Totals{}) {
			t.Errorf("after expiry: Totals = %+v", got)
		}
		all := scrapeAll(t, a)
		for h, w := range want {
			if w.Downloaded > 0 && all[h] != (bittorrent.Stats{Downloaded: w.Downloaded}) {
				t.Errorf("after expiry: ScrapeAll: %v = %+v, want %d downloads", h, all[h], w.Downloaded)
			}
			if _, ok := all[h]; ok && w.Downloaded == 0 {
				t.Errorf("after expiry: ScrapeAll visited %v, which has no downloads", h)
			}
		}
	})
}
