//go:build race

package http

// raceEnabled: under the race detector sync.Pool drops a quarter of what
// is put back on purpose, so pooled state is reallocated now and then and
// allocation counts mean nothing.
const raceEnabled = true
