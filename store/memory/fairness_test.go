package memory

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"trackd/bittorrent"
	"trackd/internal/race"
	"trackd/store"
)

// fairness is how fairly a sampler hands out the m candidates of a swarm,
// k at a time, over many announces.
type fairness struct {
	// Each candidate's count over the draws: chi-square against the
	// uniform count per degree of freedom (about 1-k/m for a sampler that
	// gives each candidate probability k/m in independent draws), the
	// coefficient of variation and max/min.
	chi2, cv, maxMin float64
	// The probability that a candidate's neighbour in the records is in
	// the same answer as it: (k-1)/(m-1) for a uniform choice of k of m.
	adjacent float64
	// The overlap of consecutive answers (to different peers): mean and
	// standard deviation, and the share of pairs of answers that overlap
	// at all.
	overlapMean, overlapSD, overlapAny float64
}

// measureFairness samples k of the m candidates of a swarm of m IPv4
// leechers draws times with the given run length, as pick does, for an
// announcing peer outside the swarm.
func measureFairness(t *testing.T, m, k, run, draws int, seed uint64) fairness {
	sh, release := newShard(false)
	defer release()
	sh.rng.Seed(seed, seed^0x5eed)
	get := addSwarm(sh)
	for i := range m {
		a := store.Announce{}
		sh.apply4(get(), &a, uint32(i+1), 1, 100)
		sh.tidyMemory() // as after each request
	}
	sw := get()
	recs, _ := sh.peers4(sw)
	pos := make([]int32, m+1) // by ip
	for i := range recs {
		pos[recs[i].ip] = int32(i)
	}
	c := sh.candidates(sw, false, bittorrent.AnyFamily, -1, -1)
	if c.m != m {
		t.Fatalf("%d candidates, want %d", c.m, m)
	}
	counts := make([]int, m)
	stamp := make([]int32, m) // 1 + the last draw that picked each
	prev := make([]int32, 0, k)
	cur := make([]int32, 0, k)
	buf := make([]bittorrent.Peer, 0, k)
	adjacent := 0
	var ov, ov2, ovAny float64
	for d := range draws {
		buf = c.sample(&sh.rng, k, run, buf[:0])
		if len(buf) != k {
			t.Fatalf("draw %d: %d peers, want %d", d, len(buf), k)
		}
		cur = cur[:0]
		for _, p := range buf {
			b := p.Addr.Addr().As4()
			i := pos[uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3])]
			if stamp[i] == int32(d+1) {
				t.Fatalf("draw %d: candidate %d twice", d, i)
			}
			stamp[i] = int32(d + 1)
			counts[i]++
			cur = append(cur, i)
		}
		for _, i := range cur {
			if i+1 < int32(m) && stamp[i+1] == int32(d+1) {
				adjacent++
			}
		}
		if d > 0 {
			o := 0
			for _, i := range prev {
				if stamp[i] == int32(d+1) {
					o++
				}
			}
			ov += float64(o)
			ov2 += float64(o * o)
			if o > 0 {
				ovAny++
			}
		}
		prev, cur = cur, prev
	}
	var f fairness
	exp := float64(draws) * float64(k) / float64(m)
	lo, hi := math.MaxInt, 0
	var ss float64
	for _, c := range counts {
		ss += (float64(c) - exp) * (float64(c) - exp)
		lo, hi = min(lo, c), max(hi, c)
	}
	f.chi2 = ss / exp / float64(m-1)
	f.cv = math.Sqrt(ss/float64(m)) / exp
	f.maxMin = float64(hi) / float64(max(lo, 1))
	// adjacent counts the pairs (i, i+1) in the same answer: each
	// candidate but the last is in draws*k/m answers.
	f.adjacent = float64(adjacent) / (float64(m-1) * float64(draws) * float64(k) / float64(m))
	n := float64(draws - 1)
	f.overlapMean = ov / n
	f.overlapSD = math.Sqrt(max(ov2/n-f.overlapMean*f.overlapMean, 0))
	f.overlapAny = ovAny / n
	return f
}

// perCandidate is how many times TestPickFairness expects to hand out
// each candidate (50 under the race detector or with -short).
const perCandidate = 200

// TestPickFairness measures how fairly pick's sampler hands out the
// candidates of swarms of 1,000 to 100,000 (see fairness), one by one (run
// 1, the sampler before runs), in runs of runLen (what pick does from
// runMin candidates) and in a single run of k (as opentracker does, but
// from a random rotation), and checks that runs of runLen keep each
// candidate's share uniform and the overlap of answers what a uniform
// choice gives. Run with -v for the table, which the package doc quotes.
func TestPickFairness(t *testing.T) {
	var tab strings.Builder
	fmt.Fprintf(&tab, "%7s %4s %4s %8s %7s %7s %7s %8s %8s %13s %9s\n", "m", "k", "run", "chi2/dof", "cv", "cv-bin", "max/min", "adjacent", "adj-uni", "overlap", "overlap>0")
	for _, tc := range []struct{ m, k int }{{1000, 50}, {10_000, 50}, {10_000, 200}, {100_000, 50}} {
		// Each candidate expected per times.
		per := perCandidate
		if race.Enabled || testing.Short() {
			per = 50
		}
		draws := per * tc.m / tc.k
		for _, run := range []int{1, runLen, tc.k} {
			f := measureFairness(t, tc.m, tc.k, run, draws, uint64(tc.m+run))
			p := float64(tc.k) / float64(tc.m)
			cvBin := math.Sqrt((1 - p) / (float64(draws) * p))
			uni := float64(tc.k) * float64(tc.k) / float64(tc.m)
			fmt.Fprintf(&tab, "%7d %4d %4d %8.3f %7.4f %7.4f %7.2f %8.4f %8.4f %6.2f ± %4.2f %9.4f\n",
				tc.m, tc.k, run, f.chi2, f.cv, cvBin, f.maxMin, f.adjacent, float64(tc.k-1)/float64(tc.m-1), f.overlapMean, f.overlapSD, f.overlapAny)
			if run != runLen {
				continue
			}
			// Each candidate's count is Binomial(draws, p) for a
			// sampler with exact marginals and independent draws:
			// chi2/dof is about 1-p, within a few sqrt(2/(m-1)).
			if want, tol := 1-p, 6*math.Sqrt(2/float64(tc.m-1))+0.02; math.Abs(f.chi2-want) > tol {
				t.Errorf("m %d k %d run %d: chi2/dof %.3f, want %.3f ± %.3f", tc.m, tc.k, run, f.chi2, want, tol)
			}
			// Consecutive answers are independent: their mean overlap is
			// k²/m, as for a uniform choice.
			if se := 6 * (f.overlapSD + 0.1) / math.Sqrt(float64(draws-1)); math.Abs(f.overlapMean-uni) > se {
				t.Errorf("m %d k %d run %d: mean overlap %.3f, want %.3f ± %.3f", tc.m, tc.k, run, f.overlapMean, uni, se)
			}
		}
	}
	t.Logf("fairness of pick's sampler (each candidate expected %d times; cv-bin is the cv of binomial counts, adj-uni the adjacent of a uniform choice):\n%s", perCandidate, tab.String())
}
