package loadgen

import (
	"math"
	"testing"
)

func TestWorkloadDeterministic(t *testing.T) {
	a, err := NewWorkload(1000, 5000, 4, 7, 0.75)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewWorkload(1000, 5000, 4, 7, 0.75)
	c, _ := NewWorkload(1000, 5000, 4, 8, 0.75)
	var pa, pb, pc Peer
	same := 0
	for j := range 5000 {
		a.Peer(j, &pa)
		b.Peer(j, &pb)
		c.Peer(j, &pc)
		if pa != pb {
			t.Fatalf("peer %d differs between two workloads with the same seed: %+v vs %+v", j, pa, pb)
		}
		if pa.ID == pc.ID || pa.InfoHash == pc.InfoHash {
			same++
		}
	}
	if same > 0 {
		t.Errorf("%d peers have the same id or info hash under another seed", same)
	}
	if a.InfoHash(0) == a.InfoHash(1) {
		t.Error("torrents 0 and 1 share an info hash")
	}
}

func TestWorkloadSkew(t *testing.T) {
	for _, tc := range []struct {
		torrents, peers int
		tol             float64 // tolerance against exp(6.5) + peers/torrents
	}{
		// The exponential head adds about exp(6.5)·torrents/500 to the
		// weights; where that is small against peers, the head torrent
		// gets about exp(6.5) + peers/torrents peers.
		{torrents: 1000, peers: 200_000, tol: 0.02},
		{torrents: 10_000, peers: 2_000_000, tol: 0.02},
		// Where it is not, every torrent gets its share of the weights.
		{torrents: 10_000, peers: 50_000, tol: 0},
		{torrents: 1_000_000, peers: 2_000_000, tol: 0},
	} {
		w, err := NewWorkload(tc.torrents, tc.peers, 8, 1, 0.75)
		if err != nil {
			t.Fatal(err)
		}
		var total float64
		for i := range tc.torrents {
			total += Weight(i, tc.torrents, tc.peers)
		}
		share := func(i int) float64 { return float64(tc.peers) * Weight(i, tc.torrents, tc.peers) / total }
		lo, hi := w.TorrentPeers(0)
		head := float64(hi - lo)
		if math.Abs(head-share(0)) > 1 {
			t.Errorf("%d/%d: head torrent has %v peers, want its share %.1f", tc.torrents, tc.peers, head, share(0))
		}
		if tc.tol > 0 {
			want := math.Exp(6.5) + float64(tc.peers)/float64(tc.torrents)
			if math.Abs(head-want)/want > tc.tol {
				t.Errorf("%d/%d: head torrent has %v peers, want about %.0f", tc.torrents, tc.peers, head, want)
			}
		}
		// Each torrent gets its share rounded up or down, the head is
		// the most popular, and the tail is flat.
		sum := 0
		for i := range tc.torrents {
			lo, hi := w.TorrentPeers(i)
			if math.Abs(float64(hi-lo)-share(i)) > 1 {
				t.Fatalf("%d/%d: torrent %d has %d peers, want %.2f", tc.torrents, tc.peers, i, hi-lo, share(i))
			}
			for j := lo; j < hi; j++ {
				if w.TorrentOf(j) != i {
					t.Fatalf("peer %d is in torrent %d's range but belongs to %d", j, i, w.TorrentOf(j))
				}
			}
			sum += hi - lo
		}
		if sum != tc.peers {
			t.Errorf("%d/%d: torrents hold %d peers", tc.torrents, tc.peers, sum)
		}
		lo, hi = w.TorrentPeers(tc.torrents - 1)
		if tail := float64(hi - lo); tail*2 > head {
			t.Errorf("%d/%d: tail torrent has %v peers, head %v: no skew", tc.torrents, tc.peers, tail, head)
		}
	}
}

