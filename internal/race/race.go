// Package race tells whether the program was built with the race detector
// (go test -race), for the tests whose measurements it distorts: it
// allocates on its own and makes sync.Pool drop a quarter of what is put
// back on purpose, so allocation counts mean nothing under it; and it slows
// code down several times, so latency bounds must allow for that and long
// model tests may run fewer steps.
package race
