package storetest

import (
	"maps"
	"time"

	"trackd/bittorrent"
	"trackd/store"
)

// testExpiry lets peers expire and checks every way to observe a swarm,
// each in turn the first to look after an expiry, since a backend may drop
// expired peers lazily.
func testExpiry(e *env) {
	h, lone, third := hashOf("expiry"), hashOf("expiry-lone"), hashOf("expiry-third")
	a, b, c, d := peerV4(10, 5, 0, 1, 1, "a"), peerV4(10, 5, 0, 2, 2, "b"), peerV4(10, 5, 0, 3, 3, "c"), peerV4(10, 5, 0, 4, 4, "d")
	e.announce(h, a, leech)
	e.announce(h, a, completed)
	e.announce(h, b, leech)
	e.announce(lone, c, seed)
	e.wantTotals("start", store.Totals{Torrents: 2, Seeders: 2, Leechers: 1})

	e.clock.Advance(Lifetime / 2)
	e.announce(h, b, leech) // b announces in time; a and c do not

	e.clock.Advance(Lifetime/2 - time.Second) // one second before a and c expire
	e.wantStats("scrape just before expiry", e.scrapeOne(h), bittorrent.Stats{Seeders: 1, Leechers: 1, Downloaded: 1})
	e.wantTotals("just before expiry", store.Totals{Torrents: 2, Seeders: 2, Leechers: 1})

	// One second after: a and c are gone. Announce looks first.
	e.clock.Advance(2 * time.Second)
	peers, st := e.announce(h, d, leech)
	e.wantStats("announce after a expired", st, bittorrent.Stats{Leechers: 2, Downloaded: 1})
	e.wantPeers("announce after a expired", peers, b)
	e.wantStats("scrape of a swarm whose only peer expired", e.scrapeOne(lone), bittorrent.Stats{})
	e.wantStats("scrape after a expired", e.scrapeOne(h), bittorrent.Stats{Leechers: 2, Downloaded: 1})
	all := e.scrapeAll()
	if len(all) != 1 || all[h] != (bittorrent.Stats{Leechers: 2, Downloaded: 1}) {
		e.t.Errorf("ScrapeAll after a and c expired = %v, want only %v with 2 leechers, 1 download", all, h)
	}
	e.wantTotals("after a and c expired", store.Totals{Torrents: 1, Leechers: 2})
	peers, st = e.announce(lone, d, seed)
	e.wantStats("announce to the swarm whose only peer expired", st, bittorrent.Stats{Seeders: 1})
	e.wantPeers("announce to the swarm whose only peer expired", peers)
	e.wantTotals("after d joined lone", store.Totals{Torrents: 2, Seeders: 1, Leechers: 2})

	// Everyone expired. Totals looks first.
	e.clock.Advance(Lifetime + time.Second)
	e.wantTotals("all expired", store.Totals{})
	e.wantStats("scrape when all expired", e.scrapeOne(h), bittorrent.Stats{Downloaded: 1})
	all = e.scrapeAll()
	if len(all) != 1 || all[h] != (bittorrent.Stats{Downloaded: 1}) {
		e.t.Errorf("ScrapeAll when all expired = %v, want only %v with 1 download", all, h)
	}
	peers, st = e.announce(h, a, completed)
	e.wantStats("a back after expiry, completing", st, bittorrent.Stats{Seeders: 1, Downloaded: 2})
	e.wantPeers("a back after expiry", peers)
	e.announce(third, b, leech)
	e.announce(third, c, completed)
	e.wantTotals("a, b and c back", store.Totals{Torrents: 2, Seeders: 2, Leechers: 1})

	// Everyone expired again. Scrape looks first, then ScrapeAll.
	e.clock.Advance(Lifetime + time.Second)
	e.wantStats("scrape of third when all expired", e.scrapeOne(third), bittorrent.Stats{Downloaded: 1})
	e.announce(lone, d, leech)
	e.clock.Advance(Lifetime + time.Second)
	all = e.scrapeAll()
	want := map[bittorrent.InfoHash]bittorrent.Stats{h: {Downloaded: 2}, third: {Downloaded: 1}}
	if !maps.Equal(all, want) {
		e.t.Errorf("ScrapeAll when all expired = %v, want %v", all, want)
	}
	e.wantTotals("all expired again", store.Totals{})
}
