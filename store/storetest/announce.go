package storetest

import (
	"fmt"
	"net/netip"
	"slices"

	"trackd/bittorrent"
	"trackd/store"
)

func testFirstAnnounce(e *env) {
	h := hashOf("first")
	l1, s1, l2 := peerV4(10, 0, 0, 1, 6881, "l1"), peerV4(10, 0, 0, 2, 6881, "s1"), peerV4(10, 0, 0, 3, 6881, "l2")
	e.wantTotals("empty store", store.Totals{})
	e.wantStats("scrape of an empty store", e.scrapeOne(h), bittorrent.Stats{})

	peers, st := e.announce(h, l1, ann{event: bittorrent.EventStarted, numWant: 50})
	e.wantStats("first announce (leecher)", st, bittorrent.Stats{Leechers: 1})
	e.wantPeers("first announce", peers)

	peers, st = e.announce(h, s1, ann{seeder: true, event: bittorrent.EventStarted, numWant: 50})
	e.wantStats("second announce (seeder)", st, bittorrent.Stats{Seeders: 1, Leechers: 1})
	e.wantPeers("second announce (seeder)", peers, l1)

	peers, st = e.announce(h, l2, leech)
	e.wantStats("third announce (leecher)", st, bittorrent.Stats{Seeders: 1, Leechers: 2})
	e.wantPeers("third announce (leecher)", peers, l1, s1)

	e.wantStats("scrape", e.scrapeOne(h), bittorrent.Stats{Seeders: 1, Leechers: 2})
	e.wantTotals("one swarm", store.Totals{Torrents: 1, Seeders: 1, Leechers: 2})
}

func testSessionIdentity(e *env) {
	h := hashOf("session")
	a1 := peerV4(192, 0, 2, 1, 6881, "a-first")
	a2 := peerV4(192, 0, 2, 1, 6881, "a-second") // same ip:port, new id
	otherPort := peerV4(192, 0, 2, 1, 6882, "other-port")
	otherIP := peerV4(192, 0, 2, 2, 6881, "other-ip")
	obs := peerV4(198, 51, 100, 7, 1000, "observer")

	_, st := e.announce(h, a1, leech)
	e.wantStats("first announce", st, bittorrent.Stats{Leechers: 1})
	_, st = e.announce(h, a2, leech)
	e.wantStats("re-announce from the same ip:port with a new peer id", st, bittorrent.Stats{Leechers: 1})
	peers, st := e.announce(h, obs, leech)
	e.wantStats("observer", st, bittorrent.Stats{Leechers: 2})
	e.wantPeers("observer after id change", peers, a2)

	_, st = e.announce(h, otherPort, leech)
	e.wantStats("same ip, other port", st, bittorrent.Stats{Leechers: 3})
	_, st = e.announce(h, otherIP, leech)
	e.wantStats("same port, other ip", st, bittorrent.Stats{Leechers: 4})
	peers, _ = e.announce(h, obs, leech)
	e.wantPeers("observer sees every session", peers, a2, otherPort, otherIP)

	// A change of id and of role at once is still the same session.
	a3 := peerV4(192, 0, 2, 1, 6881, "a-third")
	_, st = e.announce(h, a3, seed)
	e.wantStats("same session as a seeder with a third id", st, bittorrent.Stats{Seeders: 1, Leechers: 3})
	peers, _ = e.announce(h, obs, leech)
	e.wantPeers("observer after role change", peers, a3, otherPort, otherIP)
	e.wantTotals("totals", store.Totals{Torrents: 1, Seeders: 1, Leechers: 3})
}

