package fleet

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"trackd/bittorrent"
	"trackd/internal/ratelog"
	"trackd/store"
)

// Defaults of Config.
const (
	// DefaultFlushInterval is how often the changes recorded are
	// published: what they add to the time a peer takes to appear on the
	// other instances, beside the Bus's round trip.
	DefaultFlushInterval = 50 * time.Millisecond
	// DefaultReadCount is the most batches a reader takes in one Read.
	DefaultReadCount = 64
	// DefaultReadBlock is how long a Read waits for a batch before it
	// returns none: the longest a reader takes to notice that its
	// context ended, on a Bus that does not watch it (a blocked XREAD
	// of go-redis runs its course), so what sync adds to a shutdown. It
	// costs an idle instance 4 reads a second per stream.
	DefaultReadBlock = 250 * time.Millisecond
	// DefaultMaxBackoff is the longest wait between two attempts to reach
	// a Bus that fails: how long after the Bus returns the changes may
	// take to flow again.
	DefaultMaxBackoff = time.Second
	// DefaultPublishCount and DefaultPublishBytes bound what a Node
	// publishes in one round trip to a Bus that is a ManyPublisher: 64
	// batches and 2 MiB (but at least one batch).
	DefaultPublishCount = 64
	DefaultPublishBytes = 2 << 20
	// DefaultFinalFlush bounds how long Run, once its context ended,
	// tries to publish what is pending.
	DefaultFinalFlush = time.Second
)

// Config configures a Node. Its zero value is usable.
type Config struct {
	// FlushInterval is how often the batches are published; 0 means
	// DefaultFlushInterval. A full batch (StoreConfig.MaxBatchBytes) is
	// published at once.
	FlushInterval time.Duration
	// ReadCount is the most batches read at once; 0 means
	// DefaultReadCount.
	ReadCount int
	// ReadBlock is how long a Read waits for a batch; 0 means
	// DefaultReadBlock.
	ReadBlock time.Duration
	// MaxBackoff is the longest wait between attempts to reach a failing
	// Bus (the first waits FlushInterval, each next one twice as long);
	// 0 means DefaultMaxBackoff.
	MaxBackoff time.Duration
	// PublishCount and PublishBytes bound the batches of one stream
	// published in one round trip, to a Bus that is a ManyPublisher; 0
	// means DefaultPublishCount, DefaultPublishBytes.
	PublishCount, PublishBytes int
	// FinalFlush bounds the last publication, when Run's context ends;
	// 0 means DefaultFinalFlush, negative none.
	FinalFlush time.Duration
	// Logger gets the lines that say the Bus became unreachable and
	// reachable again; nil discards them.
	Logger *slog.Logger
	// Errors rate-limits the lines of errors that repeat (kinds
	// ratelog.KindSync and KindSyncBatch); nil makes one from Logger.
	Errors *ratelog.Logger
	// ChunkSize is the size of the chunks of a snapshot this instance
	// hands a joining one (see Join); 0 means DefaultChunkSize.
	ChunkSize int
}

