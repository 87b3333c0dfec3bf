package wsserver

import (
	"sync"
	"sync/atomic"
	"time"
)

// Eviction. At MaxConns a new connection is admitted by closing, with
// 1013 (try again later), the connection that has gone longest without
// a message from its client: a data message, not a ping or a pong,
// which a client holding a place without using it answers as well as
// any. A connection that has never sent a message goes first, the
// oldest of them first. At MaxConnsPerIP the address's own
// longest-silent connection is closed for the new one. The evicted
// connection's place passes to the new one at once (its close, which
// may linger for closeLinger, no longer counts), so OpenConns never
// passes MaxConns.
//
// Each event loop, and the connections on goroutines of their own, keep
// an evictList: the silent connections in the order they came, and the
// others in the order of their last message (a message moves its
// connection to the tail), so that a victim is a list's head, found
// without a scan: the victim is the oldest of the silent lists' heads,
// else the one of the active lists' heads with the oldest message,
// found by a look at each loop's heads (a few), exact across loops
// without a lock shared by all. An address's connections are a list of
// their own in peerCounts, scanned on eviction (at most MaxConnsPerIP of
// them).

// Bound is a connection bound that made a Server evict a connection.
type Bound uint8

const (
	BoundMaxConns Bound = iota // Options.MaxConns: all open connections
	BoundPerIP                 // Options.MaxConnsPerIP: one address's
)

func (b Bound) String() string {
	switch b {
	case BoundMaxConns:
		return "max_conns"
	case BoundPerIP:
		return "per_ip"
	}
	return "unknown"
}

// Metrics counts what a Server does to keep its connection bounds. Its
// methods are called on the goroutines that hand connections over, and
// must be safe for concurrent use and quick.
type Metrics interface {
	// ConnEvicted records a connection closed to admit a new one, at
	// the bound b.
	ConnEvicted(b Bound)
}

type noMetrics struct{}

func (noMetrics) ConnEvicted(Bound) {}

// slot states.
const (
	slotLive      uint32 = iota
	slotEvicted          // evicted at MaxConns: its place in s.n is the new one's
	slotEvictedIP        // evicted at MaxConnsPerIP: its places in s.n and its address's count are the new one's
	slotReleased         // closed
)

// slot is a connection's place in the Server's counts and eviction
// lists.
type slot struct {
	s     *Server
	state atomic.Uint32
	// closer closes the connection and home is its list: both set
	// before the slot is linked, then never changed.
	closer interface{ closeWith(*closeErr) }
	home   *evictList
	// lastMsg is when the last message came (since s.start; 0: none).
	lastMsg atomic.Int64
	// since is when the connection came (since s.start).
	since int64

	// Guarded by home.mu.
	inList     bool
	prev, next *slot
	spoke      bool // a message came: in home.active, else in home.silent

	// Guarded by s.peers.mu.
	perIP        bool // counted in s.peers under key
	key          [16]byte
	linked       bool // in its address's list
	aprev, anext *slot
}

// slotList is an intrusive list of slots.
type slotList struct{ head, tail *slot }

func (l *slotList) push(c *slot) {
	c.prev, c.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = c
	} else {
		l.head = c
	}
	l.tail = c
}

func (l *slotList) remove(c *slot) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		l.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		l.tail = c.prev
	}
	c.prev, c.next = nil, nil
}

// evictList is one loop's (or the portable connections') connections,
// in eviction order.
type evictList struct {
	mu             sync.Mutex
	silent, active slotList
}

func (l *evictList) from(c *slot) *slotList {
	if c.spoke {
		return &l.active
	}
	return &l.silent
}

// touch records a message on c (nil: none): it moves to the tail.
func (c *slot) touch() {
	if c == nil {
		return
	}
	c.lastMsg.Store(int64(max(time.Since(c.s.start), 1)))
	l := c.home
	l.mu.Lock()
	if c.inList {
		l.from(c).remove(c)
		c.spoke = true
		l.active.push(c)
	}
	l.mu.Unlock()
}

// victim claims the first live connection of l's silent list (spoke
// false) or active list (spoke true), unlinked from l; nil if it has
// none.
func (l *evictList) victim(spoke bool) *slot {
	l.mu.Lock()
	defer l.mu.Unlock()
	sl := &l.silent
	if spoke {
		sl = &l.active
	}
	for c := sl.head; c != nil; c = sl.head {
		sl.remove(c)
		c.inList = false
		if c.state.CompareAndSwap(slotLive, slotEvicted) {
			return c
		}
		// Closed or evicted at its address's bound: its release or
		// evictor has nothing more to do in l.
	}
	return nil
}

// head is the key of the first connection of l's silent list (spoke
// false: when it came) or active list (spoke true: its last message);
// ok false if the list is empty.
func (l *evictList) head(spoke bool) (key int64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if spoke {
		if c := l.active.head; c != nil {
			return c.lastMsg.Load(), true
		}
		return 0, false
	}
	if c := l.silent.head; c != nil {
		return c.since, true
	}
	return 0, false
}

// link puts c, whose closer and home are set, into its lists, where it
// may be evicted.
func (s *Server) link(c *slot) {
	if c.perIP {
		s.peers.mu.Lock()
		if a := s.peers.m[c.key]; a != nil && c.state.Load() == slotLive {
			a.push(c)
			c.linked = true
		}
		s.peers.mu.Unlock()
	}
	l := c.home
	l.mu.Lock()
	if c.state.Load() == slotLive {
		l.silent.push(c)
		c.inList = true
	}
	l.mu.Unlock()
}

// unlinkHome takes c out of its home list.
func (c *slot) unlinkHome() {
	if l := c.home; l != nil {
		l.mu.Lock()
		if c.inList {
			l.from(c).remove(c)
			c.inList = false
		}
		l.mu.Unlock()
	}
}

// addrConns are one address's connections: their count, and those
// linked, in the order they came.
type addrConns struct {
	n          int32
	head, tail *slot
}

func (a *addrConns) push(c *slot) {
	c.aprev, c.anext = a.tail, nil
	if a.tail != nil {
		a.tail.anext = c
	} else {
		a.head = c
	}
	a.tail = c
}

func (a *addrConns) remove(c *slot) {
	if c.aprev != nil {
		c.aprev.anext = c.anext
	} else {
		a.head = c.anext
	}
	if c.anext != nil {
		c.anext.aprev = c.aprev
	} else {
		a.tail = c.aprev
	}
	c.aprev, c.anext = nil, nil
}

// victim claims a's longest-silent live connection (the first that
// came, among those that have sent nothing), unlinked from a; nil if a
// has none. s.peers.mu is held.
func (a *addrConns) victim() *slot {
	for {
		var best *slot
		for c := a.head; c != nil; c = c.anext {
			if c.state.Load() == slotLive && (best == nil || c.lastMsg.Load() < best.lastMsg.Load()) {
				best = c
			}
		}
		if best == nil {
			return nil
		}
		if best.state.CompareAndSwap(slotLive, slotEvictedIP) {
			a.remove(best)
			best.linked = false
			return best
		}
		// Evicted at MaxConns, or closed, meanwhile: look again.
	}
}