func testIPv4AndIPv6(e *env) {
	h := hashOf("families")
	p4 := peerAt("192.0.2.1:6881", "v4")
	p4b := peerAt("192.0.2.1:6882", "v4b")
	p6 := peerAt("[2001:db8::1]:6881", "v6")
	p6b := peerAt("[2001:db8::1]:6882", "v6b")
	p6c := peerAt("[2001:db8::2]:6881", "v6c")
	// ::c000:201 holds the same 4 bytes as 192.0.2.1 at its end: another peer.
	compat := peerAt("[::c000:201]:6881", "v4compat")
	all := []bittorrent.Peer{p4, p4b, p6, p6b, p6c, compat}

	for i, p := range all {
		_, st := e.announce(h, p, leech)
		e.wantStats(fmt.Sprintf("announce %d (%v)", i, p.Addr), st, bittorrent.Stats{Leechers: uint32(i + 1)})
	}
	obs4 := peerAt("198.51.100.1:1000", "obs4")
	peers, st := e.announce(h, obs4, leech)
	e.wantStats("v4 observer", st, bittorrent.Stats{Leechers: 7})
	e.wantPeers("v4 observer", peers, all...)
	for _, p := range peers {
		// Peers come back exactly as announced: a 4-byte address stays a
		// plain IPv4 address, never v4-mapped.
		found := false
		for _, q := range all {
			found = found || q.Addr == p.Addr
		}
		if !found {
			e.t.Errorf("peer returned as %v (Is4 %v, Is4In6 %v), not as announced", p.Addr, p.Addr.Addr().Is4(), p.Addr.Addr().Is4In6())
		}
		if p.Addr.Addr().Zone() != "" {
			e.t.Errorf("peer %v returned with a zone", p.Addr)
		}
	}
	obs6 := peerAt("[2001:db8:ffff::1]:1000", "obs6")
	peers, st = e.announce(h, obs6, seed)
	e.wantStats("v6 observer (seeder)", st, bittorrent.Stats{Seeders: 1, Leechers: 7})
	e.wantPeers("v6 observer (seeder)", peers, append(slices.Clone(all), obs4)...)

	_, st = e.announce(h, p6, stopped)
	e.wantStats("v6 peer stopped", st, bittorrent.Stats{Seeders: 1, Leechers: 6})
	_, st = e.announce(h, p4, seed)
	e.wantStats("v4 peer now seeding", st, bittorrent.Stats{Seeders: 2, Leechers: 5})
	peers, _ = e.announce(h, obs4, leech)
	e.wantPeers("v4 observer after changes", peers, p4, p4b, p6b, p6c, compat, obs6)
	e.wantTotals("totals", store.Totals{Torrents: 1, Seeders: 2, Leechers: 5, Seeders6: 1, Leechers6: 3})
}

func testStopped(e *env) {
	h, unknown := hashOf("stopped"), hashOf("never-announced")
	a, b, c := peerV4(10, 1, 0, 1, 1, "a"), peerV4(10, 1, 0, 2, 2, "b"), peerV4(10, 1, 0, 3, 3, "c")
	e.announce(h, a, leech)
	e.announce(h, b, seed)
	_, st := e.announce(h, c, leech)
	e.wantStats("three peers", st, bittorrent.Stats{Seeders: 1, Leechers: 2})

	peers, st := e.announce(h, a, stopped)
	e.wantStats("a stopped", st, bittorrent.Stats{Seeders: 1, Leechers: 1})
	e.wantPeers("a stopped (NumWant 0)", peers)
	peers, _ = e.announce(h, c, leech)
	e.wantPeers("c after a stopped", peers, b)

	_, st = e.announce(h, a, stopped)
	e.wantStats("a stopped twice", st, bittorrent.Stats{Seeders: 1, Leechers: 1})
	_, st = e.announce(h, peerV4(10, 1, 0, 9, 9, "stranger"), stopped)
	e.wantStats("unknown peer stopped", st, bittorrent.Stats{Seeders: 1, Leechers: 1})

	peers, st = e.announce(unknown, a, ann{event: bittorrent.EventStopped, numWant: 50})
	e.wantStats("stop on an unknown torrent", st, bittorrent.Stats{})
	e.wantPeers("stop on an unknown torrent", peers)
	e.wantStats("scrape of the unknown torrent", e.scrapeOne(unknown), bittorrent.Stats{})
	if m := e.scrapeAll(); len(m) != 1 {
		e.t.Errorf("ScrapeAll visited %d torrents, want 1 (a stop must create nothing): %v", len(m), m)
	}
	e.wantTotals("after stops", store.Totals{Torrents: 1, Seeders: 1, Leechers: 1})

	// A stopping seeder is given only leechers, like any seeder.
	peers, st = e.announce(h, b, ann{seeder: true, event: bittorrent.EventStopped, numWant: 50})
	e.wantStats("b stopped", st, bittorrent.Stats{Leechers: 1})
	e.wantPeers("b stopped with NumWant 50", peers, c)
	_, st = e.announce(h, c, stopped)
	e.wantStats("last peer stopped", st, bittorrent.Stats{})
	e.wantStats("scrape after every peer stopped", e.scrapeOne(h), bittorrent.Stats{})
	if m := e.scrapeAll(); len(m) != 0 {
		e.t.Errorf("ScrapeAll visited %v; want nothing (no peers, no downloads)", m)
	}
	e.wantTotals("after every peer stopped", store.Totals{})

	// The session can start again.
	_, st = e.announce(h, a, leech)
	e.wantStats("a back", st, bittorrent.Stats{Leechers: 1})
}

