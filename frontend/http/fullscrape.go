package http

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"trackd/bencode"
	"trackd/bittorrent"
	"trackd/tracker"
)

// The full scrape (a scrape without info_hash) lists every torrent: with
// millions of them it takes seconds to build and hundreds of megabytes to
// hold, so it is never built on a request's path. A goroutine of the
// Handler builds it: at once when the Handler is made, then whenever a
// request finds the last build older than Options.FullScrapeInterval. That
// request, and every other until the new build is done, is answered with
// the last build, at once: no request waits for a build, and none holds a
// lock a build holds. Only before the first build is done is there nothing
// to send: those requests get a failure reason with BEP 31's "retry in".
//
// A build walks the store once into a compact array (32 bytes a torrent),
// sorts it and bencodes it straight into a gzip writer; what is kept is the
// gzipped body alone, which the servers write to every client that accepts
// gzip without a copy. A client that does not accept gzip gets a stream
// that decompresses the kept body as it is written (reply.stream): at most
// Options.FullScrapeStreams at once, since each costs a core's time; beyond
// that, a failure reason with "retry in".

// DefaultFullScrapeStreams is how many uncompressed full scrapes may be
// sent at once when Options.FullScrapeStreams is 0.
const DefaultFullScrapeStreams = 4

// fullScrapeLevel is the gzip level of the full scrape. BestSpeed builds
// in about half the time of DefaultCompression a body about 15 % larger
// (27.7 bytes a torrent against 24.2 with random info hashes, whose 20
// bytes do not compress): see BenchmarkFullScrapeBuild.
const fullScrapeLevel = gzip.BestSpeed

// retryError refuses a request for now: a failure reason with BEP 31's
// "retry in", in minutes. It is not the client's fault, and not logged.
type retryError struct {
	msg     string
	minutes int64
}

func (e *retryError) Error() string { return e.msg }

var (
	errFullScrapeNotReady = &retryError{"full scrape is being prepared: retry later", 1}
	errFullScrapeBusy     = &retryError{"too many uncompressed full scrapes at once: retry later, or accept gzip", 1}
)

// fullScrape is the full scrape's cache and its builder.
type fullScrape struct {
	tracker  *tracker.Tracker
	interval time.Duration
	now      func() time.Time
	log      *slog.Logger

	last    atomic.Pointer[scrapeBuild] // nil until the first build is done
	kick    chan struct{}               // asks for a build; one waits at most
	streams chan struct{}               // a token per uncompressed stream sent

	cancel    context.CancelFunc
	done      chan struct{} // closed when the builder has returned
	closeOnce sync.Once
}

// scrapeBuild is one build of the full scrape, never modified once made.
type scrapeBuild struct {
	at       time.Time // when the walk of the store began
	gz       []byte    // the bencoded reply, gzip-compressed
	plain    int64     // its length uncompressed
	torrents int
}

// start makes the cache and starts its builder, which builds at once.
func (f *fullScrape) start(t *tracker.Tracker, opts *Options, log *slog.Logger) {
	f.tracker, f.interval, f.now, f.log = t, opts.FullScrapeInterval, opts.Now, log
	n := opts.FullScrapeStreams
	if n <= 0 {
		n = DefaultFullScrapeStreams
	}
	f.kick = make(chan struct{}, 1)
	f.streams = make(chan struct{}, n)
	f.done = make(chan struct{})
	var ctx context.Context
	ctx, f.cancel = context.WithCancel(context.Background())
	go f.run(ctx)
}

// close stops the builder, a build in progress included, and waits for
// it. The last build is still served.
func (f *fullScrape) close() {
	if f.done == nil {
		return
	}
	f.closeOnce.Do(f.cancel)
	<-f.done
}

// Backoff after a failed build: the store is failing, and a build that
// fails at once must not be retried at the rate of requests.
const (
	minBuildBackoff = time.Second
	maxBuildBackoff = time.Minute
)