func TestWorkloadDistinctAddrPerTorrent(t *testing.T) {
	for _, addrs := range []int{1, 3, 16} {
		w, err := NewWorkload(2000, 300_000, addrs, 3, 0.75)
		if err != nil {
			t.Fatal(err)
		}
		type key struct {
			addr int
			port uint16
		}
		var p Peer
		for tor := range w.Torrents() {
			lo, hi := w.TorrentPeers(tor)
			seen := make(map[key]int, hi-lo)
			for j := lo; j < hi; j++ {
				w.Peer(j, &p)
				if p.Port < portBase {
					t.Fatalf("peer %d has port %d", j, p.Port)
				}
				k := key{p.AddrIndex, p.Port}
				if o, dup := seen[k]; dup {
					t.Fatalf("addrs=%d: peers %d and %d of torrent %d share %v", addrs, o, j, tor, k)
				}
				seen[k] = j
			}
		}
	}
}

func TestWorkloadSeeders(t *testing.T) {
	w, _ := NewWorkload(100, 100_000, 8, 1, 0.75)
	var p Peer
	seeders := 0
	for j := range w.Peers() {
		w.Peer(j, &p)
		if p.Seeder {
			seeders++
		}
	}
	if f := float64(seeders) / float64(w.Peers()); math.Abs(f-0.75) > 0.01 {
		t.Errorf("seeder share %.3f, want 0.75", f)
	}
}

func TestLanesPartitionPeers(t *testing.T) {
	for _, tc := range []struct{ peers, addrs, workers int }{
		{1000, 1, 1}, {1000, 4, 4}, {1000, 4, 7}, {1001, 8, 32}, {10, 8, 9}, {9, 8, 9}, {10, 8, 10}, {17, 8, 17}, {50_000, 8, 8},
	} {
		w, err := NewWorkload(10, tc.peers, tc.addrs, 1, 0.5)
		if err != nil {
			t.Fatal(err)
		}
		owner := make([]int, tc.peers)
		for i := range owner {
			owner[i] = -1
		}
		var p Peer
		for s := range tc.workers {
			l := w.lane(s, tc.workers)
			if l.n == 0 && tc.workers <= tc.peers {
				t.Fatalf("%+v: worker %d has no peers", tc, s)
			}
			if l.addr != s%tc.addrs {
				t.Fatalf("%+v: worker %d has address %d", tc, s, l.addr)
			}
			for i := range l.n {
				j := l.peer(i, tc.addrs)
				if j >= tc.peers || owner[j] >= 0 {
					t.Fatalf("%+v: worker %d's peer %d is out of range or taken by %d", tc, s, j, owner[j])
				}
				w.Peer(j, &p)
				if p.AddrIndex != l.addr {
					t.Fatalf("%+v: worker %d (address %d) plays peer %d of address %d", tc, s, l.addr, j, p.AddrIndex)
				}
				owner[j] = s
			}
		}
		for j, o := range owner {
			if o < 0 {
				t.Fatalf("%+v: peer %d is played by no worker", tc, j)
			}
		}
	}
}

func TestCycleVisitsAllOncePerRound(t *testing.T) {
	for _, n := range []int{1, 2, 3, 10, 64, 97, 1000} {
		c := newCycle(n, uint64(n))
		seen := make([]bool, n)
		for k := range n {
			i, first := c.next()
			if !first || seen[i] {
				t.Fatalf("n=%d step %d: index %d first=%v seen=%v", n, k, i, first, seen[i])
			}
			seen[i] = true
		}
		if _, first := c.next(); first {
			t.Fatalf("n=%d: second round still first", n)
		}
	}
}

func TestSourceAddr(t *testing.T) {
	for i, want := range map[int]string{0: "127.0.0.2", 1: "127.0.0.3", 253: "127.0.0.255", 254: "127.0.1.0"} {
		if got := SourceAddr(i).String(); got != want {
			t.Errorf("SourceAddr(%d) = %s, want %s", i, got, want)
		}
	}
}
