// Package fleettest provides a fleet.Bus in memory, for tests of the
// fleet's logic that need no Redis: several instances in one process
// share one Bus. Tests of the real transport use Redis (fleet/redisbus).
package fleettest

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"trackd/fleet"
)

// Bus is a fleet.Bus in memory. Its zero value is not usable; make one
// with NewBus. Its streams keep at most MaxLen entries each, oldest
// dropped first, as a Redis stream trimmed by MAXLEN does.
type Bus struct {
	MaxLen int

	mu      sync.Mutex
	changed *sync.Cond
	streams []stream
	lists   map[fleet.Instance][]chan []byte // listeners by instance
	blobs   map[string]*blob
	claims  map[string]time.Time
	down    bool
	closed  bool
	done    chan struct{} // closed by Close
}

// blob is a blob's chunks and when it expires.
type blob struct {
	chunks  [][]byte
	expires time.Time
}

type stream struct {
	next    uint64 // the number the next entry gets, from 1
	entries []entry
}

type entry struct {
	n     uint64
	batch []byte
}

// ErrDown is what every call returns while the Bus is set down (SetDown),
// as a client of an unreachable Redis would.
var ErrDown = errors.New("fleettest: bus is down")

// NewBus returns a Bus of n streams, each keeping at most 10,000 entries.
func NewBus(n int) *Bus {
	b := &Bus{
		MaxLen:  10000,
		streams: make([]stream, n),
		lists:   make(map[fleet.Instance][]chan []byte),
		blobs:   make(map[string]*blob),
		claims:  make(map[string]time.Time),
		done:    make(chan struct{}),
	}
	b.changed = sync.NewCond(&b.mu)
	for i := range b.streams {
		b.streams[i].next = 1
	}
	return b
}

var (
	_ fleet.Bus           = (*Bus)(nil)
	_ fleet.ManyPublisher = (*Bus)(nil)
)

// SetDown makes every call fail with ErrDown (true) or work again
// (false): an outage of the Bus, keeping what it held.
func (b *Bus) SetDown(down bool) {
	b.mu.Lock()
	b.down = down
	b.mu.Unlock()
	b.changed.Broadcast()
}

// errClosed is what every call returns after Close.
var errClosed = errors.New("fleettest: bus closed")

func (b *Bus) check() error {
	if b.closed {
		return errClosed
	}
	if b.down {
		return ErrDown
	}
	return nil
}

// NumStreams implements fleet.Streams.
func (b *Bus) NumStreams() int { return len(b.streams) }

// Publish implements fleet.Streams.
func (b *Bus) Publish(ctx context.Context, i int, batch []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(); err != nil {
		return err
	}
	b.add(i, batch)
	b.changed.Broadcast()
	return nil
}

// PublishMany implements fleet.ManyPublisher: all of batches or, while
// the Bus is down, none.
func (b *Bus) PublishMany(ctx context.Context, i int, batches [][]byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(); err != nil {
		return 0, err
	}
	for _, batch := range batches {
		b.add(i, batch)
	}
	b.changed.Broadcast()
	return len(batches), nil
}

// add appends batch to stream i, trimming it. b.mu is held.
func (b *Bus) add(i int, batch []byte) {
	s := &b.streams[i]
	s.entries = append(s.entries, entry{s.next, append([]byte(nil), batch...)})
	s.next++
	if over := len(s.entries) - b.MaxLen; b.MaxLen > 0 && over > 0 {
		s.entries = append(s.entries[:0:0], s.entries[over:]...)
	}
}