// run builds at once, then each time a request finds the last build stale,
// until ctx ends.
func (f *fullScrape) run(ctx context.Context) {
	defer close(f.done)
	backoff := time.Duration(0)
	for {
		if err := f.build(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = min(max(2*backoff, minBuildBackoff), maxBuildBackoff)
			f.log.Error("full scrape not built", "err", err, "retry", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			continue // a build was asked for, and is still due
		}
		backoff = 0
		// Wait for a request that finds the build stale. One may have
		// asked during the build, before it was done: with an interval
		// longer than the build, the new build is fresh to it.
		for stale := false; !stale; {
			select {
			case <-ctx.Done():
				return
			case <-f.kick:
			}
			b := f.last.Load()
			stale = b == nil || f.now().Sub(b.at) >= f.interval
		}
	}
}

// get returns the last build, nil if there is none yet, and asks for a new
// one if it is older than the interval. It never waits.
func (f *fullScrape) get() *scrapeBuild {
	b := f.last.Load()
	if b == nil || f.now().Sub(b.at) >= f.interval {
		select {
		case f.kick <- struct{}{}:
		default: // asked already
		}
	}
	return b
}

// build walks the store and replaces the last build.
func (f *fullScrape) build(ctx context.Context) error {
	at := f.now()
	// gzipped bytes a torrent, from the last build if it was large enough
	// to tell (the gzip header and the flags weigh on a small one)
	var hint float64
	if b := f.last.Load(); b != nil && b.torrents >= 10000 {
		hint = min(float64(len(b.gz))/float64(b.torrents), 64)
	}
	start := time.Now()
	b, err := buildFullScrape(ctx, f.tracker, hint)
	if err != nil {
		return err
	}
	b.at = at
	f.last.Store(b)
	f.log.Debug("full scrape built", "torrents", b.torrents, "bytes", b.plain, "gzipped", len(b.gz),
		"duration", time.Since(start))
	// The compact array and the body replaced are the largest garbage
	// the process makes, once per build: collected now, rather than when
	// the heap has grown to twice what is live, they never add up with
	// the next build's, and a build raises resident memory by the size of
	// one array and one body at most (see docs/benchmarks.md).
	runtime.GC()
	return nil
}

// buildFullScrape walks the tracker's torrents and encodes the full
// scrape. hint is the gzipped size of a torrent (0: unknown), to size the
// output at once.
func buildFullScrape(ctx context.Context, t *tracker.Tracker, hint float64) (*scrapeBuild, error) {
	var c collector
	interval, err := t.ScrapeAll(ctx, func(ih bittorrent.InfoHash, s bittorrent.Stats) error {
		return c.add(ctx, ih, s)
	})
	if err != nil {
		return nil, err
	}
	return c.encode(ctx, interval, hint)
}

// scrapeEntry is one torrent of a build: the info hash split into
// big-endian integers, so that comparing them orders the hashes as their
// bytes; 32 bytes in all.
type scrapeEntry struct {
	hi, mid uint64 // bytes 0–7 and 8–15
	lo      uint32 // bytes 16–19
	s       bittorrent.Stats
}

func entryLess(a, b *scrapeEntry) bool {
	if a.hi != b.hi {
		return a.hi < b.hi
	}
	if a.mid != b.mid {
		return a.mid < b.mid
	}
	return a.lo < b.lo
}

// sortEntries sorts a block by info hash.
func sortEntries(es []scrapeEntry) {
	slices.SortFunc(es, func(a, b scrapeEntry) int {
		switch {
		case entryLess(&a, &b):
			return -1
		case entryLess(&b, &a):
			return 1
		}
		return 0
	})
}

// blockSize is the number of entries of a collector's block (1 MiB).
const blockSize = 1 << 15

// collector gathers the entries of a build in blocks of fixed size, each
// sorted once full: nothing is ever copied to grow, so a build holds 32
// bytes a torrent and no more, and the blocks are merged as they are
// encoded.
type collector struct {
	blocks [][]scrapeEntry // full blocks, sorted
	cur    []scrapeEntry   // the block being filled
	n      int
}

func (c *collector) add(ctx context.Context, ih bittorrent.InfoHash, s bittorrent.Stats) error {
	if c.n%4096 == 0 {
		if err := ctx.Err(); err != nil {
			return err // the Handler is closing
		}
	}
	if c.cur == nil {
		c.cur = make([]scrapeEntry, 0, blockSize)
	}
	c.cur = append(c.cur, scrapeEntry{
		hi:  binary.BigEndian.Uint64(ih[0:8]),
		mid: binary.BigEndian.Uint64(ih[8:16]),
		lo:  binary.BigEndian.Uint32(ih[16:20]),
		s:   s,
	})
	c.n++
	if len(c.cur) == blockSize {
		c.flush()
	}
	return nil
}

func (c *collector) flush() {
	if len(c.cur) > 0 {
		sortEntries(c.cur)
		c.blocks = append(c.blocks, c.cur)
	}
	c.cur = nil
}

// encode merges the blocks into the bencoded reply, gzipped, and drops
// them as they are used up.
func (c *collector) encode(ctx context.Context, interval time.Duration, hint float64) (*scrapeBuild, error) {
	c.flush()
	if hint <= 0 {
		hint = 29 // a random info hash and small counts, at BestSpeed (27.7)
	}
	out := &sliceWriter{b: make([]byte, 0, int(float64(c.n)*hint*1.05)+4096)}
	zw, err := gzip.NewWriterLevel(out, fullScrapeLevel)
	if err != nil {
		return nil, err
	}
	const chunk = 64 << 10
	buf := make([]byte, 0, chunk+256)
	var plain int64
	write := func() error {
		plain += int64(len(buf))
		_, err := zw.Write(buf)
		buf = buf[:0]
		return err
	}
	buf = append(buf, 'd')
	buf = bencode.AppendString(buf, "files")
	buf = append(buf, 'd')
	m := newMerger(c.blocks)
	c.blocks = nil
	var prev scrapeEntry
	var ih bittorrent.InfoHash
	for i := 0; ; i++ {
		e, ok := m.next()
		if !ok {
			break
		}
		if i > 0 && e.hi == prev.hi && e.mid == prev.mid && e.lo == prev.lo {
			continue // a store that listed a torrent twice: once only
		}
		prev = e
		binary.BigEndian.PutUint64(ih[0:8], e.hi)
		binary.BigEndian.PutUint64(ih[8:16], e.mid)
		binary.BigEndian.PutUint32(ih[16:20], e.lo)
		buf = appendScrapeEntry(buf, ih, e.s)
		if len(buf) >= chunk {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if err := write(); err != nil {
				return nil, err
			}
		}
	}
	buf = append(buf, 'e')
	buf = appendFlags(buf, interval)
	buf = append(buf, 'e')
	if err := write(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return &scrapeBuild{gz: out.b, plain: plain, torrents: c.n}, nil
}

// sliceWriter appends what is written to b.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// merger yields the entries of sorted blocks in order: a binary heap of
// the blocks by their first entry. A block is dropped once used up.
type merger struct{ heap [][]scrapeEntry }

func newMerger(blocks [][]scrapeEntry) *merger {
	m := &merger{heap: blocks}
	for i := len(m.heap)/2 - 1; i >= 0; i-- {
		m.down(i)
	}
	return m
}

func (m *merger) next() (scrapeEntry, bool) {
	if len(m.heap) == 0 {
		return scrapeEntry{}, false
	}
	e := m.heap[0][0]
	if m.heap[0] = m.heap[0][1:]; len(m.heap[0]) == 0 {
		last := len(m.heap) - 1
		m.heap[0] = m.heap[last]
		m.heap[last] = nil
		m.heap = m.heap[:last]
	}
	if len(m.heap) > 0 {
		m.down(0)
	}
	return e, true
}

func (m *merger) down(i int) {
	h := m.heap
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		j := l
		if r := l + 1; r < len(h) && entryLess(&h[r][0], &h[l][0]) {
			j = r
		}
		if !entryLess(&h[j][0], &h[i][0]) {
			return
		}
		h[i], h[j] = h[j], h[i]
		i = j
	}
}

// fullScrape answers a scrape without info_hash.
func (h *Handler) fullScrape(st *state, r *request) reply {
	if !h.opts.FullScrape {
		return h.fail(st, tracker.ClientError("full scrape is disabled on this tracker: give info_hash"))
	}
	b := h.full.get()
	if b == nil {
		return h.fail(st, errFullScrapeNotReady)
	}
	if acceptsGzip(r.acceptEncoding) {
		h.opts.Metrics.FullScrape()
		// A build is never modified: the server may write it as it is.
		return reply{status: 200, body: b.gz, shared: true, gzip: true, vary: true}
	}
	s, ok := h.full.openPlain(b)
	if !ok {
		return h.fail(st, errFullScrapeBusy)
	}
	h.opts.Metrics.FullScrape()
	return reply{status: 200, stream: s, length: b.plain, vary: true}
}

// openPlain returns a reader of b uncompressed, if a stream may start:
// its Close lets another one start.
func (f *fullScrape) openPlain(b *scrapeBuild) (io.ReadCloser, bool) {
	select {
	case f.streams <- struct{}{}:
	default:
		return nil, false
	}
	zr, err := gzip.NewReader(bytes.NewReader(b.gz))
	if err != nil { // cannot be: the build wrote it
		<-f.streams
		return nil, false
	}
	return &plainStream{zr: zr, slots: f.streams}, true
}

// plainStream is a full scrape decompressed as it is read.
type plainStream struct {
	zr     *gzip.Reader
	slots  chan struct{}
	closed atomic.Bool
}

func (s *plainStream) Read(p []byte) (int, error) {
	if s.closed.Load() {
		return 0, io.ErrClosedPipe
	}
	return s.zr.Read(p)
}

// Close releases the stream's slot; later calls do nothing.
func (s *plainStream) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	<-s.slots
	return nil
}
