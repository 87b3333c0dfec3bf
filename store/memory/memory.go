// Package memory is the in-memory store.Store of trackd.
//
// # Layout
//
// Swarms are spread by a keyed hash of their info hash over shards (1024 by
// default), each a mutex and an open-addressing table whose 48-byte slots
// hold the info hash, the counts and the IPv4 peers' header, so requests on
// different cores rarely wait on each other, and finding a swarm costs one
// cache miss (a Go map of *swarm costs three or four; see table).
//
// A swarm holds its IPv4 peers in one block of fixed-size 8-byte records
// (address, port, expiry and a flag) and, behind a handle that is 0 for
// most swarms, its IPv6 peers in another of 20-byte records. A store that
// keeps peer ids (store.Options.PeerIDs) keeps each peer's 20 bytes beside
// its record, in the same block; by default it keeps none. Each block has
// the seeders first and the leechers after, so the candidates for an
// announce are one or two contiguous ranges. Within each part the order is
// free: a peer joins, leaves or changes role by swapping at most two
// records, in O(1). A family of up to 128 peers (the case of most swarms)
// finds a session by scanning its records (at that size no dearer than the
// cache misses an index lookup adds); a bigger one also keeps an index, an
// open-addressing table of 8-byte entries from the hash of (ip, port) to the
// record's position. Keeping each part sorted by (ip, port) and binary
// searching, the other layout tried, costs an O(n) memmove per join, leave
// or role change: about 330µs in a swarm of 100,000 peers, against under
// 1µs now (BenchmarkChurnBigSwarm).
//
// # Picking peers
//
// An announce gets up to NumWant peers chosen at random among its
// candidates (see candidates.sample): they are rotated by a random
// offset and cut into strata of equal size. From fewer than 2048
// candidates pick takes one peer at random in each of NumWant strata.
// From more, that was what made a big swarm dear: each peer a cache miss
// in a block of up to 800 KB that is cold by the time the swarm is asked
// again. So there pick cuts ceil(NumWant/8) strata and takes a run of 8
// consecutive records (one cache line, two when it straddles one) from a
// random start in each: 50 peers are 7 runs. Measured with a simulated
// cache (callgrind; 48 KiB L1, 1 MiB L2) on BenchmarkAnnounceSwarmSize
// (2^20 peers in swarms of 100,000), an announce misses the L2 11 times
// instead of 37 with NumWant 50 (35 instead of 143 with 200) and runs 40
// to 47% fewer instructions, and its CPU time falls by 27 to 55% in swarms
// of 10,000 and more (docs/benchmarks.md).
//
// Every candidate is still chosen with probability exactly NumWant/m
// (the rotation makes every position equally likely for every peer);
// seeders and leechers, IPv4 and IPv6 peers come in proportion to their
// numbers, give or take a run; consecutive answers are independent, so
// their mean overlap is NumWant²/m as for a uniform choice. What runs give up is independence
// within an answer: a peer's neighbour in the block comes with it 86% of
// the time instead of (NumWant-1)/(m-1), so answers overlap in lumps (for
// 50 of 10,000: overlap 0.26 ± 1.11 peers, against 0.25 ± 0.50 one by one
// and ± 2.84 for the single run of 50 opentracker hands out). Neighbours
// are peers that joined around the same time or one that took a leaver's
// place (the last record moves into the hole), and the strata spread the
// runs over the whole block. TestPickFairness measures this.
//
// # Memory
//
// Tables, records and indexes live outside the Go heap, in blocks the store
// maps, carves and frees itself (see heap): no pointer in them for the
// garbage collector to scan, no garbage-collector headroom on them (the Go
// heap is kept at about twice its live data, which would double the
// resident size of the peers), and a block dies exactly when its swarm no
// longer needs it. Blocks come in size classes 12.5% apart at most (every
// multiple of 8 bytes up to 128), and a family grows to the next class when
// full and shrinks when half empty, so a block is about 6% larger than its
// records on average and the small swarms, where most peers are, waste
// nothing. Each shard carves its blocks from a region of its own and
// compacts it between requests once an eighth of it is free blocks, so
// that blocks of sizes no swarm needs any more do not pile up. Close gives
// the memory back to the system.
//
// Measured with 1,000,000 IPv4 peers over 100,000 swarms
// (BenchmarkMemoryPerPeer), the store takes about 16 bytes per peer in use
// and 21 resident (46 and 91 when it kept 32-byte records with ids in Go
// slices); a re-announce of a known peer allocates nothing, nor does a
// join.
//
// # Expiry
//
// Expiry is kept in whole seconds since the store was made, rounded up: a
// peer is alive while the current second is below its expiry (so it may
// outlive its lifetime by less than a second, never fall short). A record
// keeps only the low 15 bits of its expiry, which the swarm's minExp makes
// whole again (see expiryOf); hence MaxPeerLifetime.
//
// Each swarm knows a lower bound of its peers' expiries (minExp). An
// announce or a scrape that finds it passed compacts the swarm first (O(n);
// afterwards the bound is exact and in the future, so this happens at most
// once per second per swarm), so expired peers are never returned nor
// counted. A background sweeper walks the shards once a second, one at a
// time, dropping expired peers and deleting swarms that are left with no
// peer and no download. Swarms with no peer but a download count are kept
// so the count survives (about 70 bytes each): near the memory bound they
// are the first evicted (see bound.go).
//
// Totals is atomic counters, changed only when a count changes. They
// are exact once every shard has been swept up to the current second. The
// background sweeper keeps them within a few seconds of that, and Totals,
// which the core asks on every announce, leaves the sweeping to it: a
// request never pays for a sweep of the whole store. Only when the sweeper
// has fallen further behind (a stalled process, a fake clock that jumped)
// or there is none does Totals sweep first.
package memory

