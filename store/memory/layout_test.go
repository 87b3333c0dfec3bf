package memory

import (
	"testing"
	"time"
	"unsafe"
)

func TestRecordSizes(t *testing.T) {
	for _, tt := range []struct {
		name      string
		got, want uintptr
	}{
		{"peer4", unsafe.Sizeof(peer4{}), 8},
		{"peer6", unsafe.Sizeof(peer6{}), 20},
		{"swarm (table slot)", unsafe.Sizeof(swarm{}), 48},
		{"extra", unsafe.Sizeof(extra{}), 32},
		{"fam", unsafe.Sizeof(fam{}), 16},
	} {
		if tt.got != tt.want {
			t.Errorf("%s is %d bytes, want %d", tt.name, tt.got, tt.want)
		}
	}
	if n := unsafe.Sizeof(shard{}); n%64 != 0 {
		t.Errorf("shard is %d bytes, not a whole number of cache lines", n)
	}
}

// TestClasses checks the size classes: multiples of 8, increasing, each
// the smallest that fits, at most 12.5% apart above 128 bytes.
func TestClasses(t *testing.T) {
	if got := classSize(numClasses - 1); got != maxSmall {
		t.Fatalf("largest class %d, want %d", got, maxSmall)
	}
	prev := 0
	for c := range numClasses {
		size := classSize(c)
		if size%8 != 0 || size <= prev || (prev >= 128 && size*8 > prev*9) {
			t.Fatalf("class %d: %d bytes after %d", c, size, prev)
		}
		prev = size
	}
	for n := 1; n <= maxSmall; n++ {
		c := classOf(n)
		if classSize(c) < n || (c > 0 && classSize(c-1) >= n) {
			t.Fatalf("classOf(%d) = %d (%d bytes)", n, c, classSize(c))
		}
	}
}

// TestExpiryEncoding checks that a record's 15-bit expiry reads back whole
// anywhere in the window the swarm's minExp opens, across wraps.
func TestExpiryEncoding(t *testing.T) {
	for _, m := range []uint32{1, 1000, expMask, expMask + 1, 1<<16 - 3, 1 << 20, noExp - 1<<15 - 5} {
		for _, d := range []uint32{0, 1, 2, 1000, expMask - 1, expMask} {
			exp := m + d
			for _, flag := range []uint16{0, flagCompleted} {
				e := encodeExp(exp, flag)
				if got := expiryOf(e, m); got != exp {
					t.Errorf("expiry %d (minExp %d) reads back as %d", exp, m, got)
				}
				if e&flagCompleted != flag {
					t.Errorf("expiry %d lost the flag %x", exp, flag)
				}
				if e2 := encodeExp(exp+5, e); e2&flagCompleted != flag {
					t.Errorf("re-encoding lost the flag %x", flag)
				}
			}
		}
	}
	if MaxPeerLifetime/time.Second+2 > 1<<expBits {
		t.Errorf("MaxPeerLifetime %v does not fit the %d-bit expiry window", MaxPeerLifetime, expBits)
	}
}

// TestShardLayout checks that a shard's lock, table and the base of its
// region share the shard's first cache line: every announce reads them.
func TestShardLayout(t *testing.T) {
	var sh shard
	if off := unsafe.Offsetof(sh.mem) + unsafe.Offsetof(sh.mem.base); off+unsafe.Sizeof(sh.mem.base[0]) > 64 {
		t.Errorf("the region's first chunk base is at offset %d of the shard", off)
	}
}
