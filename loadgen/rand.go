package loadgen

// mix64 is the SplitMix64 finaliser: a bijective hash of x whose output
// bits all depend on every input bit. The workload derives every simulated
// attribute from mix64 of the seed and an index, so attributes are
// deterministic without being stored.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// rng is a small, fast, non-cryptographic generator (SplitMix64), one per
// worker so that no state is shared.
type rng struct{ s uint64 }

func newRNG(seed uint64) rng { return rng{s: mix64(seed)} }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// intn returns a number in [0, n) for 0 < n < 2^32 (Lemire's multiply
// method; the bias is below 2^-32 and irrelevant here).
func (r *rng) intn(n int) int {
	return int(((r.next() >> 32) * uint64(n)) >> 32)
}

// chance reports true with probability p.
func (r *rng) chance(p float64) bool {
	return float64(r.next()>>11)*(1.0/(1<<53)) < p
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