import (
	"context"
	"errors"
	"hash/maphash"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"trackd/bittorrent"
	"trackd/store"
)

// Config tunes a Store beyond store.Options.
type Config struct {
	// Shards is the number of shards, rounded up to a power of two;
	// 0 means 1024.
	Shards int
	// SweepInterval is how often the background sweeper runs; 0 means
	// one second, and a negative value means no background sweeper (expired
	// peers are then dropped only by the requests that touch them).
	SweepInterval time.Duration
}

// DefaultShards is the number of shards of a Config with Shards 0.
const DefaultShards = 1024

// MaxPeerLifetime is the longest store.Options.PeerLifetime the store
// takes: a record keeps its expiry in 15 bits of seconds, and every expiry
// of a swarm must lie within 2^15 seconds of its earliest (see expiryOf).
const MaxPeerLifetime = 9 * time.Hour

// Store is the in-memory store. Make one with New; Close gives its memory
// back.
type Store struct {
	shards   []shard
	mask     uint64
	seed     maphash.Seed
	heap     *heap
	since    func() time.Duration // the time since base
	base     time.Time
	lifetime time.Duration

	_ [64]byte // keep the counters away from the read-mostly fields
	// The counts behind Totals.
	torrents, seeders, leechers atomic.Int64
	seeders6, leechers6         atomic.Int64  // of seeders and leechers
	expired                     atomic.Uint64 // peers dropped for their lifetime, ever
	evicted, refused            atomic.Uint64 // by the memory bound (see bound.go)
	// lastShed is 1 + the last second the memory bound evicted or
	// refused something; 0 for never.
	lastShed atomic.Uint32
	// Every peer that expired at or before sweptThrough has been dropped.
	sweptThrough atomic.Uint32
	// totalsLag is how many seconds Totals lets sweptThrough lag the
	// clock before it sweeps itself: a little more than the sweeper's
	// period, 0 without a sweeper.
	totalsLag uint32
	sweepMu   sync.Mutex // serializes full sweeps and shed
	hist      []uint32   // shed's histogram, kept between calls (under sweepMu)

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// shard is one lock's worth of swarms, padded to whole cache lines.
type shard struct {
	shardState
	_ [(64 - unsafe.Sizeof(shardState{})%64) % 64]byte
}

// shardState is what a shard holds; shard pads it.
type shardState struct {
	mu     sync.Mutex
	swarms table
	closed bool // the store is closed: its memory is gone
	ids    bool // keep peer ids (store.Options.PeerIDs)
	rng    rand.PCG
	// A lower bound of the expiry of every peer in the shard. Written with
	// mu held, read without by Totals.
	minExp atomic.Uint32
	heap   *heap  // the store's large blocks
	mem    region // the shard's small blocks; its first word ends the first cache line
	// held and used are what account last added to heap.regions and
	// heap.used.
	held, used int64
}

var (
	_ store.Store  = (*Store)(nil)
	_ store.Prober = (*Store)(nil)
)

var (
	errNoAddr = errors.New("memory: announce without a valid peer address")
	errClosed = store.ErrClosed
)

// New returns a store with the default Config. It starts a background
// sweeper, which Close stops. opts.PeerLifetime must be positive and at
// most MaxPeerLifetime.
func New(opts store.Options) *Store { return NewWithConfig(opts, Config{}) }

// NewWithConfig returns a store configured by opts and cfg.
func NewWithConfig(opts store.Options, cfg Config) *Store {
	if opts.PeerLifetime <= 0 || opts.PeerLifetime > MaxPeerLifetime {
		panic("memory: store.Options.PeerLifetime must be positive and at most memory.MaxPeerLifetime")
	}
	n := 1
	for n < cfg.Shards || (cfg.Shards <= 0 && n < DefaultShards) {
		n <<= 1
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	base := now()
	// since reads the time since base. With the real clock it is
	// time.Since, one read of the monotonic clock, where now().Sub would
	// read the wall clock too: a clock read is about 20 ns here, and an
	// announce reads the time once.
	since := func() time.Duration { return time.Since(base) }
	if opts.Now != nil {
		since = func() time.Duration { return now().Sub(base) }
	}
	s := &Store{
		shards:   make([]shard, n),
		mask:     uint64(n - 1),
		seed:     maphash.MakeSeed(),
		heap:     new(heap),
		since:    since,
		base:     base,
		lifetime: opts.PeerLifetime,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.rng.Seed(rand.Uint64(), rand.Uint64())
		sh.minExp.Store(noExp)
		sh.ids = opts.PeerIDs
		sh.heap = s.heap
	}
	interval := cfg.SweepInterval
	if interval == 0 {
		interval = time.Second
	}
	if interval > 0 {
		s.totalsLag = uint32((2*interval+time.Second-1)/time.Second) + 1
		go s.sweeper(interval)
	} else {
		close(s.done)
	}
	return s
}

// maxSec bounds the store's clock, in seconds since base: 136 years.
const maxSec = noExp - 1

// clock returns the current second and the expiry of a peer announcing now,
// both in seconds since s.base.
func (s *Store) clock() (now, exp uint32) {
	d := max(s.since(), 0)
	now = uint32(min(d/time.Second, maxSec))
	e := (min(d, 200*365*24*time.Hour) + s.lifetime + time.Second - 1) / time.Second
	return now, uint32(min(e, maxSec))
}

func (s *Store) nowSec() uint32 {
	now, _ := s.clock()
	return now
}

// shardFor returns the shard of h and h's keyed hash: the shard is picked
// by the high half of the hash (so that info hashes chosen to collide
// cannot pile up in one shard), the slot by the low.
func (s *Store) shardFor(h *bittorrent.InfoHash) (*shard, uint64) {
	hash := maphash.Bytes(s.seed, h[:])
	return &s.shards[(hash>>32)&s.mask], hash
}

// count applies changes of seeders, leechers and torrents to the totals;
// dS6 and dL6 are the IPv6 part of dS and dL.
func (s *Store) count(dS, dL, dS6, dL6, dT int) {
	if dS != 0 {
		s.seeders.Add(int64(dS))
	}
	if dL != 0 {
		s.leechers.Add(int64(dL))
	}
	if dS6 != 0 {
		s.seeders6.Add(int64(dS6))
	}
	if dL6 != 0 {
		s.leechers6.Add(int64(dL6))
	}
	if dT != 0 {
		s.torrents.Add(int64(dT))
	}
}

// compact drops the expired peers of sw and counts them out.
func (s *Store) compact(sh *shard, sw *swarm, now uint32) {
	had := sh.numPeers(sw) > 0
	rmS, rmL, rmS6, rmL6 := sh.compact(sw, now)
	dT := 0
	if had && sh.numPeers(sw) == 0 {
		dT = -1
	}
	s.count(-rmS, -rmL, -rmS6, -rmL6, dT)
	if n := rmS + rmL; n > 0 {
		s.expired.Add(uint64(n))
	}
}

// The abilities of the in-memory store (package store's "Optional
// abilities"); MemoryBounded is asserted in bound.go.
var (
	_ store.InProcess        = (*Store)(nil)
	_ store.Prober           = (*Store)(nil)
	_ store.ExpiryCounter    = (*Store)(nil)
	_ store.Snapshotter      = (*Store)(nil)
	_ store.BatchAnnouncer   = (*Store)(nil)
	_ store.CompactAnnouncer = (*Store)(nil)
)

// InProcess implements store.InProcess: every call answers from the
// shards in this process, under a shard's mutex held for microseconds.
func (*Store) InProcess() {}

// Expired implements store.ExpiryCounter: how many peers the store has
// dropped because their lifetime passed, since it was made (for the
// metrics).
func (s *Store) Expired() uint64 { return s.expired.Load() }

// removeIfEmpty deletes the swarm in slot i of sh if it has no peer and no
// download, and reports whether it did.
func (s *Store) removeIfEmpty(sh *shard, sw *swarm, i int) bool {
	if sh.numPeers(sw) != 0 || sw.downloaded != 0 {
		return false
	}
	sh.freeSwarm(sw)
	sh.swarms.remove(sh, s.seed, i)
	return true
}

// Announce implements store.Store. It fails only for an invalid address or
// a closed store.
func (s *Store) Announce(_ context.Context, a store.Announce, peers []bittorrent.Peer) ([]bittorrent.Peer, bittorrent.Stats, error) {
	if !a.Peer.Addr.IsValid() {
		return peers, bittorrent.Stats{}, errNoAddr
	}
	now, exp := s.clock()
	return s.announce(&a, peers, nil, now, exp)
}

// AnnounceCompact implements store.CompactAnnouncer: Announce with the
// peers written in compact form straight from the records (see
// compactPeers).
func (s *Store) AnnounceCompact(_ context.Context, a store.Announce, v4, v6 []byte) ([]byte, []byte, bittorrent.Stats, error) {
	if !a.Peer.Addr.IsValid() {
		return v4, v6, bittorrent.Stats{}, errNoAddr
	}
	now, exp := s.clock()
	out := compactPeers{v4: v4, v6: v6}
	_, st, err := s.announce(&a, nil, &out, now, exp)
	return out.v4, out.v6, st, err
}

// AnnounceBatch implements store.BatchAnnouncer: Announce with NumWant 0
// for each of as, the clock read once.
func (s *Store) AnnounceBatch(_ context.Context, as []store.Announce) (failed int) {
	now, exp := s.clock()
	for i := range as {
		a := &as[i]
		if !a.Peer.Addr.IsValid() {
			failed++
			continue
		}
		want := a.NumWant
		a.NumWant = 0
		_, _, err := s.announce(a, nil, nil, now, exp)
		a.NumWant = want
		if err != nil {
			failed++
		}
	}
	return failed
}

// announce is Announce of a valid address, at the store's second now,
// the peer expiring at exp (see clock). With out, the peers go to out in
// compact form instead of to peers.
func (s *Store) announce(a *store.Announce, peers []bittorrent.Peer, out *compactPeers, now, exp uint32) ([]bittorrent.Peer, bittorrent.Stats, error) {
	sh, hash := s.shardFor(&a.InfoHash)
	sh.mu.Lock()
	if sh.closed {
		sh.mu.Unlock()
		return peers, bittorrent.Stats{}, errClosed
	}
	sw, i := sh.swarms.lookup(sh, &a.InfoHash, hash)
	if sw == nil {
		if a.Event == bittorrent.EventStopped {
			sh.mu.Unlock()
			return peers, bittorrent.Stats{}, nil
		}
		if s.heap.torrentsFull() {
			sh.mu.Unlock()
			s.refuse(now)
			return peers, bittorrent.Stats{}, store.ErrNoNewTorrents
		}
		i = sh.swarms.insert(sh, s.seed, &a.InfoHash, hash, i)
		sw = &sh.swarms.slots(sh)[i]
	}
	if sw.minExp <= now {
		s.compact(sh, sw, now)
	}
	before := sh.numPeers(sw)

	self4, self6 := -1, -1
	var dS, dL int
	ip, port := a.Peer.Addr.Addr(), a.Peer.Addr.Port()
	if ip.Is4() {
		b := ip.As4()
		self4, dS, dL = sh.apply4(sw, a, uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3]), port, exp)
	} else {
		b := ip.As16()
		self6, dS, dL = sh.apply6(sw, a, &b, port, exp)
	}
	if self4 == refusedJoin || self6 == refusedJoin {
		// Nothing changed but what compact did; a swarm made for this
		// announce goes again.
		if sh.numPeers(sw) == 0 && s.removeIfEmpty(sh, sw, i) {
			sh.swarms.shrink(sh, s.seed)
		}
		sh.tidyMemory()
		sh.mu.Unlock()
		s.refuse(now)
		return peers, bittorrent.Stats{}, store.ErrNoNewPeers
	}
	if a.Event != bittorrent.EventStopped {
		if exp < sw.minExp {
			sw.minExp = exp
		}
		if exp < sh.minExp.Load() {
			sh.minExp.Store(exp)
		}
	}
	after := before + dS + dL
	dT := 0
	if before == 0 && after > 0 {
		dT = 1
	} else if before > 0 && after == 0 {
		dT = -1
	}
	if self6 >= 0 || !ip.Is4() {
		s.count(dS, dL, dS, dL, dT)
	} else {
		s.count(dS, dL, 0, 0, dT)
	}

	st := sh.stats(sw)
	if a.NumWant > 0 {
		peers = sh.pick(sw, a.Seeder, a.Family, self4, self6, a.NumWant, peers, out)
	}
	if after == 0 && s.removeIfEmpty(sh, sw, i) {
		sh.swarms.shrink(sh, s.seed)
	}
	sh.tidyMemory()
	sh.mu.Unlock()
	return peers, st, nil
}

