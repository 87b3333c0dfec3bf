package storetest

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"trackd/bittorrent"
	"trackd/store"
)

// testConcurrency has goroutines announce, stop and complete their own peers
// in shared swarms while others scrape, then checks every count against
// what the writers did.
func testConcurrency(e *env) {
	const (
		writers  = 8
		perW     = 48
		torrents = 12
		rounds   = 30
	)
	hashes := make([]bittorrent.InfoHash, torrents)
	for i := range hashes {
		hashes[i] = hashOf(fmt.Sprintf("conc-%d", i))
	}
	type state struct {
		present, seeder, counted bool
	}
	final := make([][perW]state, writers)
	downloads := make([][torrents]uint32, writers)
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, writers+4)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []bittorrent.Peer
			st := &final[w]
			for r := range rounds {
				for i := range perW {
					p := peerV4(10, 10, byte(w), byte(i), uint16(1000+w), fmt.Sprintf("w%d-%d", w, i))
					if (i+w)%4 == 0 {
						p.Addr = netip.MustParseAddrPort(fmt.Sprintf("[2001:db8:10:%x::%x]:%d", w, i, 1000+w))
					}
					ti := (i*7 + w) % torrents
					x := (r*31 + i*17 + w*13) % 10
					a := store.Announce{InfoHash: hashes[ti], Peer: p, NumWant: 10}
					switch {
					case x == 0:
						a.Event = bittorrent.EventStopped
					case x <= 2:
						a.Event = bittorrent.EventCompleted
						a.Seeder = true
					default:
						a.Seeder = x%2 == 0
					}
					var err error
					buf, _, err = e.s.Announce(e.ctx, a, buf[:0])
					if err != nil {
						report(err)
						return
					}
					for _, q := range buf {
						if q.Addr == p.Addr {
							report(fmt.Errorf("writer %d: announce returned the announcing peer", w))
						}
					}
					s := &st[i]
					if a.Event == bittorrent.EventStopped {
						*s = state{}
						continue
					}
					if !s.present {
						*s = state{present: true}
					}
					s.seeder = a.Seeder
					if a.Event == bittorrent.EventCompleted && !s.counted {
						s.counted = true
						downloads[w][ti]++
					}
				}
			}
		}()
	}
	var readers sync.WaitGroup
	for range 3 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			var stats []bittorrent.Stats
			for {
				select {
				case <-done:
					return
				default:
				}
				var err error
				stats, err = e.s.Scrape(e.ctx, hashes, stats[:0])
				if err != nil {
					report(err)
					return
				}
				for _, st := range stats {
					if st.Seeders+st.Leechers > writers*perW {
						report(fmt.Errorf("scrape during writes: %+v", st))
					}
				}
				if _, err := e.s.Totals(e.ctx); err != nil {
					report(err)
					return
				}
				err = e.s.ScrapeAll(e.ctx, func(bittorrent.InfoHash, bittorrent.Stats) error { return nil })
				if err != nil {
					report(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	readers.Wait()
	close(errs)
	for err := range errs {
		e.t.Error(err)
	}

	want := make([]bittorrent.Stats, torrents)
	var seeders6, leechers6 uint64
	for w := range writers {
		for i := range perW {
			ti := (i*7 + w) % torrents
			if s := final[w][i]; s.present {
				v6 := (i+w)%4 == 0
				if s.seeder {
					want[ti].Seeders++
					if v6 {
						seeders6++
					}
				} else {
					want[ti].Leechers++
					if v6 {
						leechers6++
					}
				}
			}
		}
		for ti := range torrents {
			want[ti].Downloaded += downloads[w][ti]
		}
	}
	tot := store.Totals{Seeders6: seeders6, Leechers6: leechers6}
	for _, st := range want {
		if st.Seeders+st.Leechers > 0 {
			tot.Torrents++
		}
		tot.Seeders += uint64(st.Seeders)
		tot.Leechers += uint64(st.Leechers)
	}
	got := e.scrape(hashes...)
	for i := range hashes {
		if got[i] != want[i] {
			e.t.Errorf("torrent %d after concurrent announces: %+v, want %+v", i, got[i], want[i])
		}
	}
	e.wantTotals("after concurrent announces", tot)
}

// testMemoryLimit checks a store that implements store.MemoryBounded (the
// suite skips it for one that does not): at a bound of one byte, an
// announce that would make a torrent fails with store.ErrNoNewTorrents,
// one that would add a peer with store.ErrNoNewPeers, and neither changes
// anything; known peers still re-announce, stop and scrape; without the
// bound new torrents are taken again.
func testMemoryLimit(e *env) {
	mb, ok := e.s.(store.MemoryBounded)
	if !ok {
		e.t.Skip("the store does not bound its memory (store.MemoryBounded)")
	}
	known, a, b := hashOf("known"), peerV4(10, 0, 0, 1, 1000, "a"), peerV4(10, 0, 0, 2, 1000, "b")
	e.announce(known, a, leech)
	e.announce(known, b, leech)
	before := mb.MemoryUsage()
	if before.Bytes <= 0 || before.Limit != 0 {
		e.t.Fatalf("MemoryUsage %+v with two peers and no bound", before)
	}
	mb.SetMemoryLimit(1)
	fresh := hashOf("fresh")
	if _, _, err := e.s.Announce(e.ctx, store.Announce{InfoHash: fresh, Peer: a, NumWant: 10}, nil); !errors.Is(err, store.ErrNoNewTorrents) {
		e.t.Fatalf("new torrent at the bound: err %v, want store.ErrNoNewTorrents", err)
	}
	c := peerV4(10, 0, 0, 3, 1000, "c")
	if _, _, err := e.s.Announce(e.ctx, store.Announce{InfoHash: known, Peer: c, NumWant: 10}, nil); !errors.Is(err, store.ErrNoNewPeers) {
		e.t.Fatalf("new peer at the bound: err %v, want store.ErrNoNewPeers", err)
	}
	peers, st := e.announce(known, a, ann{numWant: 10, event: bittorrent.EventCompleted})
	e.wantPeers("re-announce at the bound", peers, b)
	e.wantStats("re-announce at the bound", st, bittorrent.Stats{Leechers: 2, Downloaded: 1})
	e.announce(known, b, stopped)
	e.wantStats("scrape at the bound", e.scrapeOne(known), bittorrent.Stats{Leechers: 1, Downloaded: 1})
	e.wantStats("scrape of the refused torrent", e.scrapeOne(fresh), bittorrent.Stats{})
	if u := mb.MemoryUsage(); u.Refused != before.Refused+2 || u.Limit != 1 || !u.Shedding {
		e.t.Errorf("MemoryUsage %+v after two refusals at a bound of 1 byte", u)
	}
	mb.SetMemoryLimit(0)
	e.announce(fresh, a, leech)
	e.wantStats("new torrent without a bound", e.scrapeOne(fresh), bittorrent.Stats{Leechers: 1})
}
