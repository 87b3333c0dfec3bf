// Package redis is a store.Store kept in Redis, so that several trackd
// instances serve one set of swarms: a peer that announced to one instance
// is returned by the others, and their scrapes agree.
//
// # URLs
//
// Open takes the -store value:
//
//	redis://[user:pass@]host:port[/db][?option=value&...]      one server
//	rediss://[user:pass@]host:port[/db][?...]                  one server over TLS
//	redis+cluster://[user:pass@]host1:port1,host2:port2[?...]  Redis Cluster, from seed nodes
//	rediss+cluster://[user:pass@]host1:port1,host2:port2[?...] Redis Cluster over TLS
//
// The options are go-redis's URL options (dial_timeout, pool_size,
// max_retries, skip_verify, ...); a cluster has only database 0. IsURL
// tells these from other -store values.
//
// # Layout and scripts
//
// Every torrent belongs to one of 1024 buckets; a bucket's hash tag is in
// the keys of all its torrents, so that each bucket lives in one Cluster
// slot (keys.go has the layout). A torrent's peers are in four sorted sets
// (IPv4 and IPv6 seeders and leechers) whose members are the peers'
// addresses and whose scores are their expiry times, with the completed
// flag in the lowest bit; with store.Options.PeerIDs their ids are in a
// hash beside them. Small sets stay in Redis's compact listpack encoding:
// 1,000,000 peers over 100,000 torrents take 48 bytes a peer (93 with
// ids), all keys included (BenchmarkMemoryPerPeer). A torrent's bucket
// keeps its download count, a lower bound of its peers' expiry, and the
// bucket's counts of seeders, leechers and torrents.
//
// An announce is one server-side Lua script (EVALSHA, and EVAL when the
// server has lost the script), so one round trip: it drops the torrent's
// expired peers (a ZRANGE by score on each set, and only when the bucket
// says one is due: no scan), upserts the peer, counts the swarm, picks
// peers at random in O(numwant + log n) however big the swarm (see
// announceScript), bumps the download count, and keeps the bucket's keys
// in step. The clock is the caller's (store.Options.Now), passed to the
// script, never the server's, so instances must keep their clocks in sync
// (NTP): a skew of s seconds shifts peer lifetimes by s. A scrape of many
// hashes is one pipeline of ZCOUNTs (peers alive now) and HGETs, so one
// round trip (with a cluster, one per node, in parallel).
//
// # Background work, totals
//
// Each Store runs a loop every Options.Interval (one second). The instance
// that holds a lease (SET NX PX, renewed every round; another takes over
// within a few seconds of its death) sweeps: for each bucket it reads the
// torrents whose earliest expiry has passed and runs a script on each that
// drops at most 1000 expired peers per sorted set, so no call blocks Redis
// for long; what is left waits for the next round. It also sums the 1024
// bucket counts into one totals key. The others read that key. Totals
// returns the copy of the last round, so it costs nothing and may lag by a
// round or two (store.Store allows that); since the bucket counts are
// changed by the same scripts that change the peers, they cannot drift,
// not even when an instance dies mid-way. Settle does a round at once.
//
// Downloaded counts live in Redis, so they survive restarts of trackd (and
// of Redis, with its persistence on). A torrent without peers keeps its
// count, as in the memory store.
//
// # Faults
//
// Every call is bounded by Options.Timeout per round trip and returns an
// error when Redis is down, slow or refuses; go-redis reconnects by itself,
// so the Store serves again as soon as Redis is back. Open fails with a
// clear error when Redis cannot be reached; Ping is for readiness checks.
//
// Redis must not evict these keys: run it with maxmemory-policy noeviction
// (the default), and leave the key prefix to trackd.
package redis

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"trackd/bittorrent"
	"trackd/internal/ratelog"
	"trackd/store"
)

// Options tune a Store beyond store.Options. The zero value is useful.
type Options struct {
	// Timeout bounds each round trip to Redis; 0 (or less) means
	// DefaultTimeout.
	Timeout time.Duration
	// KeyPrefix starts every key of the store, so that several stores
	// (or other applications) share one database; "" means "trackd:". It
	// must not contain '{' or '}', which would change the Cluster hash
	// slots.
	KeyPrefix string
	// Logger gets the background loop's recoveries; nil means none.
	Logger *slog.Logger
	// Errors gets the background loop's failures (kind
	// "store_background"), logged at a bounded rate and counted; nil
	// means one over Logger that counts nothing.
	Errors *ratelog.Logger
	// Interval is how often the background loop sweeps expired peers and
	// refreshes the totals; 0 (or less) means DefaultInterval.
	Interval time.Duration
}

