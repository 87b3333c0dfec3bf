//go:build unix && !race

package memory

import "syscall"

// mapMemory returns n bytes of zeroed memory outside the Go heap: an
// anonymous private mapping, whose pages take memory only once touched.
func mapMemory(n int) []byte {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		panic("memory: mmap: " + err.Error())
	}
	return b
}

// unmapMemory gives back memory from mapMemory.
func unmapMemory(b []byte) {
	if err := syscall.Munmap(b); err != nil {
		panic("memory: munmap: " + err.Error())
	}
}

// minChunk is the smallest chunk of a shard's region: virtual memory, of which only the carved pages count.
const minChunk = 256 << 10