func testCompleted(e *env) {
	h := hashOf("completed")
	a, b, c := peerV4(10, 2, 0, 1, 1, "a"), peerV4(10, 2, 0, 2, 2, "b"), peerV4(10, 2, 0, 3, 3, "c")
	e.announce(h, a, leech)
	_, st := e.announce(h, a, completed)
	e.wantStats("a completed", st, bittorrent.Stats{Seeders: 1, Downloaded: 1})
	_, st = e.announce(h, a, completed)
	e.wantStats("a completed twice", st, bittorrent.Stats{Seeders: 1, Downloaded: 1})
	_, st = e.announce(h, a, seed)
	e.wantStats("a re-announces", st, bittorrent.Stats{Seeders: 1, Downloaded: 1})

	e.announce(h, b, leech)
	_, st = e.announce(h, b, seed)
	e.wantStats("b seeds without a completed event", st, bittorrent.Stats{Seeders: 2, Downloaded: 1})

	_, st = e.announce(h, c, completed)
	e.wantStats("c's first announce is completed", st, bittorrent.Stats{Seeders: 3, Downloaded: 2})

	e.announce(h, a, stopped)
	_, st = e.announce(h, a, leech)
	e.wantStats("a back as a new session", st, bittorrent.Stats{Seeders: 2, Leechers: 1, Downloaded: 2})
	_, st = e.announce(h, a, completed)
	e.wantStats("new session of a completed", st, bittorrent.Stats{Seeders: 3, Downloaded: 3})
	e.wantStats("scrape", e.scrapeOne(h), bittorrent.Stats{Seeders: 3, Downloaded: 3})
}