// Scrape implements store.Store. It fails only for a closed store.
func (s *Store) Scrape(_ context.Context, hashes []bittorrent.InfoHash, stats []bittorrent.Stats) ([]bittorrent.Stats, error) {
	now := s.nowSec()
	for i := range hashes {
		h := &hashes[i]
		sh, hash := s.shardFor(h)
		var st bittorrent.Stats
		sh.mu.Lock()
		if sh.closed {
			sh.mu.Unlock()
			return stats, errClosed
		}
		if sw, j := sh.swarms.lookup(sh, h, hash); sw != nil {
			if sw.minExp <= now {
				s.compact(sh, sw, now)
			}
			st = sh.stats(sw)
			if s.removeIfEmpty(sh, sw, j) {
				sh.swarms.shrink(sh, s.seed)
			}
			sh.tidyMemory()
		}
		sh.mu.Unlock()
		stats = append(stats, st)
	}
	return stats, nil
}

type scraped struct {
	hash  bittorrent.InfoHash
	stats bittorrent.Stats
}

// ScrapeAll implements store.Store. fn never runs with a lock held (see
// walk). It fails only for a closed store, or with fn's error.
func (s *Store) ScrapeAll(_ context.Context, fn func(bittorrent.InfoHash, bittorrent.Stats) error) error {
	return walk(s,
		func(buf []scraped, sh *shard, sw *swarm) []scraped {
			return append(buf, scraped{sw.hash, sh.stats(sw)})
		},
		func(e *scraped) error { return fn(e.hash, e.stats) })
}

