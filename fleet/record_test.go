package fleet

import (
	"net/netip"
	"testing"

	"trackd/bittorrent"
	"trackd/store"
)

// BenchmarkRecord measures what the Store adds to an announce: recording
// its change in the open batch (the batches pile up and the oldest are
// dropped, as no Node publishes them).
func BenchmarkRecord(b *testing.B) {
	s := NewStore(nil, StoreConfig{MaxPending: 1 << 20})
	a := store.Announce{
		InfoHash: bittorrent.InfoHash{1, 2, 3},
		Peer:     bittorrent.Peer{ID: bittorrent.PeerID{'-'}, Addr: netip.MustParseAddrPort("10.1.2.3:6881")},
		Seeder:   true,
	}
	b.ReportAllocs()
	for b.Loop() {
		s.record(&a)
	}
}