func testMoves(e *env) {
	h := hashOf("moves")
	a, b, s := peerV4(10, 3, 0, 1, 1, "a"), peerV4(10, 3, 0, 2, 2, "b"), peerV4(10, 3, 0, 3, 3, "s")
	e.announce(h, a, leech)
	e.announce(h, b, leech)
	e.wantTotals("two leechers", store.Totals{Torrents: 1, Leechers: 2})

	_, st := e.announce(h, a, seed)
	e.wantStats("a seeds", st, bittorrent.Stats{Seeders: 1, Leechers: 1})
	e.wantTotals("a seeds", store.Totals{Torrents: 1, Seeders: 1, Leechers: 1})
	peers, _ := e.announce(h, s, seed)
	e.wantPeers("a seeder gets only leechers", peers, b)
	peers, _ = e.announce(h, b, leech)
	e.wantPeers("a leecher gets everyone", peers, a, s)

	_, st = e.announce(h, a, leech)
	e.wantStats("a leeches again", st, bittorrent.Stats{Seeders: 1, Leechers: 2})
	peers, _ = e.announce(h, s, seed)
	e.wantPeers("seeder after a leeches again", peers, a, b)
	for i := range 5 {
		e.announce(h, b, ann{seeder: i%2 == 0, numWant: 50})
	}
	_, st = e.announce(h, b, seed)
	e.wantStats("b flipped back and forth", st, bittorrent.Stats{Seeders: 2, Leechers: 1})
	e.wantTotals("end", store.Totals{Torrents: 1, Seeders: 2, Leechers: 1})
	e.wantStats("scrape", e.scrapeOne(h), bittorrent.Stats{Seeders: 2, Leechers: 1})

	// Many moves in a bigger swarm of both families, checked by two
	// observers that see everyone.
	h = hashOf("moves-big")
	const n = 40
	swarm := make([]bittorrent.Peer, n)
	role := make([]bool, n)
	for i := range swarm {
		swarm[i] = peerV4(10, 3, 1, byte(i*5), uint16(100+i%3), fmt.Sprintf("m%d", i))
		if i%3 == 0 {
			swarm[i] = peerAt(fmt.Sprintf("[2001:db8:3::%x]:%d", i*5, 100+i%3), fmt.Sprintf("m%d", i))
		}
		role[i] = i%2 == 0
		e.announce(h, swarm[i], ann{seeder: role[i]})
	}
	obsS, obsL := peerV4(10, 3, 2, 1, 1, "obs-seeder"), peerV4(10, 3, 2, 2, 1, "obs-leecher")
	e.announce(h, obsS, ann{seeder: true})
	e.announce(h, obsL, ann{})
	x := uint32(1)
	for step := range 300 {
		x = x*1664525 + 1013904223
		i := int(x>>8) % n
		role[i] = !role[i]
		_, st := e.announce(h, swarm[i], ann{seeder: role[i]})
		want := bittorrent.Stats{Seeders: 1, Leechers: 1} // the observers
		var leechers, everyone []bittorrent.Peer
		for j, p := range swarm {
			everyone = append(everyone, p)
			if role[j] {
				want.Seeders++
			} else {
				want.Leechers++
				leechers = append(leechers, p)
			}
		}
		if st != want {
			e.t.Fatalf("step %d: stats %+v, want %+v", step, st, want)
		}
		if step%10 == 0 {
			got, _ := e.announce(h, obsS, ann{seeder: true, numWant: 200})
			e.wantPeers(fmt.Sprintf("step %d: seeder observer", step), got, append(leechers, obsL)...)
			got, _ = e.announce(h, obsL, ann{numWant: 200})
			e.wantPeers(fmt.Sprintf("step %d: leecher observer", step), got, append(everyone, obsS)...)
		}
	}
}

