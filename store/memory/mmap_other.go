//go:build !unix || race

package memory

// mapMemory returns n bytes of zeroed memory. Where there is no mmap, and
// under the race detector (which sees only accesses to the Go heap), this
// is an ordinary Go allocation: the store works the same, but its memory
// is in the Go heap.
func mapMemory(n int) []byte { return make([]byte, n) }

// unmapMemory leaves b to the garbage collector.
func unmapMemory([]byte) {}

// minChunk is the smallest chunk of a shard's region: real memory here, so small.
const minChunk = 4 << 10