// walk visits every swarm, shard by shard: with the shard's lock held and
// its expired peers swept, collect appends what it needs of each swarm to
// a buffer; then, with the lock released, emit is called for each entry,
// so that a slow emit never holds up announces. A swarm that changes
// meanwhile is seen before or after the change. walk fails only for a
// closed store, or with emit's error.
func walk[T any](s *Store, collect func(buf []T, sh *shard, sw *swarm) []T, emit func(*T) error) error {
	var buf []T
	for i := range s.shards {
		sh := &s.shards[i]
		now := s.nowSec()
		sh.mu.Lock()
		if sh.closed {
			sh.mu.Unlock()
			return errClosed
		}
		s.sweepShard(sh, now)
		buf = buf[:0]
		for j := range sh.swarms.slots(sh) {
			if sw := &sh.swarms.slots(sh)[j]; sw.minExp != 0 {
				buf = collect(buf, sh, sw)
			}
		}
		sh.mu.Unlock()
		for k := range buf {
			if err := emit(&buf[k]); err != nil {
				return err
			}
		}
	}
	return nil
}

// Totals implements store.Store. It never fails. The counts may include
// peers expired in the last few seconds that the background sweeper has not
// dropped yet (see the package comment).
func (s *Store) Totals(context.Context) (store.Totals, error) {
	if now := s.nowSec(); s.sweptThrough.Load()+s.totalsLag < now {
		s.sweep(now, false)
	}
	t := store.Totals{
		Torrents: nonNegative(s.torrents.Load()),
		Seeders:  nonNegative(s.seeders.Load()),
		Leechers: nonNegative(s.leechers.Load()),
	}
	// never more IPv6 peers than peers, when a reader sees one counter
	// updated before the other
	t.Seeders6 = min(nonNegative(s.seeders6.Load()), t.Seeders)
	t.Leechers6 = min(nonNegative(s.leechers6.Load()), t.Leechers)
	return t, nil
}

