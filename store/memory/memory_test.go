package memory

import (
	"testing"

	"trackd/store"
	"trackd/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, opts store.Options) store.Store {
		return New(opts)
	})
}

// The suite again with a single shard and no background sweeper: every
// swarm shares one lock, and expiry rests on the request paths alone.
func TestConformanceOneShardNoSweeper(t *testing.T) {
	storetest.Run(t, func(t *testing.T, opts store.Options) store.Store {
		return NewWithConfig(opts, Config{Shards: 1, SweepInterval: -1})
	})
}