// Defaults of Options.
const (
	DefaultTimeout   = store.DefaultNetworkTimeout
	DefaultKeyPrefix = "trackd:"
	DefaultInterval  = time.Second
)

// Store is the Redis store. Make one with Open.
type Store struct {
	rdb      goredis.UniversalClient
	cluster  *goredis.ClusterClient // rdb, when it is a cluster client
	sc       scripts
	prefix   string
	now      func() time.Time
	lifetime time.Duration
	ids      bool // keep peer ids (store.Options.PeerIDs)
	timeout  time.Duration
	interval time.Duration
	log      *slog.Logger
	errs     *ratelog.Logger

	// Keys outside the buckets, and the bucket keys, by bucket.
	totalsKey, leaseKey string
	bucketT, bucketD    []string
	bucketN             []string
	token               string // this instance's lease token

	// bgMu serializes rounds of background work (and Settle), so that an
	// older sum of the bucket counts never overwrites a newer one here.
	bgMu      sync.Mutex
	failing   bool // the last round failed (under bgMu), to log changes only
	sweepFrom int  // the batch of buckets the next sweep starts with (under bgMu)
	leading   bool // this instance held the lease in the last round (under bgMu)
	totals    atomic.Pointer[totalsCopy]

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// totalsCopy is the copy of the totals Totals returns, and when it was
// read (by the wall clock: it is about Redis being reachable, not about
// peers).
type totalsCopy struct {
	store.Totals
	at time.Time
}

var (
	_ store.Store  = (*Store)(nil)
	_ store.Prober = (*Store)(nil)
)

var errNoAddr = errors.New("redis store: announce without a valid peer address")

// Open connects to the Redis named by url (see the package doc), checks
// that it is reachable and recent enough (6.2 or later), loads the scripts,
// and starts the background loop, which Close stops. It returns an error
// naming the address when Redis cannot be reached in time: the caller may
// log it and retry. opts.PeerLifetime must be positive.
func Open(ctx context.Context, url string, opts store.Options, ro Options) (*Store, error) {
	if opts.PeerLifetime <= 0 {
		return nil, errors.New("redis store: store.Options.PeerLifetime must be positive")
	}
	prefix := ro.KeyPrefix
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("redis store: key prefix %q must not contain '{' or '}'", prefix)
	}
	cfg, err := parseURL(url)
	if err != nil {
		return nil, err
	}
	s := &Store{
		sc:       newScripts(),
		prefix:   prefix,
		now:      opts.Now,
		lifetime: opts.PeerLifetime,
		ids:      opts.PeerIDs,
		timeout:  orDefault(ro.Timeout, DefaultTimeout),
		interval: orDefault(ro.Interval, DefaultInterval),
		log:      ro.Logger,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.errs = ro.Errors; s.errs == nil {
		s.errs = ratelog.New(s.log, ratelog.Options{})
	}
	// Every call carries a deadline (see bound); the socket timeouts back
	// it up, and a refused connection fails at once, so that requests
	// fail fast while Redis is down; go-redis still retries each command
	// a few times.
	cfg.Bound(s.timeout)
	if o := cfg.Single; o != nil {
		s.rdb = goredis.NewClient(o)
	} else {
		s.cluster = goredis.NewClusterClient(cfg.Cluster)
		s.rdb = s.cluster
	}
	s.totalsKey = prefix + "totals"
	s.leaseKey = prefix + "sweeper"
	s.bucketT = make([]string, numBuckets)
	s.bucketD = make([]string, numBuckets)
	s.bucketN = make([]string, numBuckets)
	for b := range numBuckets {
		s.bucketT[b] = s.bucketKey(b, keyT)
		s.bucketD[b] = s.bucketKey(b, keyD)
		s.bucketN[b] = s.bucketKey(b, keyN)
	}
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	s.token = hex.EncodeToString(tok[:])

	if err := s.start(ctx); err != nil {
		s.rdb.Close()
		return nil, fmt.Errorf("redis store: %s: %w", cfg.Addrs(), err)
	}
	go s.loop()
	return s, nil
}

// start checks the server(s), loads the scripts and reads the totals, each
// bounded by the timeout.
func (s *Store) start(ctx context.Context) error {
	if err := s.Ping(ctx); err != nil {
		return fmt.Errorf("cannot reach Redis: %w", err)
	}
	if err := s.forEachServer(ctx, checkVersion); err != nil {
		return err
	}
	c, cancel := s.bound(ctx)
	defer cancel()
	for _, sc := range []*goredis.Script{s.sc.announce, s.sc.expire, s.sc.lease, s.sc.release} {
		if err := sc.Load(c, s.rdb).Err(); err != nil {
			return fmt.Errorf("loading a script: %w", err)
		}
	}
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	return s.refreshTotals(ctx, true)
}

// forEachServer calls fn for the server, or for every master of a cluster,
// with a bounded context.
func (s *Store) forEachServer(ctx context.Context, fn func(context.Context, *goredis.Client) error) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if s.cluster != nil {
		return s.cluster.ForEachMaster(ctx, fn)
	}
	return fn(ctx, s.rdb.(*goredis.Client))
}

