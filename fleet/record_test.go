package fleet

import (
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/internal/cputime"
	"trackd/store"
	"trackd/store/memory"
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

// BenchmarkApply measures what a reader pays per change of another
// instance: decoding it and replaying it into an in-memory store of
// 100,000 peers (every change a re-announce of a known peer).
func BenchmarkApply(b *testing.B) {
	mem := memory.New(store.Options{PeerLifetime: time.Hour})
	defer mem.Close()
	n, err := NewNode(NewStore(mem, StoreConfig{}), oneStream{}, Config{})
	if err != nil {
		b.Fatal(err)
	}
	const peers = 100_000
	var changes []Change
	for i := range peers {
		var h bittorrent.InfoHash
		binary.LittleEndian.PutUint64(h[:], uint64(i%10_000)*0x9E3779B97F4A7C15)
		changes = append(changes, Change{
			InfoHash: h,
			Peer:     bittorrent.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 6881)},
			Seeder:   i%4 != 0,
		})
	}
	// Batches of 1,000 changes (27 KB), numbered on.
	var batches [][]byte
	for i := 0; i < peers; i += 1000 {
		bt, err := AppendBatch(nil, Header{Origin: Instance{7}, First: uint64(i + 1)}, changes[i:i+1000])
		if err != nil {
			b.Fatal(err)
		}
		batches = append(batches, bt)
	}
	ctx := context.Background()
	origins := make(map[Instance]*origin)
	var buf []store.Announce
	now := time.Now()
	for _, bt := range batches {
		n.apply(ctx, 0, bt, origins, now, nil, &buf)
	}
	b.ReportAllocs()
	b.ResetTimer()
	defer cputime.PerOp(b)()
	k := 0
	for i := 0; i < b.N; i += 1000 {
		delete(origins, Instance{7}) // read again: not a duplicate
		n.apply(ctx, 0, batches[k], origins, now, nil, &buf)
		if k++; k == len(batches) {
			k = 0
		}
	}
}

// oneStream is a Bus of one stream that is never called.
type oneStream struct{ Bus }

func (oneStream) NumStreams() int { return 1 }
