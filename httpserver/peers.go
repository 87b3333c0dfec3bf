package httpserver

import (
	"net/netip"
	"sync"
)

// addrKey is what a client address is counted under for MaxConnsPerIP:
// an IPv4 address (also when it comes IPv4-mapped), or the /64 of an IPv6
// address, the block a host is given and may pick addresses from at will.
type addrKey [16]byte

func keyOf(a netip.Addr) addrKey {
	a = a.Unmap()
	k := addrKey(a.As16())
	if !a.Is4() {
		clear(k[8:])
	}
	return k
}

// peerTable counts the open connections of each client address against
// MaxConnsPerIP. It holds an entry per address with connections open, so
// no more entries than MaxConns; entries are recycled. Safe for
// concurrent use. T is what a server keeps per address besides the count
// (its idle connections).
type peerTable[T any] struct {
	max     int32
	trusted []netip.Prefix
	newExt  func() T

	mu   sync.Mutex
	m    map[addrKey]*peerEntry[T]
	free []*peerEntry[T]
}

// peerEntry is an address's count, and the server's T for it.
type peerEntry[T any] struct {
	key addrKey
	n   int32 // guarded by the table's mu
	ext T
}

// maxFreePeers bounds the recycled entries a table keeps.
const maxFreePeers = 1024

// newPeerTable returns the table for opts, or nil if there is no bound.
func newPeerTable[T any](opts *Options, newExt func() T) *peerTable[T] {
	if opts.MaxConnsPerIP <= 0 {
		return nil
	}
	return &peerTable[T]{
		max:     int32(min(opts.MaxConnsPerIP, 1<<30)),
		trusted: opts.TrustedProxies,
		newExt:  newExt,
		m:       make(map[addrKey]*peerEntry[T]),
	}
}

// acquire counts a connection from a. It returns nil and true for an
// address that is not bounded (a trusted proxy, or an invalid address),
// the entry and true once counted, and the entry and false, without
// counting, if a is at its bound.
func (t *peerTable[T]) acquire(a netip.Addr) (*peerEntry[T], bool) {
	if !a.IsValid() || (len(t.trusted) > 0 && containsAddr(t.trusted, a.Unmap())) {
		return nil, true
	}
	k := keyOf(a)
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[k]
	if e == nil {
		if n := len(t.free); n > 0 {
			e, t.free = t.free[n-1], t.free[:n-1]
		} else {
			e = &peerEntry[T]{ext: t.newExt()}
		}
		e.key, e.n = k, 0
		t.m[k] = e
	}
	if e.n >= t.max {
		return e, false
	}
	e.n++
	return e, true
}

// release uncounts a connection of e.
func (t *peerTable[T]) release(e *peerEntry[T]) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.n--; e.n <= 0 {
		delete(t.m, e.key)
		if len(t.free) < maxFreePeers {
			t.free = append(t.free, e)
		}
	}
}

func containsAddr(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