// checkVersion fails for a server older than 6.2, which lacks ZRANDMEMBER
// and ZRANGE ... BYSCORE.
func checkVersion(ctx context.Context, c *goredis.Client) error {
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("INFO server: %w", err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:")
		if !ok {
			continue
		}
		parts := strings.SplitN(v, ".", 3)
		major, _ := strconv.Atoi(parts[0])
		minor := 0
		if len(parts) > 1 {
			minor, _ = strconv.Atoi(parts[1])
		}
		if major < 6 || major == 6 && minor < 2 {
			return fmt.Errorf("redis %s at %s is too old: the store needs 6.2 or later", v, c.Options().Addr)
		}
		return nil
	}
	return nil // not Redis itself, perhaps a compatible server: let the scripts tell
}

// Ping checks that Redis (every master of a cluster) answers, within the
// timeout.
func (s *Store) Ping(ctx context.Context) error {
	return s.forEachServer(ctx, func(ctx context.Context, c *goredis.Client) error {
		return c.Ping(ctx).Err()
	})
}

// The abilities of the Redis store (package store's "Optional
// abilities"). It waits on the network, so it is not store.InProcess; it
// expires peers inside its scripts without counting them, bounds its
// memory in Redis (maxmemory) and keeps its own state.
var (
	_ store.Prober  = (*Store)(nil)
	_ store.Settler = (*Store)(nil)
)

// Probe implements store.Prober: Ping, then a write of the key
// <prefix>probe (expiring after a minute), within the timeout each. A
// Redis that answers PING but refuses writes (maxmemory reached with the
// noeviction policy: "OOM command not allowed") fails it, as it fails
// every announce.
func (s *Store) Probe(ctx context.Context) error {
	if err := s.Ping(ctx); err != nil {
		return err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.rdb.Set(ctx, s.prefix+"probe", s.token, time.Minute).Err(); err != nil {
		return fmt.Errorf("redis store: write probe: %w", err)
	}
	return nil
}

// bound returns ctx with the store's timeout, unless it already has an
// earlier deadline.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= s.timeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.timeout)
}

// cut returns the score at or below which a peer is expired now (see
// scripts.go), and the score without the completed bit of a peer that
// announces now: 2*now+1 and 2*expiry, times in ms since the epoch.
func (s *Store) cut() (cut, score int64) {
	now := s.now().UnixMilli()
	return 2*now + 1, 2 * (now + s.lifetime.Milliseconds())
}

// announceArgLen is the length of the announce script's argument before
// the address (see announceScript).
const announceArgLen = 20 + 20 + 1 + 1 + 1 + 1 + 2 + 8 + 8 + 4

// Announce implements store.Store in one round trip.
func (s *Store) Announce(ctx context.Context, a store.Announce, peers []bittorrent.Peer) ([]bittorrent.Peer, bittorrent.Stats, error) {
	if !a.Peer.Addr.IsValid() {
		return peers, bittorrent.Stats{}, errNoAddr
	}
	keys, arg := s.announceArgs(&a)
	ctx, cancel := s.bound(ctx)
	defer cancel()
	res, err := s.sc.announce.Run(ctx, s.rdb, keys, arg).Slice()
	if err != nil {
		return peers, bittorrent.Stats{}, fmt.Errorf("redis store: announce: %w", err)
	}
	if len(res) != 6 {
		return peers, bittorrent.Stats{}, fmt.Errorf("redis store: announce: unexpected reply of %d values", len(res))
	}
	st := bittorrent.Stats{Seeders: toU32(res[0]), Leechers: toU32(res[1]), Downloaded: toU32(res[2])}
	v4, _ := res[3].(string)
	v6, _ := res[4].(string)
	ids, _ := res[5].(string)
	return appendPeers(peers, v4, v6, ids), st, nil
}

