//go:build race

package wsserver

// raceEnabled: the race detector multiplies memory, so TestIdleMemory
// only reports it.
const raceEnabled = true
