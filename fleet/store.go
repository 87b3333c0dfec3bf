package fleet

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"unsafe"

	"trackd/bittorrent"
	"trackd/snapshot"
	"trackd/store"
)

// Local is the store a Store wraps: a store that answers from the
// process's memory and has every ability the server asks the in-memory
// store for. Store forwards each, so wrapping downgrades nothing; asking
// for them all here makes a lost ability a build error.
type Local interface {
	store.Store
	store.InProcess
	store.Prober
	store.ExpiryCounter
	store.MemoryBounded
	store.Snapshotter
	store.CompactAnnouncer
}

// Defaults of StoreConfig.
const (
	// DefaultMaxBatchBytes is the size at which a batch is sent without
	// waiting for the flush interval: about 1,200 IPv4 changes.
	DefaultMaxBatchBytes = 32 << 10
	// DefaultMaxPending bounds the changes waiting to be published, in
	// bytes: about 1.2 million IPv4 changes, 12 s of 100,000 announces a
	// second, while the Bus is unreachable.
	DefaultMaxPending = 32 << 20
)

// StoreConfig configures a Store. The zero value with Streams set is
// usable.
type StoreConfig struct {
	// Instance is the origin the Store's batches carry; the zero value
	// draws one (NewInstance).
	Instance Instance
	// Streams is the number of streams the changes are spread over, by
	// info hash: the Bus's NumStreams. 0 means 1.
	Streams int
	// PeerIDs sends each peer's id with its changes, for a fleet whose
	// stores keep them (store.Options.PeerIDs); without it changes carry
	// none, 20 bytes less each.
	PeerIDs bool
	// MaxBatchBytes is the size past which a batch is closed and sent at
	// once; 0 means DefaultMaxBatchBytes. At least 1 KiB.
	MaxBatchBytes int
	// MaxPending bounds the bytes of batches waiting to be published
	// (closed or open), over all streams; past it the oldest are dropped
	// and counted. 0 means DefaultMaxPending. Each stream keeps at least
	// two batches whatever it says, and the batch being published is
	// beside the bound; besides, each stream keeps up to 8 empty buffers
	// of MaxBatchBytes for reuse.
	MaxPending int
}

// Store is a store.Store that records every announce it applies as a
// Change, for a Node to publish: the inner store answers, the Store only
// appends the change to a batch in memory under a short lock, and never
// waits on the network. Everything else goes to the inner store as is.
//
// It has every ability of Local (InProcess, Prober, ExpiryCounter,
// MemoryBounded, Snapshotter, CompactAnnouncer), forwarded to the inner
// store. A state file restored into it (Restore) is not published: those
// peers announce again within an interval.
type Store struct {
	inner    Local
	self     Instance
	ids      bool
	maxBatch int
	lanes    []lane
	// wake tells the Node's publisher that a batch is full.
	wake chan struct{}

	dropped atomic.Uint64 // changes dropped unpublished
}

// lane is the batches of one stream, padded to whole cache lines.
type lane struct {
	laneState
	_ [(64 - unsafe.Sizeof(laneState{})%64) % 64]byte
}

type laneState struct {
	mu sync.Mutex
	// cur is the open batch: its header, then n records. nil when there
	// is none.
	cur []byte
	n   int
	// next is the number of the next change, from 1.
	next uint64
	// ring holds the closed batches waiting, queued of them from head,
	// oldest first; bytes is their size.
	ring          [][]byte
	head, queued  int
	bytes         int
	free          [][]byte // buffers to reuse, at most maxFree
	inFlight      int      // batches the publisher holds
	inFlightBytes int      // their bytes
}

// maxFree is how many empty buffers a lane keeps for reuse: enough for
// the open batch, one in flight and a few closed while the publisher
// waits for a CPU; the rest of what an outage piled up goes back to the
// garbage collector once published.
const maxFree = 8

var (
	_ Local       = (*Store)(nil)
	_ store.Store = (*Store)(nil)
)

// NewStore returns a Store that wraps inner. The Store owns inner: its
// Close closes inner.
func NewStore(inner Local, cfg StoreConfig) *Store {
	if cfg.Instance == (Instance{}) {
		cfg.Instance = NewInstance()
	}
	if cfg.Streams <= 0 {
		cfg.Streams = 1
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = DefaultMaxBatchBytes
	}
	cfg.MaxBatchBytes = max(cfg.MaxBatchBytes, 1<<10)
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	perLane := max(cfg.MaxPending/(cfg.Streams*cfg.MaxBatchBytes), 2)
	s := &Store{
		inner:    inner,
		self:     cfg.Instance,
		ids:      cfg.PeerIDs,
		maxBatch: cfg.MaxBatchBytes,
		lanes:    make([]lane, cfg.Streams),
		wake:     make(chan struct{}, 1),
	}
	for i := range s.lanes {
		l := &s.lanes[i].laneState
		l.next = 1
		// The open batch counts toward the bound: the ring holds the
		// rest.
		l.ring = make([][]byte, perLane-1)
		l.free = make([][]byte, 0, maxFree)
	}
	return s
}