// announceArgs returns the KEYS and the argument of the announce script
// for a, in one allocation (and one for the slice of keys).
func (s *Store) announceArgs(a *store.Announce) ([]string, string) {
	cut, score := s.cut()
	var arg [announceArgLen + 18]byte
	b := append(arg[:0], a.InfoHash[:]...)
	b = append(b, a.Peer.ID[:]...)
	b = append(b, byte(a.Event), boolByte(a.Seeder), byte(a.Family), boolByte(s.ids))
	b = binary.BigEndian.AppendUint16(b, uint16(min(max(a.NumWant, 0), math.MaxUint16)))
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(float64(cut)))
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(float64(score)))
	b = binary.BigEndian.AppendUint32(b, mrand.Uint32())
	b = appendAddr(b, a.Peer.Addr)
	return s.torrentKeys(make([]string, 0, numKeys), &a.InfoHash, b)
}

// appendPeers appends the peers the announce script returned: their IPv4
// addresses (6 bytes each), their IPv6 addresses (18 bytes each), and their
// ids in the same order (20 bytes each), or no ids.
func appendPeers(peers []bittorrent.Peer, v4, v6, ids string) []bittorrent.Peer {
	n := len(v4)/6 + len(v6)/18
	if len(ids) != 20*n {
		ids = ""
	}
	peers = slices.Grow(peers, n)
	for ; len(v4) >= 6; v4 = v4[6:] {
		peers = append(peers, bittorrent.Peer{Addr: netip.AddrPortFrom(
			netip.AddrFrom4([4]byte{v4[0], v4[1], v4[2], v4[3]}), uint16(v4[4])<<8|uint16(v4[5]))})
	}
	for ; len(v6) >= 18; v6 = v6[18:] {
		var ip [16]byte
		copy(ip[:], v6)
		peers = append(peers, bittorrent.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom16(ip), uint16(v6[16])<<8|uint16(v6[17]))})
	}
	if ids != "" {
		for i := range peers[len(peers)-n:] {
			copy(peers[len(peers)-n+i].ID[:], ids[20*i:])
		}
	}
	return peers
}

// toU32 converts a script's integer reply, clamped to uint32.
func toU32(v any) uint32 {
	n, _ := v.(int64)
	return uint32(min(max(n, 0), math.MaxUint32))
}

// parseU32 converts a string counter, clamped to uint32; "" and garbage
// are 0.
func parseU32(v string) uint32 {
	n, _ := strconv.ParseInt(v, 10, 64)
	return uint32(min(max(n, 0), math.MaxUint32))
}

// scrapeCmds are the commands that count one torrent: its four sets' peers
// alive now and its download count.
type scrapeCmds struct {
	sets [4]*goredis.IntCmd
	dl   *goredis.StringCmd
}

// queueScrape queues the commands that count h on pipe.
func (s *Store) queueScrape(ctx context.Context, pipe goredis.Pipeliner, h *bittorrent.InfoHash, alive string, keys []string) scrapeCmds {
	keys, _ = s.torrentKeys(keys[:0], h, nil)
	var c scrapeCmds
	for i := range c.sets {
		c.sets[i] = pipe.ZCount(ctx, keys[keyS4+i], alive, "+inf")
	}
	c.dl = pipe.HGet(ctx, keys[keyT], string(h[:]))
	return c
}

// stats reads the results of c.
func (c scrapeCmds) stats() (bittorrent.Stats, error) {
	var n [4]int64
	for i, cmd := range c.sets {
		v, err := cmd.Result()
		if err != nil {
			return bittorrent.Stats{}, err
		}
		n[i] = v
	}
	dl, err := c.dl.Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return bittorrent.Stats{}, err
	}
	return bittorrent.Stats{
		Seeders:    uint32(min(n[0]+n[2], math.MaxUint32)),
		Leechers:   uint32(min(n[1]+n[3], math.MaxUint32)),
		Downloaded: parseU32(dl),
	}, nil
}

// aliveFrom is the ZCOUNT lower bound of the peers alive at cut.
func aliveFrom(cut int64) string { return "(" + strconv.FormatInt(cut, 10) }