// Read implements fleet.Streams.
func (b *Bus) Read(ctx context.Context, i int, after string, max int, block time.Duration) ([]fleet.Entry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var from uint64
	if after == "" {
		from = b.streams[i].next - 1
	} else {
		n, err := strconv.ParseUint(after, 10, 64)
		if err != nil {
			return nil, err
		}
		from = n
	}
	deadline := time.Now().Add(block)
	stop := context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.changed.Broadcast()
		b.mu.Unlock()
	})
	defer stop()
	timer := time.AfterFunc(block, func() {
		b.mu.Lock()
		b.changed.Broadcast()
		b.mu.Unlock()
	})
	defer timer.Stop()
	for {
		if err := b.check(); err != nil {
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var out []fleet.Entry
		for _, e := range b.streams[i].entries {
			if e.n > from && len(out) < max {
				out = append(out, fleet.Entry{Pos: strconv.FormatUint(e.n, 10), Batch: append([]byte(nil), e.batch...)})
			}
		}
		if len(out) > 0 || !time.Now().Before(deadline) {
			return out, nil
		}
		b.changed.Wait()
	}
}

// Tail implements fleet.Streams.
func (b *Bus) Tail(ctx context.Context, i int) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(); err != nil {
		return "", err
	}
	if b.streams[i].next == 1 {
		return "", nil
	}
	return strconv.FormatUint(b.streams[i].next-1, 10), nil
}

// Send implements fleet.Messenger. A listener that is not keeping up
// loses the message, as a Redis Pub/Sub subscriber whose buffer is full
// would.
func (b *Bus) Send(ctx context.Context, to fleet.Instance, msg []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(); err != nil {
		return err
	}
	for id, chans := range b.lists {
		if to != (fleet.Instance{}) && id != to {
			continue
		}
		for _, c := range chans {
			select {
			case c <- append([]byte(nil), msg...):
			default:
			}
		}
	}
	return nil
}

// Listen implements fleet.Messenger. It returns an error when the Bus is
// closed.
func (b *Bus) Listen(ctx context.Context, self fleet.Instance, fn func(msg []byte)) error {
	c := make(chan []byte, 1024)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errClosed
	}
	b.lists[self] = append(b.lists[self], c)
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		chans := b.lists[self]
		for i, x := range chans {
			if x == c {
				chans = append(chans[:i:i], chans[i+1:]...)
				break
			}
		}
		if len(chans) == 0 {
			delete(b.lists, self)
		} else {
			b.lists[self] = chans
		}
		b.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-b.done:
			return errClosed
		case msg := <-c:
			fn(msg)
		}
	}
}

// Claim implements fleet.Blobs.
func (b *Bus) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(); err != nil {
		return false, err
	}
	if until, ok := b.claims[key]; ok && time.Now().Before(until) {
		return false, nil
	}
	b.claims[key] = time.Now().Add(ttl)
	return true, nil
}

// Append implements fleet.Blobs.
func (b *Bus) Append(ctx context.Context, key string, chunk []byte, ttl time.Duration) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(); err != nil {
		return err
	}
	bl := b.blob(key)
	if bl == nil {
		bl = &blob{}
		b.blobs[key] = bl
	}
	bl.chunks = append(bl.chunks, append([]byte(nil), chunk...))
	bl.expires = time.Now().Add(ttl)
	b.changed.Broadcast()
	return nil
}

// blob returns the blob key, or nil if there is none or it expired
// (which it drops), as Redis expires a key. Call with b.mu held.
func (b *Bus) blob(key string) *blob {
	bl := b.blobs[key]
	if bl != nil && !time.Now().Before(bl.expires) {
		delete(b.blobs, key)
		return nil
	}
	return bl
}

// Chunk implements fleet.Blobs.
func (b *Bus) Chunk(ctx context.Context, key string, i int, wait time.Duration) ([]byte, bool, error) {
	deadline := time.Now().Add(wait)
	for {
		b.mu.Lock()
		err := b.check()
		var c []byte
		ok := false
		if bl := b.blob(key); err == nil && bl != nil && i >= 0 && i < len(bl.chunks) {
			c, ok = append([]byte(nil), bl.chunks[i]...), true
		}
		b.mu.Unlock()
		if err != nil || ok {
			return c, ok, err
		}
		if !time.Now().Before(deadline) {
			return nil, false, nil
		}
		select {
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-b.done:
			return nil, false, errClosed
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Close implements fleet.Bus: it ends every Listen and blocked Read;
// every call after it fails.
func (b *Bus) Close() error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.done)
	}
	b.mu.Unlock()
	b.changed.Broadcast()
	return nil
}