// Instance returns the origin of the Store's batches.
func (s *Store) Instance() Instance { return s.self }

// NumStreams returns the number of streams the Store spreads changes
// over: the Bus it publishes to must have as many.
func (s *Store) NumStreams() int { return len(s.lanes) }

// Inner returns the wrapped store: where a Node replays the changes of
// other instances, which must not be recorded again.
func (s *Store) Inner() Local { return s.inner }

// streamOf returns the stream of the changes of h, among n: every change
// of a torrent goes to one stream, which keeps them in order.
func streamOf(h *bittorrent.InfoHash, n int) int {
	if n == 1 {
		return 0
	}
	return int(binary.BigEndian.Uint64(h[12:20]) % uint64(n))
}

// Announce implements store.Store: the inner store's announce, then, if
// it succeeded, the change recorded for the Node to publish.
func (s *Store) Announce(ctx context.Context, a store.Announce, peers []bittorrent.Peer) ([]bittorrent.Peer, bittorrent.Stats, error) {
	peers, st, err := s.inner.Announce(ctx, a, peers)
	if err == nil {
		s.record(&a)
	}
	return peers, st, err
}

// AnnounceCompact implements store.CompactAnnouncer as Announce does
// store.Store: the inner store's, then the change recorded.
func (s *Store) AnnounceCompact(ctx context.Context, a store.Announce, v4, v6 []byte) ([]byte, []byte, bittorrent.Stats, error) {
	v4, v6, st, err := s.inner.AnnounceCompact(ctx, a, v4, v6)
	if err == nil {
		s.record(&a)
	}
	return v4, v6, st, err
}