// Scrape implements store.Store in one round trip (a pipeline; with a
// cluster, one per node, in parallel).
func (s *Store) Scrape(ctx context.Context, hashes []bittorrent.InfoHash, stats []bittorrent.Stats) ([]bittorrent.Stats, error) {
	if len(hashes) == 0 {
		return stats, nil
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	cut, _ := s.cut()
	alive := aliveFrom(cut)
	pipe := s.rdb.Pipeline()
	cmds := make([]scrapeCmds, len(hashes))
	keys := make([]string, 0, numKeys)
	for i := range hashes {
		cmds[i] = s.queueScrape(ctx, pipe, &hashes[i], alive, keys)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return stats, fmt.Errorf("redis store: scrape: %w", err)
	}
	for _, c := range cmds {
		st, err := c.stats()
		if err != nil {
			return stats, fmt.Errorf("redis store: scrape: %w", err)
		}
		stats = append(stats, st)
	}
	return stats, nil
}

// Batches of ScrapeAll: buckets scanned at once, the HSCAN count, and
// torrents counted per round trip.
const (
	scrapeAllBuckets = 16
	scrapeAllCount   = 256
	scrapeAllChunk   = 256
)

// ScrapeAll implements store.Store. It walks the buckets (no SCAN of the
// keyspace), a batch at a time: one round trip (pipeline) for the next
// torrents of the batch's buckets, then one per 256 of them for their
// counts. Each round trip is bounded by the timeout; the walk as a whole
// by ctx alone.
func (s *Store) ScrapeAll(ctx context.Context, fn func(bittorrent.InfoHash, bittorrent.Stats) error) error {
	var hashes []bittorrent.InfoHash
	var stats []bittorrent.Stats
	for first := 0; first < numBuckets; first += scrapeAllBuckets {
		var active []*bucketScan
		for b := first; b < min(first+scrapeAllBuckets, numBuckets); b++ {
			active = append(active, &bucketScan{b: b})
		}
		for len(active) > 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			scans, err := s.scanBuckets(ctx, active)
			if err != nil {
				return err
			}
			hashes = hashes[:0]
			next := active[:0]
			for i, p := range active {
				fields, cursor := scans[i].Val()
				if cursor != 0 && p.seen == nil {
					p.seen = make(map[bittorrent.InfoHash]struct{})
				}
				for j := 0; j+1 < len(fields); j += 2 {
					if len(fields[j]) != len(bittorrent.InfoHash{}) {
						continue
					}
					var h bittorrent.InfoHash
					copy(h[:], fields[j])
					if p.seen != nil {
						if _, dup := p.seen[h]; dup {
							continue // HSCAN may return an entry twice
						}
						p.seen[h] = struct{}{}
					}
					hashes = append(hashes, h)
				}
				if p.cursor = cursor; cursor != 0 {
					next = append(next, p)
				}
			}
			active = next
			for lo := 0; lo < len(hashes); lo += scrapeAllChunk {
				chunk := hashes[lo:min(lo+scrapeAllChunk, len(hashes))]
				if stats, err = s.Scrape(ctx, chunk, stats[:0]); err != nil {
					return err
				}
				for i, st := range stats {
					if st.Seeders+st.Leechers == 0 && st.Downloaded == 0 {
						continue // every peer expired, not swept yet
					}
					if err := fn(chunk[i], st); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// bucketScan is where ScrapeAll is in the HSCAN of one bucket's torrents.
type bucketScan struct {
	b      int
	cursor uint64
	seen   map[bittorrent.InfoHash]struct{} // for buckets scanned in several steps
}

// scanBuckets runs the next HSCAN of the torrents of each bucket of
// active, in one pipeline.
func (s *Store) scanBuckets(ctx context.Context, active []*bucketScan) ([]*goredis.ScanCmd, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	pipe := s.rdb.Pipeline()
	scans := make([]*goredis.ScanCmd, len(active))
	for i, p := range active {
		scans[i] = pipe.HScan(ctx, s.bucketT[p.b], p.cursor, "", scrapeAllCount)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("redis store: full scrape: %w", err)
	}
	return scans, nil
}

// Totals implements store.Store: it returns the totals of the last round
// of background work (see the package doc), at most a few seconds old. It
// fails when no round has read them for a while (Redis unreachable).
func (s *Store) Totals(context.Context) (store.Totals, error) {
	c := s.totals.Load()
	if age := time.Since(c.at); age > s.staleAfter() {
		return c.Totals, fmt.Errorf("redis store: totals not refreshed for %v (is Redis reachable?)", age.Round(time.Second))
	}
	return c.Totals, nil
}

// staleAfter is how old the totals' copy may get before Totals fails.
func (s *Store) staleAfter() time.Duration {
	return max(10*s.interval, 10*time.Second, 3*s.timeout)
}

// Close stops the background loop, gives up the sweeper's lease and closes
// the connections.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		ctx, cancel := s.bound(context.Background())
		_ = s.sc.release.Run(ctx, s.rdb, []string{s.leaseKey}, s.token).Err()
		cancel()
		s.closeErr = s.rdb.Close()
	})
	return s.closeErr
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// orDefault returns d, or def when d is not positive.
func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
