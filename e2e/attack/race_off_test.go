//go:build !race

package attack

// raceSlowdown scales the latency bounds: the race detector slows the
// test's clients down, and so what they measure.
const raceSlowdown = 1
