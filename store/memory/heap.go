package memory

import (
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"unsafe"
)

// The store's own memory: swarm tables and peer arrays live outside the Go
// heap, in blocks the store allocates, moves and frees itself.
//
// Why: the garbage collector sizes the Go heap at about twice what is live
// (GOGC=100) and leaves the pages it has used resident, so every byte of
// peer data kept in the Go heap costs about two in the resident set once
// anything else allocates. Peer data holds no pointers, needs no
// collection (the store knows exactly when a block dies) and is most of
// the process; kept apart, it costs its own size, and the Go heap stays a
// few megabytes whatever the number of peers.
//
// Blocks are 8-byte aligned and come in size classes: every multiple of 8
// bytes up to 128, then eight classes per doubling (12.5% apart at most)
// up to 64 KiB. Each shard carves the blocks of its swarms from a region
// of its own (mapped memory, touched page by page as it is carved, so its
// untouched tail costs nothing), reusing the blocks it frees through a free
// list per class. Blocks of a class nobody needs any more (swarms grow
// through the classes below their size, tables through theirs) would stay
// free for ever: so when the free blocks reach an eighth of what the
// region has carved, the shard compacts it, copying its live blocks into a
// new region and unmapping the old. Every block has one owner that the
// shard can walk to (a swarm, its extra block, its table), so compaction
// needs no block headers; it is O(size of the shard), and happens only
// between operations, never while anything points into the region.
//
// Blocks above 64 KiB (big swarms, big tables) are mapped one by one and
// unmapped when freed; they are the store's, not a shard's, and never move.
//
// A block is named by a 32-bit handle (see handle); the owner of a handle
// remembers the block's size (blockSize) and gives it back with free.

// handle names a block; 0 names none. A large block's handle is largeBit |
// its number in the heap's table of large blocks. A small block's is its
// chunk of the shard's region (0 to 3, see region) << chunkShift | its
// offset in the chunk in 8-byte units.
type handle uint32

const (
	largeBit   = 1 << 31
	chunkShift = 29
	offsetMask = 1<<chunkShift - 1
	maxChunks  = 4

	largePageBits = 9
	largePages    = 1 << (18 - largePageBits) // the table of large blocks holds up to 2^18 of them
)

// blockSize is the size of a block in 8-byte units: what alloc returns and
// free takes back.
type blockSize uint32

func (n blockSize) bytes() int { return int(n) << 3 }

// Size classes.
const (
	maxSmall   = 64 << 10 // the largest size class
	numClasses = 16 + 9*8 // 8..128 by 8, then 8 per doubling from 128 to 64 KiB
)

// classOf returns the smallest size class of at least n bytes, 0 < n <=
// maxSmall.
func classOf(n int) int {
	if n <= 128 {
		return (n+7)>>3 - 1
	}
	k := bits.Len(uint(n-1)) - 1 // 2^k < n <= 2^(k+1), k >= 7
	step := 1 << (k - 3)
	return 16 + (k-7)*8 + (n-1<<k+step-1)/step - 1
}

// classSize returns the size of class c in bytes.
func classSize(c int) int {
	if c < 16 {
		return (c + 1) << 3
	}
	c -= 16
	k := 7 + c/8
	return 1<<k + (c%8+1)<<(k-3)
}

// roundSize returns the size of the block alloc makes for n bytes.
func roundSize(n int) int {
	if n <= maxSmall {
		return classSize(classOf(n))
	}
	return roundPage(n)
}

// pageSize is the unit memory is mapped in.
const pageSize = 4096

func roundPage(n int) int { return (n + pageSize - 1) &^ (pageSize - 1) }

// heap is the store's large blocks.
//
// The table of large blocks is read without a lock, by whoever holds a
// handle: an entry is written (under mu) before any handle to it exists,
// and the handle reaches other goroutines only through a shard's lock,
// which orders the write before their reads.
type heap struct {
	mu     sync.Mutex // guards what follows, but the reads of large
	large  [largePages]*[1 << largePageBits]largeBlock
	nlarge uint32   // large[0:nlarge] have been used
	freeL  []uint32 // numbers of large-table entries free again

	// What the store holds and uses, read without a lock by the memory
	// bound (see bound.go): the bytes of its large blocks (which it uses
	// whole); the pages its shards' regions have carved; and what the
	// shards use of what they hold: the carved pages less their free
	// blocks and their tables' spare slots (see shard.account). Each shard
	// adds what its own changed by.
	bytes   atomic.Int64
	regions atomic.Int64
	used    atomic.Int64
	// limit is the store's memory bound (Store.SetMemoryLimit); 0 for
	// none.
	limit atomic.Int64
}

// held returns the bytes the store holds: its large blocks and the carved
// pages of its regions.
func (hp *heap) held() int64 { return hp.bytes.Load() + hp.regions.Load() }

// inUse returns the bytes of what the store holds that it uses: held less
// what new torrents and peers would take before the store takes more
// memory (free blocks, tables' spare slots).
func (hp *heap) inUse() int64 { return hp.bytes.Load() + hp.used.Load() }

