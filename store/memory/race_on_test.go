//go:build race

package memory

// raceEnabled: the race detector slows the long single-goroutine model
// tests down tenfold, and finds nothing more in them than in a quarter of
// their steps.
const raceEnabled = true
