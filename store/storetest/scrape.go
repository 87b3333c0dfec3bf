package storetest

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"trackd/bittorrent"
	"trackd/store"
)

func testScrape(e *env) {
	h1, h2, h3 := hashOf("scrape-1"), hashOf("scrape-2"), hashOf("scrape-unknown")
	e.announce(h1, peerV4(10, 6, 0, 1, 1, "a"), seed)
	e.announce(h1, peerV4(10, 6, 0, 2, 1, "b"), completed)
	e.announce(h1, peerV4(10, 6, 0, 3, 1, "c"), leech)
	for i := range 3 {
		e.announce(h2, peerV4(10, 6, 1, byte(i), 1, "x"), leech)
	}
	s1 := bittorrent.Stats{Seeders: 2, Leechers: 1, Downloaded: 1}
	s2 := bittorrent.Stats{Leechers: 3}

	prefix := bittorrent.Stats{Seeders: 99, Leechers: 98, Downloaded: 97}
	got, err := e.s.Scrape(e.ctx, []bittorrent.InfoHash{h2, h3, h1, h2}, []bittorrent.Stats{prefix})
	if err != nil {
		e.t.Fatalf("Scrape: %v", err)
	}
	want := []bittorrent.Stats{prefix, s2, {}, s1, s2}
	if !slices.Equal(got, want) {
		e.t.Errorf("Scrape = %+v, want %+v", got, want)
	}
	got, err = e.s.Scrape(e.ctx, nil, []bittorrent.Stats{prefix})
	if err != nil || !slices.Equal(got, []bittorrent.Stats{prefix}) {
		e.t.Errorf("Scrape of no hashes = %+v, %v; want the given slice", got, err)
	}
	if m := e.scrapeAll(); len(m) != 2 {
		e.t.Errorf("ScrapeAll after scraping an unknown hash visited %d torrents, want 2", len(m))
	}
}

func testScrapeAll(e *env) {
	want := make(map[bittorrent.InfoHash]bittorrent.Stats)
	for i := range 40 {
		h := hashOf(fmt.Sprintf("all-%d", i))
		var st bittorrent.Stats
		for j := range i%7 + 1 {
			p := peerV4(10, 7, byte(i), byte(j), 1, "p")
			switch {
			case j%3 == 0:
				e.announce(h, p, seed)
				st.Seeders++
			case j%3 == 1 && i%2 == 0:
				e.announce(h, p, completed)
				st.Seeders++
				st.Downloaded++
			default:
				e.announce(h, p, leech)
				st.Leechers++
			}
		}
		want[h] = st
	}
	// Every peer gone, one download: still visited.
	gone := hashOf("all-gone-downloaded")
	e.announce(gone, peerV4(10, 7, 255, 1, 1, "g"), completed)
	e.announce(gone, peerV4(10, 7, 255, 1, 1, "g"), stopped)
	want[gone] = bittorrent.Stats{Downloaded: 1}
	// Every peer gone, no download: not visited.
	empty := hashOf("all-gone-empty")
	e.announce(empty, peerV4(10, 7, 255, 2, 1, "g"), leech)
	e.announce(empty, peerV4(10, 7, 255, 2, 1, "g"), stopped)

	got := e.scrapeAll()
	if len(got) != len(want) {
		e.t.Errorf("ScrapeAll visited %d torrents, want %d", len(got), len(want))
	}
	for h, w := range want {
		if g, ok := got[h]; !ok {
			e.t.Errorf("ScrapeAll did not visit %v", h)
		} else if g != w {
			e.t.Errorf("ScrapeAll: %v has %+v, want %+v", h, g, w)
		}
	}

	errStop := errors.New("stop here")
	calls := 0
	err := e.s.ScrapeAll(e.ctx, func(bittorrent.InfoHash, bittorrent.Stats) error {
		calls++
		if calls == 3 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		e.t.Errorf("ScrapeAll returned %v, want fn's error", err)
	}
	if calls != 3 {
		e.t.Errorf("ScrapeAll called fn %d times, want it to stop at the error of the 3rd call", calls)
	}
}

// testTotals: the counts over all swarms, with the IPv6 ones (c) apart.
func testTotals(e *env) {
	h1, h2, h3 := hashOf("totals-1"), hashOf("totals-2"), hashOf("totals-3")
	a, b, c, d := peerV4(10, 8, 0, 1, 1, "a"), peerV4(10, 8, 0, 2, 1, "b"), peerAt("[2001:db8:8::3]:1", "c"), peerV4(10, 8, 0, 4, 1, "d")
	e.wantTotals("empty", store.Totals{})
	e.announce(h1, a, leech)
	e.announce(h1, b, leech)
	e.announce(h2, c, seed)
	e.wantTotals("joins", store.Totals{Torrents: 2, Seeders: 1, Leechers: 2, Seeders6: 1})
	if tot := e.totals(); tot.Peers() != 3 {
		e.t.Errorf("Totals.Peers() = %d, want 3", tot.Peers())
	}
	e.announce(h1, a, completed)
	e.wantTotals("a seeds", store.Totals{Torrents: 2, Seeders: 2, Leechers: 1, Seeders6: 1})
	e.announce(h1, a, seed)
	e.announce(h1, b, leech)
	e.wantTotals("re-announces change nothing", store.Totals{Torrents: 2, Seeders: 2, Leechers: 1, Seeders6: 1})
	e.announce(h2, c, ann{seeder: true, event: bittorrent.EventStopped})
	e.wantTotals("c stopped", store.Totals{Torrents: 1, Seeders: 1, Leechers: 1})
	e.announce(h2, c, leech)
	e.announce(h3, c, leech) // the same address in another torrent is another peer
	e.wantTotals("c back, twice", store.Totals{Torrents: 3, Seeders: 1, Leechers: 3, Leechers6: 2})

	e.clock.Advance(Lifetime - 10*time.Second)
	e.announce(h1, b, leech)
	e.announce(h3, d, seed)
	e.clock.Advance(20 * time.Second)
	e.wantTotals("after expiry", store.Totals{Torrents: 2, Seeders: 1, Leechers: 1})
	e.clock.Advance(Lifetime)
	e.wantTotals("all expired", store.Totals{})
}