// Node keeps a Store's instance in step with the others of its fleet
// through a Bus: it publishes the changes the Store records, and replays
// into the Store's inner store the changes the others published. Make
// one with NewNode; Run does the work.
type Node struct {
	st   *Store
	bus  Bus
	cfg  Config
	log  *slog.Logger
	errs *ratelog.Logger

	running atomic.Bool
	// out holds the batches the publisher has taken, for reuse.
	out [][]byte
	// ready is closed once every reader knows where it starts; starting
	// counts the readers that do not yet.
	ready    chan struct{}
	starting atomic.Int32

	// gate is held shared by a reader while it applies what it read
	// and moves pos, and exclusively by a donor while it dumps the
	// store (see Join): the positions it notes are then exact.
	gate sync.RWMutex
	pos  []string // per stream: the position replayed up to
	// start and startDonor are where the readers start after a Join,
	// and the donor whose changes below start[i].next they skip.
	start      []joinStart
	startDonor Instance
	// startSkip[i] holds, per swarm of stream i, the number of the
	// donor's first change its snapshot may lack, where that is past
	// start[i].next; reader i owns it.
	startSkip []map[bittorrent.InfoHash]uint64
	// donations counts the snapshots handed to joining instances;
	// lastPause is how long the last one held the readers
	// (nanoseconds).
	donations atomic.Uint64
	lastPause atomic.Int64

	published, batches  atomic.Uint64
	applied, refused    atomic.Uint64
	gaps, lost, garbage atomic.Uint64
	duplicates, busErrs atomic.Uint64
	lastContact         atomic.Int64 // Unix nanoseconds; 0 for never
	state               atomic.Int32 // stateUnknown, stateUp, stateDown
	downSince           atomic.Int64 // Unix nanoseconds, while down
	outages             atomic.Uint64
	upLineMu            sync.Mutex
	upLineAt            time.Time // when the last "reachable again" line was written
	upLineOutages       uint64    // outages then
}

const (
	stateUnknown = iota
	stateUp
	stateDown
)

// Stats are a Node's counters since it was made, for the metrics.
type Stats struct {
	// Published is the changes of this instance published, in Batches
	// batches.
	Published, Batches uint64
	// Applied is the changes of other instances replayed into the
	// store; Refused those the store refused (at its memory bound,
	// max_memory, as it refuses a local announce; or closed).
	Applied, Refused uint64
	// Dropped is the changes of this instance dropped unpublished,
	// because more were waiting than StoreConfig.MaxPending.
	Dropped uint64
	// Gaps is the times a reader found that an origin's batches skipped
	// numbers: batches the origin dropped, or the stream trimmed before
	// they were read. Lost is the changes they skipped.
	Gaps, Lost uint64
	// Duplicates is the batches read that had been read already (a
	// publication retried after a timeout that had in fact gone
	// through): skipped.
	Duplicates uint64
	// Garbage is the batches read that did not decode: skipped.
	Garbage uint64
	// BusErrors is the calls to the Bus that failed.
	BusErrors uint64
	// Connected is whether the last call to the Bus succeeded.
	Connected bool
	// LastContact is when a call to the Bus last succeeded (zero for
	// never).
	LastContact time.Time
	// PendingBatches and PendingBytes are the batches waiting to be
	// published now, the open ones included.
	PendingBatches, PendingBytes int
	// Donations is the snapshots handed to joining instances (Join);
	// LastPause how long the last one held this instance's readers.
	Donations uint64
	LastPause time.Duration
}