type largeBlock struct {
	p unsafe.Pointer
	n int // bytes mapped
}

func (hp *heap) ptr(h handle) unsafe.Pointer {
	i := uint32(h &^ largeBit)
	return hp.large[i>>largePageBits][i&(1<<largePageBits-1)].p
}

// alloc maps a large block of at least n bytes.
func (hp *heap) alloc(n int) (handle, blockSize) {
	n = roundPage(n)
	if uint64(n)>>3 > math.MaxUint32 {
		panic("memory: block too large")
	}
	b := mapMemory(n)
	hp.mu.Lock()
	var i uint32
	if k := len(hp.freeL); k > 0 {
		i = hp.freeL[k-1]
		hp.freeL = hp.freeL[:k-1]
	} else {
		if hp.nlarge == largePages<<largePageBits {
			hp.mu.Unlock()
			panic("memory: too many large blocks")
		}
		i = hp.nlarge
		hp.nlarge++
		if hp.large[i>>largePageBits] == nil {
			hp.large[i>>largePageBits] = new([1 << largePageBits]largeBlock)
		}
	}
	hp.large[i>>largePageBits][i&(1<<largePageBits-1)] = largeBlock{unsafe.Pointer(&b[0]), n}
	hp.bytes.Add(int64(n))
	hp.mu.Unlock()
	return handle(i) | largeBit, blockSize(n >> 3)
}

// free unmaps the large block h of size n.
func (hp *heap) free(h handle, n blockSize) {
	i := uint32(h &^ largeBit)
	hp.mu.Lock()
	e := &hp.large[i>>largePageBits][i&(1<<largePageBits-1)]
	b := unsafe.Slice((*byte)(e.p), e.n)
	*e = largeBlock{}
	hp.freeL = append(hp.freeL, i)
	hp.bytes.Add(-int64(len(b)))
	hp.mu.Unlock()
	if len(b) != n.bytes() {
		panic("memory: large block freed with the wrong size")
	}
	unmapMemory(b)
}

// release unmaps every large block. Nothing may use them afterwards.
func (hp *heap) release() {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	for _, pg := range hp.large {
		if pg == nil {
			continue
		}
		for j := range pg {
			if e := &pg[j]; e.p != nil {
				unmapMemory(unsafe.Slice((*byte)(e.p), e.n))
				*e = largeBlock{}
			}
		}
	}
	hp.bytes.Store(0)
}

// region is the memory of a shard's small blocks: a chunk of mapped memory
// carved from its start, and when it fills up during an operation, further
// chunks, each at least twice as big as what the region has carved, until
// the shard compacts them into one (see shard.compactMemory) when the
// operation is done. All of it is guarded by the shard's lock.
type region struct {
	// base[i] is chunk[i]'s first byte: first, so that in a shard it
	// shares the cache line of the shard's lock and table.
	base   [maxChunks]unsafe.Pointer
	chunk  [maxChunks][]byte
	n      int                // chunks mapped
	next   handle             // where the next block is carved, in the last chunk
	end    handle             // the end of the last chunk
	carved int                // bytes carved, from all its chunks
	freed  int                // bytes of those in the free lists
	frees  [numClasses]handle // the free lists, linked through each block's first 4 bytes
}

// ptr returns the address of the small block h.
func (r *region) ptr(h handle) unsafe.Pointer {
	return unsafe.Add(r.base[h>>chunkShift&(maxChunks-1)], uintptr(h&offsetMask)<<3)
}

// alloc returns a small block of n bytes (0 < n <= maxSmall), and its size.
// A block reused from a free list holds what its last owner left there
// unless zero is true; new memory is always zero.
func (r *region) alloc(n int, zero bool) (handle, blockSize) {
	c := classOf(n)
	size := classSize(c)
	if h := r.frees[c]; h != 0 {
		p := r.ptr(h)
		r.frees[c] = *(*handle)(p)
		r.freed -= size
		if zero {
			clear(unsafe.Slice((*byte)(p), size))
		}
		return h, blockSize(size >> 3)
	}
	units := handle(size >> 3)
	if r.end-r.next < units {
		r.grow(size)
	}
	h := r.next
	r.next += units
	r.carved += size
	return h, blockSize(size >> 3)
}

// free puts the small block h of size n on its free list.
func (r *region) free(h handle, n blockSize) {
	c := classOf(n.bytes())
	*(*handle)(r.ptr(h)) = r.frees[c]
	r.frees[c] = h
	r.freed += n.bytes()
}

// grow maps the region's next chunk, with room for a block of n bytes and
// for twice what the region has carved. Since an operation carves at most
// a few blocks of at most maxSmall, and the shard compacts its region
// after each operation that leaves it with more than one chunk, four
// chunks are always enough.
func (r *region) grow(n int) {
	if r.n == maxChunks {
		panic("memory: a shard's region grew too often without compaction")
	}
	i := r.n
	r.n++
	size := roundPage(max(minChunk, 2*(r.carved+n)))
	if size>>3 > offsetMask {
		panic("memory: a shard's region is too large")
	}
	r.chunk[i] = mapMemory(size)
	r.base[i] = unsafe.Pointer(&r.chunk[i][0])
	r.next = handle(i) << chunkShift
	if i == 0 {
		r.next++ // so that no handle is 0
	}
	r.end = handle(i)<<chunkShift | handle(size>>3)
}

