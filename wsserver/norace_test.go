//go:build !race

package wsserver

const raceEnabled = false
