// Package redisbus is a fleet.Bus over Redis: one server or a Redis
// Cluster, which the instances of a fleet share to exchange their changes
// (Streams), their messages (Messenger) and the snapshots they hand to
// joining instances (Blobs).
//
// # URLs
//
// Open takes the -sync value, in the syntax of the Redis store (package
// internal/redisurl):
//
//	redis://[user:pass@]host:port[/db][?option=value&...]      one server
//	rediss://[user:pass@]host:port[/db][?...]                  one server over TLS
//	redis+cluster://[user:pass@]host1:port1,host2:port2[?...]  Redis Cluster, from seed nodes
//	rediss+cluster://[user:pass@]host1:port1,host2:port2[?...] Redis Cluster over TLS
//
// # Layout
//
// Streams are Redis streams named trackd:sync:{N}, N from 0: one
// (SingleStreams) on a single server, 16 (ClusterStreams) on a cluster,
// where the hash tag {N} puts each in its own slot so that they spread
// over the masters and so does the work of the fleet. Every instance of a
// fleet must use the same kind of URL, so that all see the same number of
// streams. Publish is one XADD with MAXLEN ~, the batch in a single field
// (b), PublishMany a pipeline of them; Read is XREAD COUNT BLOCK on one stream; Tail is XREVRANGE + -
// COUNT 1. Positions are Redis stream ids.
//
// The Messenger is Redis Pub/Sub: a message to one instance goes to the
// channel trackd:fleet:<instance in hex>, a message to all of them to
// trackd:fleet. Listen subscribes to both, pings the server when it has
// heard nothing for a while, and subscribes again whenever its connection
// is lost; what is sent meanwhile is lost, as Pub/Sub delivers at most
// once. So is what a listener that falls behind leaves in Redis's
// buffer: past client-output-buffer-limit pubsub (32 MB by default) Redis
// drops the connection, and Listen subscribes again.
//
// Blobs are lists trackd:blob:<key>: Append is RPUSH and PEXPIRE in one
// MULTI, Chunk polls LINDEX until the chunk is there or its wait ends.
// Claims are keys trackd:claim:<key> set with SET NX PX.
//
// # Bounds
//
// Options.MaxLen bounds the entries of all streams together: each stream
// is trimmed to about MaxLen/NumStreams entries (XADD MAXLEN ~ trims
// whole nodes of the stream, so a stream may hold up to one node, at most
// 100 entries by Redis's default stream-node-max-entries, more). Since
// the fleet's batches are at most about 32 KiB, which take about 40 KiB of
// Redis's memory each (MEMORY USAGE of a stream of 32 KiB batches; the
// allocator rounds up), the streams hold at most about MaxLen × 40 KiB
// whatever the layout: 160 MiB with DefaultMaxLen. Under a steady load the
// bound is also how far back a reader can fall (or a joining instance
// start from a snapshot) before it misses batches: with the default and
// changes of about 40 bytes, 4096 × 32 KiB hold about 3.3 million
// changes, half a minute of 100,000 announces a second.
//
// Every call is bounded: a round trip by Options.Timeout, a blocking Read
// by its block plus Timeout, a Chunk by its wait plus Timeout. A blocking
// Read holds one connection of the pool while it waits; Open sizes the
// pool (per node, for a cluster) to at least NumStreams + SpareConns
// connections, so that a reader on every stream leaves connections for
// the publishers and the other calls. A call that finds the pool empty
// waits at most Timeout for a connection and fails then. Each Listen has
// a connection of its own, outside the pool.
//
// # Faults
//
// The fleet must start and serve without Redis, so Open fails only when
// the URL is bad: when Redis is unreachable it logs a warning and returns
// the Bus anyway. Every call then fails (within its bound) until Redis
// answers again; go-redis reconnects by itself, and Listen subscribes
// again. On a Redis Cluster, while a master is down the calls on the
// streams it holds fail and the others work, until the cluster declares
// itself down (after cluster-node-timeout, unless the master has a
// replica to fail over to or cluster-require-full-coverage is no): then
// every call fails until it is whole again. Redis must not evict the
// streams while they are read: run it with maxmemory-policy noeviction
// (the default), or enough memory for MaxLen × 40 KiB. The Bus needs
// Redis 5.0 or later (streams); it is tested with 7.0.
package redisbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"trackd/fleet"
	"trackd/internal/redisurl"
	"trackd/store"
)