// record appends the change of a to the open batch of its stream. It
// allocates nothing once the lane has its buffers.
func (s *Store) record(a *store.Announce) {
	c := Change{InfoHash: a.InfoHash, Peer: a.Peer, Event: a.Event, Seeder: a.Seeder}
	if !s.ids {
		c.Peer.ID = bittorrent.PeerID{}
	}
	l := &s.lanes[streamOf(&a.InfoHash, len(s.lanes))].laneState
	l.mu.Lock()
	if l.cur == nil {
		l.cur = appendHeader(l.buffer(s.maxBatch), Header{Origin: s.self, First: l.next})
	}
	var err error
	if l.cur, err = appendChange(l.cur, &c); err != nil {
		// The inner store took the announce, so its address is valid
		// and its event known: this does not happen.
		l.mu.Unlock()
		return
	}
	l.n++
	l.next++
	full := len(l.cur)+maxRecordSize > s.maxBatch
	if full {
		s.close(l)
	}
	l.mu.Unlock()
	if full {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// buffer returns an empty buffer of capacity size, reused if it can be.
// l.mu is held.
func (l *laneState) buffer(size int) []byte {
	if n := len(l.free); n > 0 {
		b := l.free[n-1]
		l.free = l.free[:n-1]
		return b[:0]
	}
	return make([]byte, 0, size)
}

// release keeps b for reuse if the lane has few. l.mu is held.
func (l *laneState) release(b []byte) {
	if len(l.free) < maxFree {
		l.free = append(l.free, b[:0])
	}
}

// close closes the open batch of l and queues it, dropping the oldest
// queued batch if the ring is full. l.mu is held.
func (s *Store) close(l *laneState) {
	if l.cur == nil {
		return
	}
	setCount(l.cur, l.n)
	if l.queued == len(l.ring) {
		s.drop(l, l.ring[l.head])
		l.ring[l.head] = nil
		l.head = (l.head + 1) % len(l.ring)
		l.queued--
	}
	l.ring[(l.head+l.queued)%len(l.ring)] = l.cur
	l.queued++
	l.bytes += len(l.cur)
	l.cur, l.n = nil, 0
}

// drop counts the queued batch b as dropped and keeps its buffer. l.mu
// is held.
func (s *Store) drop(l *laneState, b []byte) {
	s.dropped.Add(uint64(headerCount(b)))
	l.bytes -= len(b)
	l.release(b)
}

// takeMany appends to dst the oldest batches waiting on stream i, closing
// the open one first if close is true: at most max of them, and no more
// than maxBytes in all (0 for no bound), but at least one if there is one. The caller
// publishes them, then hands them back with doneMany.
func (s *Store) takeMany(i int, close bool, dst [][]byte, max, maxBytes int) [][]byte {
	l := &s.lanes[i].laneState
	l.mu.Lock()
	defer l.mu.Unlock()
	if close {
		s.close(l)
	}
	size, start := 0, len(dst)
	for k := 0; k < max && l.queued > 0; k++ {
		b := l.ring[l.head]
		if k > 0 && maxBytes > 0 && size+len(b) > maxBytes {
			break
		}
		l.ring[l.head] = nil
		l.head = (l.head + 1) % len(l.ring)
		l.queued--
		l.bytes -= len(b)
		size += len(b)
		dst = append(dst, b)
	}
	l.inFlight, l.inFlightBytes = len(dst)-start, size
	return dst
}

// doneMany hands back bs, which takeMany returned: the first published of
// them were published, the rest are queued again in front, in order, to
// be retried; as many of the rest as the ring has no room for (the
// oldest) are dropped.
func (s *Store) doneMany(i int, bs [][]byte, published int) {
	l := &s.lanes[i].laneState
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight, l.inFlightBytes = 0, 0
	for _, b := range bs[:published] {
		l.release(b)
	}
	for k := len(bs) - 1; k >= published; k-- {
		b := bs[k]
		if l.queued == len(l.ring) {
			l.bytes += len(b) // drop takes it off
			s.drop(l, b)
			continue
		}
		l.head = (l.head - 1 + len(l.ring)) % len(l.ring)
		l.ring[l.head] = b
		l.queued++
		l.bytes += len(b)
	}
}

// pending returns the batches and bytes waiting to be published, open
// ones included.
func (s *Store) pending() (batches, bytes int) {
	for i := range s.lanes {
		l := &s.lanes[i].laneState
		l.mu.Lock()
		batches += l.queued
		bytes += l.bytes + l.inFlightBytes
		if l.cur != nil {
			batches++
			bytes += len(l.cur)
		}
		batches += l.inFlight
		l.mu.Unlock()
	}
	return batches, bytes
}

// Scrape implements store.Store.
func (s *Store) Scrape(ctx context.Context, hashes []bittorrent.InfoHash, stats []bittorrent.Stats) ([]bittorrent.Stats, error) {
	return s.inner.Scrape(ctx, hashes, stats)
}

// ScrapeAll implements store.Store.
func (s *Store) ScrapeAll(ctx context.Context, fn func(bittorrent.InfoHash, bittorrent.Stats) error) error {
	return s.inner.ScrapeAll(ctx, fn)
}

// Totals implements store.Store.
func (s *Store) Totals(ctx context.Context) (store.Totals, error) { return s.inner.Totals(ctx) }

// Close implements store.Store: it closes the inner store. The changes
// not yet published are lost; stop the Node first, which publishes what
// it can.
func (s *Store) Close() error { return s.inner.Close() }

// InProcess implements store.InProcess: the Store adds a short lock to
// the inner store's calls, never a wait.
func (s *Store) InProcess() {}

// Probe implements store.Prober. It probes the inner store only: the
// Bus being unreachable does not stop the Store from serving.
func (s *Store) Probe(ctx context.Context) error { return s.inner.Probe(ctx) }

// Expired implements store.ExpiryCounter.
func (s *Store) Expired() uint64 { return s.inner.Expired() }

// SetMemoryLimit implements store.MemoryBounded. The limit bounds the
// inner store; the batches waiting are bounded by StoreConfig.MaxPending.
func (s *Store) SetMemoryLimit(bytes int64) { s.inner.SetMemoryLimit(bytes) }

// MemoryUsage implements store.MemoryBounded.
func (s *Store) MemoryUsage() store.MemoryUsage { return s.inner.MemoryUsage() }

// Dump implements store.Snapshotter.
func (s *Store) Dump(fn func(*snapshot.Swarm) error) error { return s.inner.Dump(fn) }

// Restore implements store.Snapshotter. What it restores is not
// published.
func (s *Store) Restore(sw *snapshot.Swarm) error { return s.inner.Restore(sw) }

// errCount is returned when a Node is made for a Bus whose number of
// streams is not the Store's.
var errCount = errors.New("fleet: the Bus has another number of streams than the Store")
