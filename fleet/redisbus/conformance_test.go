package redisbus

import (
	"testing"

	"trackd/fleet"
	"trackd/fleet/fleettest"
	"trackd/internal/redistest"
)

// TestConformance runs fleettest's behaviour suite on a server and on a
// three-master cluster, each Bus on a flushed database.
func TestConformance(t *testing.T) {
	t.Run("Single", func(t *testing.T) {
		s := redistest.Start(t)
		fleettest.TestBus(t, 50, func(t *testing.T) fleet.Bus {
			if err := s.Client().FlushAll(testCtx(t, 10e9)).Err(); err != nil {
				t.Fatal(err)
			}
			return open(t, s.URL(), Options{MaxLen: 50})
		})
	})
	t.Run("Cluster", func(t *testing.T) {
		c := redistest.StartCluster(t, 3)
		fleettest.TestBus(t, 50, func(t *testing.T) fleet.Bus {
			for _, n := range c.Nodes {
				if err := n.Client().FlushAll(testCtx(t, 10e9)).Err(); err != nil {
					t.Fatal(err)
				}
			}
			return open(t, c.URL(), Options{MaxLen: 50 * ClusterStreams})
		})
	})
}