// Options tune a Bus. The zero value is useful.
type Options struct {
	// Timeout bounds each round trip to Redis; 0 (or less) means
	// DefaultTimeout.
	Timeout time.Duration
	// MaxLen bounds the entries of all streams together (see the package
	// doc, Bounds); 0 (or less) means DefaultMaxLen. Each stream keeps at
	// least 1.
	MaxLen int
	// Logger gets the Bus's warnings (Redis unreachable at Open, Listen's
	// lost and recovered subscriptions); nil means none.
	Logger *slog.Logger
}

// Defaults of Options, and the layout.
const (
	DefaultTimeout = store.DefaultNetworkTimeout
	// DefaultMaxLen bounds the streams to 4096 entries in all: about
	// 160 MiB of Redis's memory with batches of 32 KiB.
	DefaultMaxLen = 4096
	// SingleStreams is the number of streams on a single Redis server,
	// ClusterStreams on a Redis Cluster.
	SingleStreams  = 1
	ClusterStreams = 16
	// SpareConns is how many connections of the pool (per node) Open
	// keeps beyond one per stream, for the calls other than blocking
	// Reads.
	SpareConns = 8
)

// Key names and the field of a stream entry that holds the batch.
const (
	streamPrefix     = "trackd:sync:"
	channelBroadcast = "trackd:fleet"
	channelPrefix    = "trackd:fleet:"
	blobPrefix       = "trackd:blob:"
	claimPrefix      = "trackd:claim:"
	batchField       = "b"
)