// needsCompaction reports whether the region has more than one chunk, or
// free blocks of more than an eighth of what it has carved (and of more
// than a page).
func (r *region) needsCompaction() bool {
	return r.n > 1 || r.freed > max(pageSize, r.carved>>3)
}

// move copies the small block h of size n of region from into r, and
// returns its handle in r.
func (r *region) move(from *region, h handle, n blockSize) handle {
	units := handle(n)
	if r.end-r.next < units {
		panic("memory: compaction target too small")
	}
	to := r.next
	r.next += units
	r.carved += n.bytes()
	copy(unsafe.Slice((*byte)(r.ptr(to)), n.bytes()), unsafe.Slice((*byte)(from.ptr(h)), n.bytes()))
	return to
}

// release unmaps the region's chunks.
func (r *region) release() {
	for _, c := range r.chunk[:r.n] {
		unmapMemory(c)
	}
	*r = region{}
}

// view returns the block h, of size n, of sh, as a slice of T (which must
// hold no pointers) as long as fit in it.
func view[T any](sh *shard, h handle, n blockSize) []T {
	if h == 0 {
		return nil
	}
	var t T
	return unsafe.Slice((*T)(sh.ptr(h)), uintptr(n.bytes())/unsafe.Sizeof(t))
}

// ptr returns the address of block h of sh.
func (sh *shard) ptr(h handle) unsafe.Pointer {
	if h&largeBit != 0 {
		return sh.heap.ptr(h)
	}
	return sh.mem.ptr(h)
}

// alloc returns a block of at least n bytes (n > 0) for sh, and its size;
// zero asks for a block of zeros.
func (sh *shard) alloc(n int, zero bool) (handle, blockSize) {
	if n > maxSmall {
		return sh.heap.alloc(n)
	}
	return sh.mem.alloc(n, zero)
}

// account adds to the store's counts (heap.regions, heap.used) what sh's
// region and table changed by since its last call. Every operation that
// changes a shard calls it before it lets go of the lock.
func (sh *shard) account() {
	held := int64(roundPage(sh.mem.carved))
	used := held - int64(sh.mem.freed) - sh.swarms.spare()
	if held != sh.held {
		sh.heap.regions.Add(held - sh.held)
		sh.held = held
	}
	if used != sh.used {
		sh.heap.used.Add(used - sh.used)
		sh.used = used
	}
}

// free gives back the block h of size n.
func (sh *shard) free(h handle, n blockSize) {
	if h&largeBit != 0 {
		sh.heap.free(h, n)
		return
	}
	sh.mem.free(h, n)
}

// tidyMemory compacts the shard's region if it needs it, and accounts for
// the shard's memory. Call it between operations, when nothing points into
// the region.
func (sh *shard) tidyMemory() {
	if sh.mem.needsCompaction() {
		sh.compactMemory()
	}
	sh.account()
}

// compactMemory moves the shard's live small blocks into a new region of
// one chunk, in the order of their owners (the table, then each swarm's
// blocks), and unmaps the old region. It returns the bytes moved. Nothing
// may point into the region.
func (sh *shard) compactMemory() int {
	old := sh.mem
	sh.mem = region{}
	mem := &sh.mem
	if live := old.carved - old.freed; live > 0 {
		mem.grow(live)
	}
	mv := func(h handle, n blockSize) handle {
		if h == 0 || h&largeBit != 0 {
			return h
		}
		return mem.move(&old, h, n)
	}
	t := &sh.swarms
	t.h = mv(t.h, t.size)
	for i := range t.slots(sh) {
		sw := &t.slots(sh)[i]
		if sw.minExp == 0 {
			continue
		}
		sw.v4.h = mv(sw.v4.h, sw.v4.size)
		if sw.x == 0 {
			continue
		}
		sw.x = mv(sw.x, extraSize)
		x := sh.extra(sw)
		x.v6.h = mv(x.v6.h, x.v6.size)
		x.idx4.h = mv(x.idx4.h, blockSize(x.idx4.n))
		x.idx6.h = mv(x.idx6.h, blockSize(x.idx6.n))
	}
	old.release()
	return mem.carved
}

// memoryUsage returns the bytes of the store's blocks in use, and the
// bytes it holds: the pages its regions have touched (their blocks in use,
// their free blocks and the rest of their last page) and its large blocks.
func (s *Store) memoryUsage() (inUse, held int64) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		inUse += int64(sh.mem.carved - sh.mem.freed)
		held += int64(roundPage(sh.mem.carved))
		sh.mu.Unlock()
	}
	large := s.heap.bytes.Load()
	return inUse + large, held + large
}