// NewNode returns a Node for st and bus, which must have as many streams
// as st.
func NewNode(st *Store, bus Bus, cfg Config) (*Node, error) {
	if n := bus.NumStreams(); n != st.NumStreams() {
		return nil, fmt.Errorf("%w: %d, the Store %d", errCount, n, st.NumStreams())
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.ReadCount <= 0 {
		cfg.ReadCount = DefaultReadCount
	}
	if cfg.ReadBlock <= 0 {
		cfg.ReadBlock = DefaultReadBlock
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.PublishCount <= 0 {
		cfg.PublishCount = DefaultPublishCount
	}
	if cfg.PublishBytes <= 0 {
		cfg.PublishBytes = DefaultPublishBytes
	}
	if cfg.FinalFlush == 0 {
		cfg.FinalFlush = DefaultFinalFlush
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	errs := cfg.Errors
	if errs == nil {
		errs = ratelog.New(log, ratelog.Options{})
	}
	n := &Node{st: st, bus: bus, cfg: cfg, log: log, errs: errs, ready: make(chan struct{}), pos: make([]string, st.NumStreams())}
	n.starting.Store(int32(st.NumStreams()))
	return n, nil
}

// Ready is closed once Run has found, on every stream, the position it
// reads from (the end of the stream when it started, or after a Join the
// position the snapshot covers): every batch published after that is
// replayed here.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// Stats returns the Node's counters.
func (n *Node) Stats() Stats {
	s := Stats{
		Published:  n.published.Load(),
		Batches:    n.batches.Load(),
		Applied:    n.applied.Load(),
		Refused:    n.refused.Load(),
		Dropped:    n.st.dropped.Load(),
		Gaps:       n.gaps.Load(),
		Lost:       n.lost.Load(),
		Duplicates: n.duplicates.Load(),
		Garbage:    n.garbage.Load(),
		BusErrors:  n.busErrs.Load(),
		Connected:  n.state.Load() == stateUp,
		Donations:  n.donations.Load(),
		LastPause:  time.Duration(n.lastPause.Load()),
	}
	if t := n.lastContact.Load(); t != 0 {
		s.LastContact = time.Unix(0, t)
	}
	s.PendingBatches, s.PendingBytes = n.st.pending()
	return s
}

// Run publishes and reads until ctx ends, then tries to publish what is
// pending for at most Config.FinalFlush and returns nil once every
// goroutine it started has ended. It runs one goroutine to publish, one
// to read each stream, and one to hear the requests of joining instances
// and answer them (see Join). A Node runs once.
//
// A Bus that fails stops nothing: Run tries again, waiting up to
// Config.MaxBackoff between attempts, while the Store keeps recording
// (up to its MaxPending).
func (n *Node) Run(ctx context.Context) error {
	if !n.running.CompareAndSwap(false, true) {
		return errors.New("fleet: Node.Run called twice")
	}
	var wg sync.WaitGroup
	for i := range n.st.NumStreams() {
		wg.Go(func() { n.read(ctx, i) })
	}
	wg.Go(func() { n.listen(ctx) })
	n.publish(ctx)
	wg.Wait()
	return nil
}

// publish runs the publisher until ctx ends, then flushes a last time.
func (n *Node) publish(ctx context.Context) {
	t := time.NewTicker(n.cfg.FlushInterval)
	defer t.Stop()
	backoff := n.cfg.FlushInterval
	var retry time.Time
	for {
		select {
		case <-ctx.Done():
			if n.cfg.FinalFlush > 0 {
				fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.cfg.FinalFlush)
				n.flush(fctx)
				cancel()
			}
			return
		case <-t.C:
		case <-n.st.wake:
		}
		if now := time.Now(); now.Before(retry) {
			continue
		}
		if err := n.flush(ctx); err != nil && ctx.Err() == nil {
			retry = time.Now().Add(backoff)
			backoff = min(2*backoff, n.cfg.MaxBackoff)
		} else {
			backoff = n.cfg.FlushInterval
		}
	}
}

// flush publishes every batch waiting, stream by stream; a stream whose
// Publish fails is left for the next attempt (on a Redis Cluster, the
// others may live on masters that answer). It returns the first error.
func (n *Node) flush(ctx context.Context) error {
	var first error
	for i := range n.st.NumStreams() {
		if err := n.flushStream(ctx, i); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// flushStream publishes the batches of stream i queued now and its open
// one: not more, so that a busy stream does not hold up the others. To a
// ManyPublisher it publishes up to Config.PublishCount batches (and
// PublishBytes) a round trip, else one.
func (n *Node) flushStream(ctx context.Context, i int) error {
	queued := n.st.lanes[i].queuedNow()
	many, _ := n.bus.(ManyPublisher)
	per, perBytes := 1, 0
	if many != nil {
		per, perBytes = n.cfg.PublishCount, n.cfg.PublishBytes
	}
	for k := 0; k <= queued; {
		bs := n.st.takeMany(i, k == 0, n.out[:0], min(per, queued+1-k), perBytes)
		n.out = bs
		if len(bs) == 0 {
			return nil
		}
		k += len(bs)
		var published int
		var err error
		if many != nil {
			published, err = many.PublishMany(ctx, i, bs)
			published = min(max(published, 0), len(bs))
			if err == nil && published < len(bs) {
				err = fmt.Errorf("fleet: the bus published %d batches of %d", published, len(bs))
			}
		} else if err = n.bus.Publish(ctx, i, bs[0]); err == nil {
			published = 1
		}
		count := 0
		for _, b := range bs[:published] {
			count += headerCount(b)
		}
		n.st.doneMany(i, bs, published)
		clear(bs)
		n.batches.Add(uint64(published))
		n.published.Add(uint64(count))
		if err != nil {
			if ctx.Err() == nil {
				n.failed(ctx, "publish", err)
			}
			return err
		}
		n.reached()
	}
	return nil
}

// queuedNow returns how many closed batches the lane holds.
func (l *lane) queuedNow() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.queued
}

// origin is what a reader knows of one origin's batches on its stream.
type origin struct {
	next uint64 // the number of the change expected next
	seen time.Time
}

// Origins a reader has not seen for originIdle are forgotten (checked
// every originSweep): restarted instances are new origins, and the map
// must not grow with them. One that comes back is taken as new, its
// batches read without a gap check until the next one.
const (
	originIdle  = time.Hour
	originSweep = 10 * time.Minute
)

// read replays stream i until ctx ends.
func (n *Node) read(ctx context.Context, i int) {
	backoff := n.cfg.FlushInterval
	wait := func() bool {
		t := time.NewTimer(backoff)
		defer t.Stop()
		backoff = min(2*backoff, n.cfg.MaxBackoff)
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	origins := make(map[Instance]*origin)
	var buf []store.Announce // apply's
	var pos string
	var skip map[bittorrent.InfoHash]uint64
	var skipEnd uint64
	if n.start != nil {
		// After a Join: from the donor's position, without the
		// donor's changes its snapshot has.
		pos = n.start[i].pos
		origins[n.startDonor] = &origin{next: n.start[i].next, seen: time.Now()}
		skip = n.startSkip[i]
		for _, m := range skip {
			skipEnd = max(skipEnd, m)
		}
	}
	for pos == "" {
		p, err := n.bus.Tail(ctx, i)
		if err == nil {
			pos = p
			if pos == "" {
				pos = StreamStart
			}
			n.reached()
			break
		}
		if ctx.Err() != nil {
			return
		}
		n.failed(ctx, "tail", err)
		if !wait() {
			return
		}
	}
	n.gate.RLock()
	n.pos[i] = pos
	n.gate.RUnlock()
	if n.starting.Add(-1) == 0 {
		close(n.ready)
	}
	backoff = n.cfg.FlushInterval
	swept := time.Now()
	for ctx.Err() == nil {
		entries, err := n.bus.Read(ctx, i, pos, n.cfg.ReadCount, n.cfg.ReadBlock)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			n.failed(ctx, "read", err)
			if !wait() {
				return
			}
			continue
		}
		backoff = n.cfg.FlushInterval
		n.reached()
		now := time.Now()
		// A donor's dump (Join) waits for the batches in hand, and
		// holds the next ones back.
		n.gate.RLock()
		for _, e := range entries {
			pos = e.Pos
			n.apply(ctx, i, e.Batch, origins, now, skip, &buf)
		}
		if skip != nil {
			if o := origins[n.startDonor]; o == nil || o.next >= skipEnd {
				skip = nil // past every change the snapshot may hold
			}
		}
		n.pos[i] = pos
		n.gate.RUnlock()
		if now.Sub(swept) > originSweep {
			for id, o := range origins {
				if now.Sub(o.seen) > originIdle {
					delete(origins, id)
				}
			}
			swept = now
		}
	}
}

// replayChunk is the most changes a reader replays into a
// store.BatchAnnouncer at once: one reading of the store's clock each, and
// a buffer of 25 KB a reader.
const replayChunk = 256

// apply replays the changes of batch b, read from stream i, into the
// inner store (through buf, the reader's buffer, if the store is a
// store.BatchAnnouncer), unless they are this instance's own or were applied
// already, or, after a Join, are the donor's that its snapshot holds
// (skip: see Node.startSkip).
func (n *Node) apply(ctx context.Context, i int, b []byte, origins map[Instance]*origin, now time.Time, skip map[bittorrent.InfoHash]uint64, buf *[]store.Announce) {
	h, err := checkBatch(b)
	if err != nil {
		n.garbage.Add(1)
		n.errs.Log(ctx, slog.LevelWarn, ratelog.KindSyncBatch, "sync: skipped a batch that does not decode", "stream", i, "err", err)
		return
	}
	if h.Origin == n.st.self {
		return
	}
	end := h.First + uint64(h.Count)
	skipped := 0
	if o := origins[h.Origin]; o == nil {
		origins[h.Origin] = &origin{next: end, seen: now}
	} else {
		o.seen = now
		switch {
		case h.First > o.next:
			n.gaps.Add(1)
			n.lost.Add(h.First - o.next)
		case end <= o.next:
			n.duplicates.Add(1)
			return
		case h.First < o.next:
			skipped = int(o.next - h.First)
		}
		o.next = end
	}
	inner := n.st.inner
	batcher, _ := inner.(store.BatchAnnouncer)
	var applied, refused uint64
	replay := func() {
		failed := uint64(batcher.AnnounceBatch(ctx, *buf))
		applied += uint64(len(*buf)) - failed
		refused += failed
		clear(*buf)
		*buf = (*buf)[:0]
	}
	p := b[headerSize:]
	var c Change
	for k := range h.Count {
		p = decodeChange(p, &c)
		if k < skipped {
			continue
		}
		if skip != nil && h.Origin == n.startDonor {
			if m, ok := skip[c.InfoHash]; ok && h.First+uint64(k) < m {
				continue
			}
		}
		a := store.Announce{
			InfoHash: c.InfoHash,
			Peer:     c.Peer,
			Event:    c.Event,
			Seeder:   c.Seeder,
		}
		if batcher != nil {
			if *buf = append(*buf, a); len(*buf) == replayChunk {
				replay()
			}
			continue
		}
		if _, _, err := inner.Announce(ctx, a, nil); err != nil {
			refused++
		} else {
			applied++
		}
	}
	if len(*buf) > 0 {
		replay()
	}
	n.applied.Add(applied)
	n.refused.Add(refused)
}

// reached records a call to the Bus that succeeded, and logs the end of
// an outage.
func (n *Node) reached() {
	now := time.Now()
	n.lastContact.Store(now.UnixNano())
	if n.state.Load() == stateUp {
		return
	}
	old := n.state.Swap(stateUp)
	if old != stateDown {
		return
	}
	since := time.Unix(0, n.downSince.Load())
	// At most one such line per ratelog interval, if the Bus flaps.
	n.upLineMu.Lock()
	outages := n.outages.Load()
	write := n.upLineAt.IsZero() || now.Sub(n.upLineAt) >= ratelog.DefaultInterval
	var count uint64
	if write {
		count = outages - n.upLineOutages
		n.upLineAt, n.upLineOutages = now, outages
	}
	n.upLineMu.Unlock()
	if write {
		pending, _ := n.st.pending()
		n.log.Info("sync: the bus is reachable again", "down_for", now.Sub(since).Round(time.Millisecond),
			"outages", count, "dropped_total", n.st.dropped.Load(), "pending_batches", pending)
	}
}

// failed records a call to the Bus that failed, and logs the start of an
// outage (rate-limited, as a repeated error).
func (n *Node) failed(ctx context.Context, op string, err error) {
	n.busErrs.Add(1)
	if n.state.Load() == stateDown {
		return
	}
	if n.state.Swap(stateDown) == stateDown {
		return
	}
	n.downSince.Store(time.Now().UnixNano())
	n.outages.Add(1)
	n.errs.Log(ctx, slog.LevelWarn, ratelog.KindSync,
		"sync: the bus is unreachable; answering from this instance's memory, changes wait to be published",
		"op", op, "err", err)
}

// headerCount returns the count of the batch b, whose header is written.
func headerCount(b []byte) int { return int(binary.BigEndian.Uint32(b[17:21])) }
