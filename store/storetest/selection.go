package storetest

import (
	"fmt"
	"net/netip"
	"slices"

	"trackd/bittorrent"
	"trackd/store"
)

func testSelection(e *env) {
	h := hashOf("selection")
	var seeders, leechers []bittorrent.Peer
	for i := range 5 {
		p := peerV4(10, 4, 1, byte(i), 7000, fmt.Sprintf("s%d", i))
		seeders = append(seeders, p)
		e.announce(h, p, ann{seeder: true})
	}
	for i := range 8 {
		p := peerV4(10, 4, 2, byte(i), 7000, fmt.Sprintf("l%d", i))
		if i == 3 {
			p = peerAt(fmt.Sprintf("[2001:db8:4::%d]:7000", i), fmt.Sprintf("l%d", i))
		}
		leechers = append(leechers, p)
		e.announce(h, p, ann{})
	}
	isLeecher := make(map[netip.AddrPort]bittorrent.PeerID)
	inSwarm := make(map[netip.AddrPort]bittorrent.PeerID)
	for _, p := range leechers {
		isLeecher[p.Addr] = p.ID
		inSwarm[p.Addr] = p.ID
	}
	for _, p := range seeders {
		inSwarm[p.Addr] = p.ID
	}
	want := bittorrent.Stats{Seeders: 5, Leechers: 8}

	peers, st := e.announce(h, seeders[0], seed)
	e.wantStats("seeder", st, want)
	e.wantPeers("seeder with NumWant 50 gets every leecher", peers, leechers...)

	peers, st = e.announce(h, leechers[0], leech)
	e.wantStats("leecher", st, want)
	e.wantPeers("leecher with NumWant 50 gets every other peer", peers, append(slices.Clone(seeders), leechers[1:]...)...)

	for _, n := range []int{1, 3, 7, 11, 12} {
		o := ann{numWant: n}
		peers, _ = e.announce(h, leechers[1], o)
		if len(peers) != n {
			e.t.Errorf("leecher with NumWant %d got %d peers", n, len(peers))
		}
		for _, p := range peers {
			if id, ok := inSwarm[p.Addr]; !ok || !e.idOK(p, id) {
				e.t.Errorf("leecher with NumWant %d got %v/%v, not a peer of the swarm", n, p.Addr, p.ID)
			}
		}
		o.seeder = true
		peers, _ = e.announce(h, seeders[1], o)
		if len(peers) != min(n, 8) {
			e.t.Errorf("seeder with NumWant %d got %d peers, want %d", n, len(peers), min(n, 8))
		}
		for _, p := range peers {
			if id, ok := isLeecher[p.Addr]; !ok || !e.idOK(p, id) {
				e.t.Errorf("seeder with NumWant %d got %v/%v, not a leecher", n, p.Addr, p.ID)
			}
		}
	}

	peers, st = e.announce(h, leechers[2], ann{numWant: 0})
	e.wantStats("NumWant 0", st, want)
	e.wantPeers("NumWant 0", peers)

	// Announce appends to the slice it is given.
	prefix := []bittorrent.Peer{peerV4(1, 1, 1, 1, 1, "prefix1"), peerV4(2, 2, 2, 2, 2, "prefix2")}
	buf := append(make([]bittorrent.Peer, 0, 3), prefix...)
	a := store.Announce{InfoHash: h, Peer: leechers[4], NumWant: 4}
	got, _, err := e.s.Announce(e.ctx, a, buf)
	if err != nil {
		e.t.Fatalf("Announce: %v", err)
	}
	if len(got) != 6 || !slices.Equal(got[:2], prefix) {
		e.t.Errorf("Announce appending to a slice of 2 with NumWant 4: got %d peers, prefix %v", len(got), got[:min(2, len(got))])
	}
	checkReturned(e.t, leechers[4], ann{numWant: 4}, got[2:])
}

// testRandomSelection checks that peers are chosen at random: from a swarm
// of n = 1000 candidates, D = 800 announces with NumWant k = 50.
//
// If every candidate is returned with probability p = k/n = 0.05 in each
// draw (what a uniform choice gives), a given peer is never seen with
// probability (1-p)^D = e^-41.0 = 1.5e-18, so some of the 1000 is missed with
// probability < 1.5e-15. Even a sampler with only p = 0.04 for some peers
// fails with probability < 1e-11.
//
// A peer's number of appearances is Binomial(D, p), mean 40; by Chernoff,
// P(X >= 3*40) <= exp(-δ²μ/(2+δ)) with δ = 2: e^-40 = 4e-18, so seeing a peer
// 120 times or more fails a fair sampler with probability < 1e-14.
//
// The draws must all differ: if no set of 50 has a probability above 1e-15
// (a uniform choice gives 1/C(1000,50) < 1e-84), two of 800 draws coincide
// with probability < C(800,2)·1e-15 = 3.2e-10. A sampler that returns one of
// a few fixed windows fails for sure.
//
// Half the candidates are seeders, so each draw holds Y seeders with
// E[Y] = 25 and 0 <= Y <= 50; by Hoeffding over the D independent draws the
// total is within 5000 of 20000 but with probability < 2·exp(-2·5000²/(D·50²))
// = 2.8e-11.
func testRandomSelection(e *env) {
	const (
		n     = 1000
		k     = 50
		draws = 800
	)
	h := hashOf("random")
	index := make(map[netip.AddrPort]int, n)
	for i := range n {
		p := nthPeer(i)
		index[p.Addr] = i
		e.announce(h, p, ann{seeder: i%2 == 0})
	}
	self := peerAt("[2001:db8::42]:4242", "requester")
	counts := make([]int, n)
	sets := make(map[string]int, draws)
	seeders := 0
	for d := range draws {
		peers, st := e.announce(h, self, ann{numWant: k})
		if st != (bittorrent.Stats{Seeders: n / 2, Leechers: n/2 + 1}) {
			e.t.Fatalf("draw %d: stats %+v", d, st)
		}
		if len(peers) != k {
			e.t.Fatalf("draw %d: got %d peers, want %d", d, len(peers), k)
		}
		set := make([]int, 0, k)
		for _, p := range peers {
			i, ok := index[p.Addr]
			if !ok || !e.idOK(p, nthPeer(i).ID) {
				e.t.Fatalf("draw %d: returned %v/%v, not a peer of the swarm", d, p.Addr, p.ID)
			}
			counts[i]++
			set = append(set, i)
			if i%2 == 0 {
				seeders++
			}
		}
		slices.Sort(set)
		key := fmt.Sprint(set)
		if prev, dup := sets[key]; dup {
			e.t.Errorf("draws %d and %d returned the same %d peers", prev, d, k)
		}
		sets[key] = d
	}
	for i, c := range counts {
		if c == 0 {
			e.t.Errorf("peer %d never returned in %d draws of %d out of %d", i, draws, k, n)
		}
		if c >= 3*draws*k/n {
			e.t.Errorf("peer %d returned %d times in %d draws, expected about %d", i, c, draws, draws*k/n)
		}
	}
	if want := draws * k / 2; seeders < want-5000 || seeders > want+5000 {
		e.t.Errorf("%d seeders among %d peers returned, want about %d (half the candidates are seeders)", seeders, draws*k, want)
	}
}
