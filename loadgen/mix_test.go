package loadgen

import (
	"math"
	"testing"

	"trackd/bittorrent"
)

// The peers of a Zipf workload follow the law they were dealt by: the
// slope of log(peers) against log(rank + 1) over the 200 hottest torrents
// is −s, and the hottest holds peers / H(T, s) of them.
func TestZipfWorkloadFollowsExponent(t *testing.T) {
	const torrents, peers = 10_000, 1_000_000
	for _, s := range []float64{0.8, 1.0, 1.2} {
		w, err := NewZipfWorkload(torrents, peers, 8, 1, 0.75, s)
		if err != nil {
			t.Fatal(err)
		}
		var sx, sy, sxx, sxy float64
		const n = 200
		for i := range n {
			lo, hi := w.TorrentPeers(i)
			x, y := math.Log(float64(i+1)), math.Log(float64(hi-lo))
			sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
		}
		slope := (n*sxy - sx*sy) / (n*sxx - sx*sx)
		if math.Abs(slope+s) > 0.02 {
			t.Errorf("s=%g: fitted exponent %.4f", s, -slope)
		}
		var h float64
		for i := range torrents {
			h += ZipfWeight(i, s)
		}
		lo, hi := w.TorrentPeers(0)
		if want := peers / h; math.Abs(float64(hi-lo)-want) > 1 {
			t.Errorf("s=%g: hottest torrent has %d peers, want %.1f", s, hi-lo, want)
		}
		if lo, hi := w.TorrentPeers(torrents - 1); hi != peers || lo > hi {
			t.Errorf("s=%g: peers not all dealt: last torrent [%d, %d)", s, lo, hi)
		}
	}
}

func TestZipfWorkloadRefusesBadExponent(t *testing.T) {
	for _, s := range []float64{0, -1, MaxZipf + 0.1, math.NaN(), math.Inf(1)} {
		if _, err := NewZipfWorkload(10, 100, 1, 1, 0.5, s); err == nil {
			t.Errorf("exponent %g accepted", s)
		}
	}
}

// isScrape asks for scrapes in the share asked, and pickScrape for 1..most
// distinct hashes, uniformly (mean (most+1)/2).
func TestScrapeShareAndHashes(t *testing.T) {
	w, err := NewZipfWorkload(1000, 100_000, 1, 1, 0.75, 1.0)
	if err != nil {
		t.Fatal(err)
	}
	const draws = 200_000
	for _, tc := range []struct {
		share float64
		most  int
	}{
		{0, 10}, {0.01, 10}, {0.1, 1}, {0.1, 10}, {0.2, 10}, {1, 74},
	} {
		cfg := Config{ScrapeShare: tc.share, ScrapeMaxHashes: tc.most}
		r := newRNG(42)
		scrapes, hashes := 0, 0
		var dst []bittorrent.InfoHash
		for range draws {
			if cfg.isScrape(&r) {
				scrapes++
				dst = pickScrape(&r, w, tc.most, dst[:0])
				hashes += len(dst)
				if len(dst) < 1 || len(dst) > tc.most {
					t.Fatalf("share %g: scrape of %d hashes, want 1..%d", tc.share, len(dst), tc.most)
				}
				for i := range dst {
					for j := range i {
						if dst[i] == dst[j] {
							t.Fatalf("share %g: hash %x twice in one scrape", tc.share, dst[i])
						}
					}
				}
			}
		}
		got := float64(scrapes) / draws
		// 4 standard deviations of a binomial share
		if tol := 4 * math.Sqrt(tc.share*(1-tc.share)/draws); math.Abs(got-tc.share) > tol+1e-12 {
			t.Errorf("share %g: got %.4f (tolerance %.4f)", tc.share, got, tol)
		}
		if scrapes > 0 {
			mean := float64(hashes) / float64(scrapes)
			if want := float64(tc.most+1) / 2; math.Abs(mean-want) > 0.05*want {
				t.Errorf("share %g, 1..%d hashes: mean %.2f hashes a scrape, want about %.1f", tc.share, tc.most, mean, want)
			}
		}
	}
}

// laneEvents gives the shares of events asked for: the first announce is
// started, a peer that stopped starts again on its next announce, seeders
// never complete.
func TestLaneEvents(t *testing.T) {
	const n, rounds = 1000, 200
	for _, tc := range []struct {
		stopped, completed float64
	}{
		{0, 0}, {0.02, 0}, {0, 0.05}, {0.05, 0.05}, {0.2, 0.3},
	} {
		cfg := Config{Stopped: tc.stopped, Completed: tc.completed}
		e := newLaneEvents(n, &cfg)
		r := newRNG(7)
		var count [4]int
		last := make([]event, n)
		later, leecherLater := 0, 0
		for round := range rounds {
			for local := range n {
				seeder := local%4 != 0 // a quarter are leechers
				ev := e.next(&r, &cfg, local, round == 0, seeder)
				switch {
				case round == 0 && ev != evStarted:
					t.Fatalf("%+v: first announce has event %d", tc, ev)
				case last[local] == evStopped && ev != evStarted:
					t.Fatalf("%+v: announce after stopped has event %d", tc, ev)
				case seeder && ev == evCompleted:
					t.Fatalf("%+v: a seeder completed", tc)
				}
				if round > 0 && last[local] != evStopped {
					count[ev]++
					later++
					if !seeder && ev != evStopped {
						leecherLater++
					}
				}
				last[local] = ev
			}
		}
		check := func(what string, got, of int, p float64) {
			share := float64(got) / float64(of)
			if tol := 4*math.Sqrt(p*(1-p)/float64(of)) + 1e-12; math.Abs(share-p) > tol {
				t.Errorf("%+v: %s share %.4f, want %.4f ± %.4f", tc, what, share, p, tol)
			}
		}
		check("stopped", count[evStopped], later, tc.stopped)
		check("completed (of leechers' announces not stopped)", count[evCompleted], leecherLater, tc.completed)
		if count[evStarted] != 0 {
			t.Errorf("%+v: %d started announces that were neither first nor after a stop", tc, count[evStarted])
		}
	}
}

func TestLaneEventsDoNotAllocate(t *testing.T) {
	cfg := Config{Stopped: 0.1, Completed: 0.1}
	e := newLaneEvents(100, &cfg)
	r := newRNG(1)
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		e.next(&r, &cfg, i%100, false, i%2 == 0)
		i++
	}); n != 0 {
		t.Errorf("picking an event allocates %v times", n)
	}
}
