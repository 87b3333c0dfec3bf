package httpserver

import (
	"net/netip"
	"testing"
)

func TestKeyOf(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		same bool
	}{
		{"192.0.2.1", "::ffff:192.0.2.1", true},
		{"192.0.2.1", "192.0.2.2", false},
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9", true}, // one /64
		{"2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"::ffff:192.0.2.1", "::192.0.2.1", false},
	} {
		if got := keyOf(netip.MustParseAddr(tt.a)) == keyOf(netip.MustParseAddr(tt.b)); got != tt.same {
			t.Errorf("keyOf(%s) == keyOf(%s): %v, want %v", tt.a, tt.b, got, tt.same)
		}
	}
}

// TestPeerTableBounded: the table holds an entry per address with
// connections open, no more.
func TestPeerTableBounded(t *testing.T) {
	tab := newPeerTable(&Options{MaxConnsPerIP: 2}, func() int { return 0 })
	var es []*peerEntry[int]
	for i := range 100 {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		e, ok := tab.acquire(a)
		if !ok {
			t.Fatal("refused a first connection")
		}
		es = append(es, e)
	}
	if _, ok := tab.acquire(netip.MustParseAddr("10.0.0.1")); !ok {
		t.Fatal("refused a second connection")
	}
	if _, ok := tab.acquire(netip.MustParseAddr("10.0.0.1")); ok {
		t.Fatal("accepted a third connection")
	}
	tab.release(es[1])
	for _, e := range es {
		if e != es[1] {
			tab.release(e)
		}
	}
	if n := len(tab.m); n != 1 {
		t.Errorf("%d entries with one connection open", n)
	}
	if len(tab.free) != 99 {
		t.Errorf("%d entries recycled, want 99", len(tab.free))
	}
}

// BenchmarkPeerTable measures what MaxConnsPerIP adds to a connection:
// one acquire and one release, over 1024 addresses.
func BenchmarkPeerTable(b *testing.B) {
	tab := newPeerTable(&Options{MaxConnsPerIP: DefaultMaxConnsPerIP}, func() int { return 0 })
	var addrs [1024]netip.Addr
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e, _ := tab.acquire(addrs[i%len(addrs)])
		tab.release(e)
		i++
	}
}