func testBinaryKeys(e *env) {
	var zeros, space, ones, onesFE, nulMid, abcZero, abcSpace bittorrent.InfoHash
	space[19] = 0x20
	for i := range ones {
		ones[i] = 0xff
		onesFE[i] = 0xff
	}
	onesFE[19] = 0xfe
	copy(nulMid[:], "abc\x00def")
	copy(abcZero[:], "abc")
	copy(abcSpace[:], "abc                 ")
	hashes := []bittorrent.InfoHash{zeros, space, ones, onesFE, nulMid, abcZero, abcSpace}
	want := make(map[bittorrent.InfoHash]bittorrent.Stats)
	for i, h := range hashes {
		for j := range i + 1 {
			e.announce(h, peerV4(10, 9, byte(i), byte(j), 1, "p"), leech)
		}
		want[h] = bittorrent.Stats{Leechers: uint32(i + 1)}
	}
	got := e.scrape(hashes...)
	for i, h := range hashes {
		if got[i] != want[h] {
			e.t.Errorf("Scrape of hash %x = %+v, want %+v", h[:], got[i], want[h])
		}
	}
	all := e.scrapeAll()
	if len(all) != len(hashes) {
		e.t.Errorf("ScrapeAll visited %d torrents, want %d", len(all), len(hashes))
	}
	for h, w := range want {
		if all[h] != w {
			e.t.Errorf("ScrapeAll: hash %x = %+v, want %+v", h[:], all[h], w)
		}
	}

	var idZeros, idSpace, idOnes, idNul bittorrent.PeerID
	idSpace[19] = 0x20
	for i := range idOnes {
		idOnes[i] = 0xff
	}
	copy(idNul[:], "-XX\x00\x00-\n\r ")
	ids := []bittorrent.PeerID{idZeros, idSpace, idOnes, idNul}
	h := hashOf("binary-ids")
	var peers []bittorrent.Peer
	for i, id := range ids {
		p := bittorrent.Peer{ID: id, Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, 200, byte(i)}), 0x2000)}
		peers = append(peers, p)
		e.announce(h, p, leech)
	}
	got2, _ := e.announce(h, peerV4(10, 9, 201, 1, 1, "obs"), leech)
	e.wantPeers("binary peer ids", got2, peers...)
}

// testFamilyFilter: Announce.Family restricts the peers returned to one
// address family (UDP replies carry one), and the requester is still never
// among them.
func testFamilyFilter(e *env) {
	h := hashOf("family")
	for i := range 5 {
		e.announce(h, peerV4(10, 0, 0, byte(i+1), 6881, fmt.Sprintf("v4-%d", i)), leech)
		e.announce(h, peerAt(fmt.Sprintf("[2001:db8::%d]:6881", i+1), fmt.Sprintf("v6-%d", i)), leech)
	}
	tests := []struct {
		name   string
		self   bittorrent.Peer
		family bittorrent.Family
		seeder bool
		want4  int
		want6  int
	}{
		{"v4 requester, IPv4 only", peerV4(10, 0, 0, 1, 6881, "v4-0"), bittorrent.IPv4Only, false, 4, 0},
		{"v4 requester, IPv6 only", peerV4(10, 0, 0, 1, 6881, "v4-0"), bittorrent.IPv6Only, false, 0, 5},
		{"v6 requester, IPv6 only", peerAt("[2001:db8::1]:6881", "v6-0"), bittorrent.IPv6Only, false, 0, 4},
		{"v6 requester, IPv4 only", peerAt("[2001:db8::1]:6881", "v6-0"), bittorrent.IPv4Only, false, 5, 0},
		{"v6 requester, any", peerAt("[2001:db8::1]:6881", "v6-0"), bittorrent.AnyFamily, false, 5, 4},
		{"new v4 seeder, IPv4 only", peerV4(10, 0, 0, 99, 6881, "s"), bittorrent.IPv4Only, true, 5, 0},
	}
	for _, tt := range tests {
		a := store.Announce{InfoHash: h, Peer: tt.self, Seeder: tt.seeder, NumWant: 50, Family: tt.family}
		peers, _, err := e.s.Announce(e.ctx, a, nil)
		if err != nil {
			e.t.Fatalf("%s: %v", tt.name, err)
		}
		checkReturned(e.t, tt.self, ann{numWant: 50}, peers)
		n4, n6 := 0, 0
		for _, p := range peers {
			if p.Addr.Addr().Is4() {
				n4++
			} else {
				n6++
			}
		}
		if n4 != tt.want4 || n6 != tt.want6 {
			e.t.Errorf("%s: got %d IPv4 and %d IPv6 peers, want %d and %d", tt.name, n4, n6, tt.want4, tt.want6)
		}
		if tt.seeder {
			a.Event = bittorrent.EventStopped
			e.s.Announce(e.ctx, a, nil)
		}
	}
}