// Listen's health check: it pings the server after pingEvery of silence,
// and takes the connection for dead when the next pingEvery brings
// nothing either. After a lost connection it waits from minBackoff,
// doubling, up to maxBackoff before subscribing again.
const (
	pingEvery  = 5 * time.Second
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// Chunk polls from minPoll, doubling, up to maxPoll.
const (
	minPoll = 2 * time.Millisecond
	maxPoll = 50 * time.Millisecond
)

// ErrClosed is returned by Listen when the Bus is closed, and by every
// call after Close.
var ErrClosed = errors.New("redisbus: bus closed")

// Bus is a fleet.Bus over Redis. Make one with Open; it is safe for
// concurrent use.
type Bus struct {
	rdb     goredis.UniversalClient
	cluster *goredis.ClusterClient // rdb, when it is a cluster client
	keys    []string               // the streams' keys
	trim    int64                  // the bound of each stream
	timeout time.Duration
	log     *slog.Logger

	mu     sync.Mutex
	subs   map[*goredis.PubSub]struct{} // the open subscriptions of Listen
	closed bool
	done   chan struct{} // closed by Close
}

var _ fleet.Bus = (*Bus)(nil)

// IsURL reports whether s is a URL Open takes (redis://, rediss://,
// redis+cluster://, rediss+cluster://).
func IsURL(s string) bool { return redisurl.IsURL(s) }

// Open returns a Bus over the Redis named by url (see the package doc).
// It fails only when url is bad: when Redis does not answer within the
// timeout (or ctx's deadline), it logs a warning and returns the Bus,
// whose calls fail until Redis answers.
func Open(ctx context.Context, url string, opts Options) (*Bus, error) {
	cfg, err := redisurl.Parse(url)
	if err != nil {
		return nil, fmt.Errorf("redisbus: %w", err)
	}
	b := &Bus{
		timeout: opts.Timeout,
		log:     opts.Logger,
		subs:    make(map[*goredis.PubSub]struct{}),
		done:    make(chan struct{}),
	}
	if b.timeout <= 0 {
		b.timeout = DefaultTimeout
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	n := SingleStreams
	if cfg.Cluster != nil {
		n = ClusterStreams
	}
	maxLen := opts.MaxLen
	if maxLen <= 0 {
		maxLen = DefaultMaxLen
	}
	b.trim = int64(max(maxLen/n, 1))
	b.keys = make([]string, n)
	for i := range b.keys {
		b.keys[i] = streamPrefix + "{" + strconv.Itoa(i) + "}"
	}
	// Every call carries a deadline (see bound); the socket timeouts back
	// it up, and a refused connection fails at once, so that calls fail
	// fast while Redis is down.
	cfg.Bound(b.timeout)
	if o := cfg.Single; o != nil {
		o.PoolSize = poolSize(o.PoolSize, n)
		b.rdb = goredis.NewClient(o)
	} else {
		o := cfg.Cluster
		o.PoolSize = poolSize(o.PoolSize, n)
		b.cluster = goredis.NewClusterClient(o)
		b.rdb = b.cluster
	}
	if err := b.Ping(ctx); err != nil {
		b.log.Warn("redisbus: Redis does not answer; the fleet bus works once it does",
			"addr", cfg.Addrs(), "err", err)
	}
	return b, nil
}

// poolSize returns the connections of a pool: those the URL set, or else
// go-redis's default (10 per CPU), and at least one per stream plus
// SpareConns (see the package doc, Bounds).
func poolSize(set, streams int) int {
	if set <= 0 {
		set = 10 * runtime.GOMAXPROCS(0)
	}
	return max(set, streams+SpareConns)
}

// bound returns ctx bounded by d from now, unless it already has an
// earlier deadline.
func bound(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// Ping checks that Redis (every master of a cluster) answers, within the
// timeout.
func (b *Bus) Ping(ctx context.Context) error {
	ctx, cancel := bound(ctx, b.timeout)
	defer cancel()
	var err error
	if b.cluster != nil {
		err = b.cluster.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
			return c.Ping(ctx).Err()
		})
	} else {
		err = b.rdb.Ping(ctx).Err()
	}
	if err != nil {
		return fmt.Errorf("redisbus: ping: %w", err)
	}
	return nil
}

// NumStreams implements fleet.Streams: SingleStreams or ClusterStreams.
func (b *Bus) NumStreams() int { return len(b.keys) }

// MaxLen returns the bound each stream is trimmed to (about).
func (b *Bus) MaxLen() int { return int(b.trim) }

// key returns the key of stream i, or an error if there is no stream i.
func (b *Bus) key(i int) (string, error) {
	if i < 0 || i >= len(b.keys) {
		return "", fmt.Errorf("redisbus: no stream %d (the bus has %d)", i, len(b.keys))
	}
	return b.keys[i], nil
}

var _ fleet.ManyPublisher = (*Bus)(nil)

// Publish implements fleet.Streams: XADD key MAXLEN ~ bound * b batch.
// go-redis retries a command whose connection failed, so a batch whose
// reply was lost may, rarely, be added twice: readers must take a batch
// they have already seen (by its origin's sequence number) as a
// duplicate, not as new.
func (b *Bus) Publish(ctx context.Context, i int, batch []byte) error {
	key, err := b.key(i)
	if err != nil {
		return err
	}
	ctx, cancel := bound(ctx, b.timeout)
	defer cancel()
	err = b.rdb.XAdd(ctx, &goredis.XAddArgs{
		Stream: key,
		MaxLen: b.trim,
		Approx: true,
		Values: []any{batchField, batch},
	}).Err()
	if err != nil {
		return fmt.Errorf("redisbus: publish to %s: %w", key, err)
	}
	return nil
}

// PublishMany implements fleet.ManyPublisher: the XADDs of Publish, one
// a batch, in one pipeline (one round trip; on a Cluster, to the master
// of stream i). It counts the batches published up to the first XADD that
// failed; those after it may have gone through, and are published again
// by the fleet, which readers skip as duplicates.
func (b *Bus) PublishMany(ctx context.Context, i int, batches [][]byte) (int, error) {
	key, err := b.key(i)
	if err != nil {
		return 0, err
	}
	if len(batches) == 0 {
		return 0, nil
	}
	ctx, cancel := bound(ctx, b.timeout)
	defer cancel()
	pipe := b.rdb.Pipeline()
	cmds := make([]*goredis.StringCmd, len(batches))
	for k, batch := range batches {
		cmds[k] = pipe.XAdd(ctx, &goredis.XAddArgs{
			Stream: key,
			MaxLen: b.trim,
			Approx: true,
			Values: []any{batchField, batch},
		})
	}
	_, err = pipe.Exec(ctx)
	for k, cmd := range cmds {
		if e := cmd.Err(); e != nil {
			return k, fmt.Errorf("redisbus: publish to %s: %w", key, e)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("redisbus: publish to %s: %w", key, err)
	}
	return len(batches), nil
}

// Read implements fleet.Streams: XREAD COUNT max BLOCK block STREAMS key
// after ("$" for an after of ""), bounded by block plus the timeout. A
// block under a millisecond is one millisecond; a block of 0 (or less)
// does not wait. A deadline of ctx ends a blocked Read at once, but a
// cancellation only when its block ends (go-redis does not interrupt a
// read in flight), with ctx's error then; Close ends it at once. An entry
// without the batch field (not written by a Bus) is returned with a nil
// Batch, so that the reader goes past it.
func (b *Bus) Read(ctx context.Context, i int, after string, max int, block time.Duration) ([]fleet.Entry, error) {
	key, err := b.key(i)
	if err != nil {
		return nil, err
	}
	if max < 1 {
		return nil, fmt.Errorf("redisbus: read of %d entries", max)
	}
	if after == "" {
		after = "$"
	}
	args := &goredis.XReadArgs{Streams: []string{key, after}, Count: int64(max), Block: -1}
	if block > 0 {
		args.Block = (block + time.Millisecond - 1).Truncate(time.Millisecond)
	}
	ctx, cancel := bound(ctx, args.Block+b.timeout)
	defer cancel()
	res, err := b.rdb.XRead(ctx, args).Result()
	if errors.Is(err, goredis.Nil) {
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("redisbus: read %s: %w", key, err)
	}
	var out []fleet.Entry
	for _, s := range res {
		for _, m := range s.Messages {
			e := fleet.Entry{Pos: m.ID}
			if v, ok := m.Values[batchField].(string); ok {
				e.Batch = []byte(v)
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// Tail implements fleet.Streams: XREVRANGE key + - COUNT 1.
func (b *Bus) Tail(ctx context.Context, i int) (string, error) {
	key, err := b.key(i)
	if err != nil {
		return "", err
	}
	ctx, cancel := bound(ctx, b.timeout)
	defer cancel()
	res, err := b.rdb.XRevRangeN(ctx, key, "+", "-", 1).Result()
	if err != nil {
		return "", fmt.Errorf("redisbus: tail of %s: %w", key, err)
	}
	if len(res) == 0 {
		return "", nil
	}
	return res[0].ID, nil
}

// channel returns the Pub/Sub channel of messages to to.
func channel(to fleet.Instance) string {
	if to == (fleet.Instance{}) {
		return channelBroadcast
	}
	return channelPrefix + to.String()
}

// Send implements fleet.Messenger: PUBLISH on the channel of to.
func (b *Bus) Send(ctx context.Context, to fleet.Instance, msg []byte) error {
	ctx, cancel := bound(ctx, b.timeout)
	defer cancel()
	if err := b.rdb.Publish(ctx, channel(to), msg).Err(); err != nil {
		return fmt.Errorf("redisbus: send to %s: %w", channel(to), err)
	}
	return nil
}

// Listen implements fleet.Messenger: it subscribes to the channels of
// self and of every instance, and subscribes again after a lost
// connection (see the package doc). It returns ctx's error when ctx ends,
// or ErrClosed when the Bus is closed.
func (b *Bus) Listen(ctx context.Context, self fleet.Instance, fn func(msg []byte)) error {
	lost := false // the connection was lost and not yet subscribed again
	backoff := minBackoff
	for {
		ps, err := b.subscribe(ctx, self)
		if err != nil {
			return err
		}
		err = b.receive(ctx, ps, fn, &lost)
		b.unsubscribe(ps)
		if err := ctx.Err(); err != nil {
			return err
		}
		if b.isClosed() {
			return ErrClosed
		}
		if !lost {
			// It was subscribed: log the loss once, and start again soon.
			lost = true
			backoff = minBackoff
			b.log.Warn("redisbus: Pub/Sub connection lost; subscribing again (messages sent meanwhile are lost)", "err", err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-b.done:
			t.Stop()
			return ErrClosed
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// errSilent is what receive returns when the server did not answer a ping.
var errSilent = errors.New("redisbus: no answer to a Pub/Sub ping")

// subscribe opens a subscription to self's channels and registers it, so
// that Close closes it.
func (b *Bus) subscribe(ctx context.Context, self fleet.Instance) (*goredis.PubSub, error) {
	if b.isClosed() {
		return nil, ErrClosed
	}
	// SUBSCRIBE is sent now if Redis answers, else when the first receive
	// connects.
	sctx, cancel := bound(ctx, b.timeout)
	ps := b.rdb.Subscribe(sctx, channelBroadcast, channel(self))
	cancel()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		_ = ps.Close()
		return nil, ErrClosed
	}
	b.subs[ps] = struct{}{}
	return ps, nil
}

// unsubscribe closes ps and forgets it.
func (b *Bus) unsubscribe(ps *goredis.PubSub) {
	b.mu.Lock()
	delete(b.subs, ps)
	b.mu.Unlock()
	_ = ps.Close()
}

// receive hands the messages of ps to fn until ps fails, ctx ends (it
// closes ps then) or the server stays silent after a ping. It clears
// *lost once subscribed.
func (b *Bus) receive(ctx context.Context, ps *goredis.PubSub, fn func([]byte), lost *bool) error {
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	pinged := false
	for {
		m, err := ps.ReceiveTimeout(ctx, pingEvery)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() || ctx.Err() != nil {
				return err
			}
			if pinged {
				return errSilent
			}
			pctx, cancel := bound(ctx, b.timeout)
			err = ps.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
			pinged = true
			continue
		}
		pinged = false
		switch m := m.(type) {
		case *goredis.Message:
			fn([]byte(m.Payload))
		case *goredis.Subscription:
			if *lost && m.Kind == "subscribe" {
				*lost = false
				b.log.Info("redisbus: Pub/Sub subscribed again", "channel", m.Channel)
			}
		}
	}
}

func (b *Bus) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Claim implements fleet.Blobs: SET trackd:claim:<key> 1 NX PX ttl. ttl
// is rounded up to a millisecond.
func (b *Bus) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	ctx, cancel := bound(ctx, b.timeout)
	defer cancel()
	err := b.rdb.Do(ctx, "set", claimPrefix+key, "1", "nx", "px", millis(ttl)).Err()
	if errors.Is(err, goredis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("redisbus: claim %q: %w", key, err)
	}
	return true, nil
}

// millis returns d in whole milliseconds, at least 1.
func millis(d time.Duration) int64 {
	return max(int64((d+time.Millisecond-1)/time.Millisecond), 1)
}

// Append implements fleet.Blobs: RPUSH and PEXPIRE in one MULTI, so the
// list never lives without its expiry.
func (b *Bus) Append(ctx context.Context, key string, chunk []byte, ttl time.Duration) error {
	ctx, cancel := bound(ctx, b.timeout)
	defer cancel()
	k := blobPrefix + key
	_, err := b.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.RPush(ctx, k, chunk)
		p.Do(ctx, "pexpire", k, millis(ttl))
		return nil
	})
	if err != nil {
		return fmt.Errorf("redisbus: append to %q: %w", key, err)
	}
	return nil
}

// Chunk implements fleet.Blobs: LINDEX, polled until the chunk is there
// or wait has passed; each round trip is bounded by the timeout.
func (b *Bus) Chunk(ctx context.Context, key string, i int, wait time.Duration) ([]byte, bool, error) {
	if i < 0 {
		return nil, false, fmt.Errorf("redisbus: chunk %d of %q", i, key)
	}
	k := blobPrefix + key
	deadline := time.Now().Add(wait)
	poll := minPoll
	for {
		c, cancel := bound(ctx, b.timeout)
		v, err := b.rdb.LIndex(c, k, int64(i)).Bytes()
		cancel()
		if err == nil {
			return v, true, nil
		}
		if !errors.Is(err, goredis.Nil) {
			return nil, false, fmt.Errorf("redisbus: chunk %d of %q: %w", i, key, err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, false, nil
		}
		t := time.NewTimer(min(poll, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, false, ctx.Err()
		case <-b.done:
			t.Stop()
			return nil, false, ErrClosed
		case <-t.C:
		}
		poll = min(2*poll, maxPoll)
	}
}

// Close implements fleet.Bus: it ends every Listen (with ErrClosed) and
// closes the connections; calls in flight fail. Closing twice does
// nothing.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.done)
	subs := b.subs
	b.subs = nil
	b.mu.Unlock()
	for ps := range subs {
		_ = ps.Close()
	}
	return b.rdb.Close()
}
