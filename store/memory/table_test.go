package memory

import (
	"hash/maphash"
	"math/rand/v2"
	"testing"

	"trackd/bittorrent"
)

// TestTable checks the table against a Go map under random inserts and
// removals, with hashes forced to collide a lot (few distinct low bits),
// and checks that a scan that removes as it goes visits every entry.
func TestTable(t *testing.T) {
	sh, release := newShard(false)
	defer release()
	seed := maphash.MakeSeed()
	rng := rand.New(rand.NewPCG(7, 8))
	tb := &sh.swarms
	ref := make(map[bittorrent.InfoHash]uint32) // hash -> downloaded
	// key returns the info hash of i, chosen among many so that the low
	// bits of their keyed hashes (the slot's home) collide a lot.
	homes := make(map[uint64][]bittorrent.InfoHash)
	var keys []bittorrent.InfoHash
	for i := 0; len(keys) < 600; i++ {
		var h bittorrent.InfoHash
		h[0], h[1], h[2] = byte(i), byte(i>>8), byte(i>>16)
		low := uint64(uint32(maphash.Bytes(seed, h[:]))) >> 27 // 32 homes at most
		if len(homes[low]) < 30 {
			homes[low] = append(homes[low], h)
			keys = append(keys, h)
		}
	}
	hashOf := func(h *bittorrent.InfoHash) uint64 { return maphash.Bytes(seed, h[:]) }
	check := func(step int) {
		t.Helper()
		n := len(tb.slots(sh))
		if int(tb.n) != len(ref) {
			t.Fatalf("step %d: %d entries, want %d", step, tb.n, len(ref))
		}
		if n > 0 && int(tb.n)*4 > n*3 {
			t.Fatalf("step %d: %d entries in %d slots", step, tb.n, n)
		}
		for i := range keys {
			h := &keys[i]
			j, ok := tb.find(sh, h, hashOf(h))
			want, in := ref[*h]
			if ok != in || (ok && tb.slots(sh)[j].downloaded != want) {
				t.Fatalf("step %d: find(%d) = %v, want %v", step, i, ok, in)
			}
		}
	}
	for step := range 30000 {
		h := &keys[rng.IntN(len(keys))]
		j, ok := tb.find(sh, h, hashOf(h))
		switch {
		case !ok && rng.IntN(3) > 0:
			j = tb.insert(sh, seed, h, hashOf(h), j)
			tb.slots(sh)[j].downloaded = uint32(step)
			ref[*h] = uint32(step)
		case ok:
			tb.remove(sh, seed, j)
			tb.shrink(sh, seed)
			delete(ref, *h)
		}
		if step%5000 == 4999 {
			// A scan removing about half, as sweepShard does.
			visited := make(map[bittorrent.InfoHash]int)
			for j := 0; j < len(tb.slots(sh)); {
				sl := &tb.slots(sh)[j]
				if sl.minExp == 0 {
					j++
					continue
				}
				visited[sl.hash]++
				if sl.downloaded%2 == 0 {
					delete(ref, sl.hash)
					tb.remove(sh, seed, j)
					continue
				}
				j++
			}
			tb.shrink(sh, seed)
			for h := range ref {
				if visited[h] == 0 {
					t.Fatalf("scan missed an entry")
				}
			}
		}
		if step%100 == 0 {
			check(step)
		}
	}
	check(-1)
}
