package memory

import "trackd/bittorrent"

// table is a shard's swarms: an open-addressing hash table (linear probing,
// backward-shift deletion, no tombstones) whose slots hold the swarm itself,
// so finding a swarm and reading its counts and peer slices costs one cache
// miss, where a Go map of *swarm costs three or four (control word, slot,
// and the swarm behind the pointer) in a store too big for the caches.
//
// A table grows by a quarter when more than 3/4 full (to the allocator's
// size class) and slots are placed by multiply-shift rather than by a power
// of two mask, so the table stays 60-75% full: about 110 bytes a swarm,
// what a Go map of pointers costs counting the swarms behind them.
type table struct {
	slots []slot // at most 3/4 used; nil when empty
	n     int
}

// slot is 72 bytes.
type slot struct {
	hash bittorrent.InfoHash
	tag  uint32 // 0 for an empty slot, else 1<<31 | the low 31 bits of the hash
	sw   swarm
}

// minSlots is the smallest table that is allocated.
const minSlots = 8

// tagOf makes the tag of a 64-bit hash.
func tagOf(hash uint64) uint32 { return uint32(hash) | 1<<31 }

// home returns the slot where a probe for tag starts in a table of n slots.
func home(tag uint32, n int) int { return int(uint64(tag&(1<<31-1)) * uint64(n) >> 31) }

// find returns the index of the slot of h, whose tag is tag, and whether it
// is there; if it is not, the index is where it would go.
func (t *table) find(h *bittorrent.InfoHash, tag uint32) (int, bool) {
	if t.slots == nil {
		return -1, false
	}
	n := len(t.slots)
	for i := home(tag, n); ; {
		s := &t.slots[i]
		if s.tag == tag && s.hash == *h {
			return i, true
		}
		if s.tag == 0 {
			return i, false
		}
		if i++; i == n {
			i = 0
		}
	}
}

// insert adds h, which must not be there, at index i returned by find, and
// returns the index of its slot, which holds a zero swarm.
func (t *table) insert(h *bittorrent.InfoHash, tag uint32, i int) int {
	if t.slots == nil || (t.n+1)*4 > len(t.slots)*3 {
		t.resize(max(minSlots, newCap(len(t.slots))))
		i, _ = t.find(h, tag)
	}
	t.slots[i] = slot{hash: *h, tag: tag}
	t.n++
	return i
}

// remove empties slot i, shifting back the slots after it that would
// otherwise become unreachable. A slot after i may move into i, none moves
// into a slot before i but by wrapping around from the start of the table,
// so a scan by increasing index that removes the slot it is on and looks at
// the same index again visits every slot at least once. remove never
// resizes the table: call shrink when done.
func (t *table) remove(i int) {
	n := len(t.slots)
	for j := i; ; {
		if j++; j == n {
			j = 0
		}
		if t.slots[j].tag == 0 {
			break
		}
		// Slot j may fill the hole at i unless its home lies cyclically in
		// (i, j].
		h := home(t.slots[j].tag, n)
		if (i < j && i < h && h <= j) || (i > j && (i < h || h <= j)) {
			continue
		}
		t.slots[i] = t.slots[j]
		i = j
	}
	t.slots[i] = slot{}
	t.n--
}

// shrink frees the array of an empty table and halves one at most 1/4
// used.
func (t *table) shrink() {
	switch {
	case t.n == 0:
		t.slots = nil
	case len(t.slots) > minSlots && t.n*4 < len(t.slots):
		t.resize(max(minSlots, len(t.slots)/2))
	}
}

// resize moves every slot into a new array of at least n slots (as many as
// fit the allocator's size class).
func (t *table) resize(n int) {
	old := t.slots
	t.slots = append([]slot(nil), make([]slot, n)...)
	t.slots = t.slots[:cap(t.slots)]
	n = len(t.slots)
	for k := range old {
		if old[k].tag == 0 {
			continue
		}
		i := home(old[k].tag, n)
		for t.slots[i].tag != 0 {
			if i++; i == n {
				i = 0
			}
		}
		t.slots[i] = old[k]
	}
}