// nonNegative guards against a reader seeing one counter changed before
// another.
func nonNegative(n int64) uint64 { return uint64(max(n, 0)) }

// Close stops the background sweeper and gives the store's memory back to
// the system. Calls after it fail (Totals returns the last counts). It
// always returns nil.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		for i := range s.shards {
			sh := &s.shards[i]
			sh.mu.Lock()
			sh.closed = true
			sh.swarms = table{}
			sh.mem.release()
			sh.account()
			sh.mu.Unlock()
		}
		// No shard can reach a large block now.
		s.heap.release()
	})
	<-s.done
	return nil
}

// Probe implements store.Prober: the in-memory store serves every request
// until it is closed, and then fails them with store.ErrClosed.
func (s *Store) Probe(context.Context) error {
	select {
	case <-s.stop:
		return errClosed
	default:
		return nil
	}
}

func (s *Store) sweeper(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			now := s.nowSec()
			s.sweep(now, true)
			s.shed(now)
		}
	}
}

// sweep drops every peer expired at now, shard by shard, unless another
// sweep already got that far; yield makes it give up the processor between
// shards it sweeps.
func (s *Store) sweep(now uint32, yield bool) {
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()
	if s.sweptThrough.Load() >= now {
		return
	}
	for i := range s.shards {
		sh := &s.shards[i]
		if sh.minExp.Load() > now {
			continue
		}
		if yield {
			select {
			case <-s.stop:
				return
			default:
			}
		}
		sh.mu.Lock()
		if !sh.closed {
			s.sweepShard(sh, now)
		}
		sh.mu.Unlock()
		if yield {
			runtime.Gosched()
		}
	}
	s.sweptThrough.Store(now)
}

// sweepShard compacts the swarms of sh with peers expired at now, deletes
// those left with no peer and no download, and makes sh.minExp exact. sh.mu
// must be held and the store open.
func (s *Store) sweepShard(sh *shard, now uint32) {
	minExp := uint32(noExp)
	t := &sh.swarms
	for i := 0; i < len(t.slots(sh)); {
		sw := &t.slots(sh)[i]
		if sw.minExp == 0 {
			i++
			continue
		}
		if sw.minExp <= now {
			s.compact(sh, sw, now)
		}
		if s.removeIfEmpty(sh, sw, i) {
			continue // and look at slot i again: another may have moved in
		}
		minExp = min(minExp, sw.minExp)
		i++
	}
	t.shrink(sh, s.seed)
	sh.tidyMemory()
	sh.minExp.Store(minExp)
}
