package fleettest

import (
	"testing"

	"trackd/fleet"
)

// TestConformance holds the Bus in memory to the behaviour of the Redis
// bus (fleet/redisbus runs the same suite).
func TestConformance(t *testing.T) {
	for _, n := range []int{1, 4} {
		t.Run(map[int]string{1: "OneStream", 4: "FourStreams"}[n], func(t *testing.T) {
			TestBus(t, 50, func(t *testing.T) fleet.Bus {
				b := NewBus(n)
				b.MaxLen = 50
				return b
			})
		})
	}
}
