package memory

import (
	"encoding/binary"
	"hash/maphash"

	"trackd/bittorrent"
)

// table is a shard's swarms: an open-addressing hash table (linear probing,
// backward-shift deletion, no tombstones) whose 48-byte slots hold the
// swarm itself, in a block of the store's heap, so finding a swarm and
// reading its counts and IPv4 family's header costs one cache miss, where a
// Go map of *swarm costs three or four (control word, slot, and the swarm
// behind the pointer) in a store too big for the caches.
//
// A slot is placed by the low 32 bits of the keyed hash of its info hash
// (the shard's number comes from the high bits), by multiply-shift, so the
// table may have any number of slots: it grows by a quarter when more than
// 3/4 full (to the size of its block), staying 60-75% full: about 70 bytes
// a swarm. A slot keeps no hash of its own: moving one (deletion, growth)
// hashes its info hash again.
type table struct {
	h    handle    // the block of slots; 0 when the table is empty
	size blockSize // of the block
	n    uint32    // swarms
}

// minSlots is the smallest table that is allocated.
const minSlots = 8

// slots returns the table's slots.
func (t *table) slots(sh *shard) []swarm { return view[swarm](sh, t.h, t.size) }

// home returns the slot where a probe for a key of hash hash starts in a
// table of n slots.
func home(hash uint64, n int) int { return int(uint64(uint32(hash)) * uint64(n) >> 32) }

// find returns the index of the slot of h, whose keyed hash is hash, and
// whether it is there; if it is not, the index is where it would go.
func (t *table) find(sh *shard, h *bittorrent.InfoHash, hash uint64) (int, bool) {
	sw, i := t.lookup(sh, h, hash)
	return i, sw != nil
}

// lookup is find returning the swarm too: nil if h is not there.
func (t *table) lookup(sh *shard, h *bittorrent.InfoHash, hash uint64) (*swarm, int) {
	slots := t.slots(sh)
	n := len(slots)
	if n == 0 {
		return nil, -1
	}
	for i := home(hash, n); ; {
		s := &slots[i]
		if s.minExp == 0 {
			return nil, i
		}
		if sameHash(&s.hash, h) {
			return s, i
		}
		if i++; i == n {
			i = 0
		}
	}
}

// sameHash is a == b, in three loads each and no call.
func sameHash(a, b *bittorrent.InfoHash) bool {
	return binary.LittleEndian.Uint64(a[:8]) == binary.LittleEndian.Uint64(b[:8]) &&
		binary.LittleEndian.Uint64(a[8:16]) == binary.LittleEndian.Uint64(b[8:16]) &&
		binary.LittleEndian.Uint32(a[16:]) == binary.LittleEndian.Uint32(b[16:])
}

// insert adds h, which must not be there, at index i returned by find, and
// returns the index of its slot, which holds a swarm with no peer.
func (t *table) insert(sh *shard, seed maphash.Seed, h *bittorrent.InfoHash, hash uint64, i int) int {
	if n := len(t.slots(sh)); n == 0 || (int(t.n)+1)*4 > n*3 {
		t.resize(sh, seed, max(minSlots, n+n/4+1))
		i, _ = t.find(sh, h, hash)
	}
	t.slots(sh)[i] = swarm{hash: *h, minExp: noExp}
	t.n++
	return i
}

// remove empties slot i, shifting back the slots after it that would
// otherwise become unreachable. A slot after i may move into i, none moves
// into a slot before i but by wrapping around from the start of the table,
// so a scan by increasing index that removes the slot it is on and looks at
// the same index again visits every slot at least once. remove never
// resizes the table: call shrink when done. The swarm's blocks must have
// been freed.
func (t *table) remove(sh *shard, seed maphash.Seed, i int) {
	slots := t.slots(sh)
	n := len(slots)
	for j := i; ; {
		if j++; j == n {
			j = 0
		}
		if slots[j].minExp == 0 {
			break
		}
		// Slot j may fill the hole at i unless its home lies cyclically in
		// (i, j].
		h := home(maphash.Bytes(seed, slots[j].hash[:]), n)
		if (i < j && i < h && h <= j) || (i > j && (i < h || h <= j)) {
			continue
		}
		slots[i] = slots[j]
		i = j
	}
	slots[i] = swarm{}
	t.n--
}

// shrink frees the block of an empty table and halves one at most 1/4
// used.
func (t *table) shrink(sh *shard, seed maphash.Seed) {
	switch n := len(t.slots(sh)); {
	case t.n == 0 && t.h != 0:
		sh.free(t.h, t.size)
		*t = table{}
	case n > minSlots && int(t.n)*4 < n:
		t.resize(sh, seed, max(minSlots, n/2))
	}
}

// resize moves every slot into a new block of at least n slots (as many as
// fit the block).
func (t *table) resize(sh *shard, seed maphash.Seed, n int) {
	old, oldH, oldSize := t.slots(sh), t.h, t.size
	t.h, t.size = sh.alloc(n*int(swarmSize), true)
	slots := t.slots(sh)
	n = len(slots)
	for k := range old {
		if old[k].minExp == 0 {
			continue
		}
		i := home(maphash.Bytes(seed, old[k].hash[:]), n)
		for slots[i].minExp != 0 {
			if i++; i == n {
				i = 0
			}
		}
		slots[i] = old[k]
	}
	if oldH != 0 {
		sh.free(oldH, oldSize)
	}
}

// spare returns the bytes of the slots the table can still fill before it
// grows (to 3/4 full).
func (t *table) spare() int64 {
	n := t.size.bytes() / int(swarmSize)
	return int64(max(n*3/4-int(t.n), 0)) * int64(swarmSize)
}
