package memory

import (
	"math/rand/v2"
	"testing"
	"unsafe"

	"trackd/bittorrent"
)

func TestSlotSize(t *testing.T) {
	if n := unsafe.Sizeof(slot{}); n != 72 {
		t.Errorf("slot is %d bytes, want 72", n)
	}
}

// TestTable checks the table against a Go map under random inserts and
// removals, with tags forced to collide a lot (few distinct low bits), and
// checks that a scan that removes as it goes visits every entry.
func TestTable(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var tb table
	ref := make(map[bittorrent.InfoHash]uint32) // hash -> downloaded
	key := func(i int) (bittorrent.InfoHash, uint32) {
		var h bittorrent.InfoHash
		h[0], h[1] = byte(i), byte(i>>8)
		return h, tagOf(uint64(i % 37 * 5)) // many collisions
	}
	check := func(step int) {
		t.Helper()
		if tb.n != len(ref) {
			t.Fatalf("step %d: %d entries, want %d", step, tb.n, len(ref))
		}
		if tb.slots != nil && tb.n*4 > len(tb.slots)*3 {
			t.Fatalf("step %d: %d entries in %d slots", step, tb.n, len(tb.slots))
		}
		for i := range 600 {
			h, tag := key(i)
			j, ok := tb.find(&h, tag)
			want, in := ref[h]
			if ok != in || (ok && tb.slots[j].sw.downloaded != want) {
				t.Fatalf("step %d: find(%d) = %v, want %v", step, i, ok, in)
			}
		}
	}
	for step := range 30000 {
		i := rng.IntN(600)
		h, tag := key(i)
		j, ok := tb.find(&h, tag)
		switch {
		case !ok && rng.IntN(3) > 0:
			j = tb.insert(&h, tag, j)
			tb.slots[j].sw.downloaded = uint32(step)
			ref[h] = uint32(step)
		case ok:
			tb.remove(j)
			tb.shrink()
			delete(ref, h)
		}
		if step%5000 == 4999 {
			// A scan removing about half, as sweepShard does.
			visited := make(map[bittorrent.InfoHash]int)
			for j := 0; j < len(tb.slots); {
				sl := &tb.slots[j]
				if sl.tag == 0 {
					j++
					continue
				}
				visited[sl.hash]++
				if sl.sw.downloaded%2 == 0 {
					delete(ref, sl.hash)
					tb.remove(j)
					continue
				}
				j++
			}
			tb.shrink()
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
