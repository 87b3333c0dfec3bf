package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"
)

// Instance identifies one running trackd instance of a fleet. It is drawn
// at random when the instance starts, so a restarted instance is a new
// one to the others.
type Instance [8]byte

// NewInstance returns a random Instance.
func NewInstance() Instance {
	var id Instance
	rand.Read(id[:])
	return id
}

// String returns the id in hex, as the Bus names it (channel names) and
// the logs show it.
func (id Instance) String() string { return hex.EncodeToString(id[:]) }

// Entry is one batch read from a stream.
type Entry struct {
	// Pos is the entry's position in its stream: opaque to the fleet,
	// meaningful to the Bus that returned it (a Redis stream id).
	Pos string
	// Batch is the batch as it was published.
	Batch []byte
}

// Streams is an ordered, shared log of batches, split into a fixed number
// of streams: what every instance publishes its changes to and reads the
// others' from. A Bus (Redis) implements it; fleettest has one in memory
// for tests.
//
// Every method may wait on the network, up to the implementation's
// timeout; the fleet calls them from its own goroutines, never from a
// request.
type Streams interface {
	// NumStreams is the number of streams, at least 1, fixed for the
	// Bus's life. Every instance of a fleet must see the same number.
	NumStreams() int
	// Publish appends batch to stream i. The Bus trims each stream to a
	// bounded length, oldest first: a reader that falls too far behind
	// misses batches rather than holding memory. Publish does not keep
	// batch after it returns: the fleet reuses the buffer.
	Publish(ctx context.Context, i int, batch []byte) error
	// Read returns the entries of stream i after position after, in
	// order, at most max of them; when there are none it waits up to
	// block for one, and returns none (and no error) if none came. An
	// after of "" means the end of the stream as it is now: only entries
	// published later. An after of StreamStart means the start of the
	// stream: every entry it still holds.
	Read(ctx context.Context, i int, after string, max int, block time.Duration) ([]Entry, error)
	// Tail returns the position of the last entry of stream i, or "" if
	// it has none: where a reader that starts now begins, and what a
	// snapshot records as covered.
	Tail(ctx context.Context, i int) (string, error)
}

// ManyPublisher is a Streams that can publish several batches of one
// stream in one round trip: a Node that publishes to one uses it to catch
// up at once with what piled up (under load, or while the Bus was
// unreachable), rather than one batch per round trip.
type ManyPublisher interface {
	// PublishMany appends batches to stream i, in order, as Publish
	// would each. It returns how many of them, from the first, are
	// published; err is nil if and only if that is all of them. The
	// ones after may have been published too (a reply lost, or an error
	// of one batch in the middle): the fleet publishes them again, and
	// readers skip what they have read already by its origin's sequence
	// numbers. A batch that failed while later ones went through reaches
	// no reader that read those first: they count it as a gap, as a
	// batch trimmed before they read it. It does not keep batches after
	// it returns.
	PublishMany(ctx context.Context, i int, batches [][]byte) (int, error)
}

// StreamStart is the position before the first entry of any stream (a
// Redis stream id 0-0): where a reader begins when Tail found the stream
// empty, so that it misses no entry published after Tail.
const StreamStart = "0"

// Messenger carries messages between instances that are not changes to
// the swarms: WebSocket offers and answers relayed to the instance that
// holds the recipient's connection, and the requests of a joining
// instance. Delivery is at most once and in no promised order; a message
// to an instance that is gone is lost.
type Messenger interface {
	// Send delivers msg to instance to, or to every instance listening
	// (this one included) when to is the zero Instance.
	Send(ctx context.Context, to Instance, msg []byte) error
	// Listen calls fn with every message sent to self or to every
	// instance, until ctx ends, and returns ctx's error then (or the
	// error that stopped it). fn must not block long and must not keep
	// msg after it returns.
	Listen(ctx context.Context, self Instance, fn func(msg []byte)) error
}

// Blobs hold large values for a short time: the snapshot an instance
// hands a joining one, in chunks.
type Blobs interface {
	// Claim takes key for ttl if no one holds it and reports whether
	// this caller did: how one instance among many volunteers.
	Claim(ctx context.Context, key string, ttl time.Duration) (bool, error)
	// Append adds chunk at the end of the blob key, which expires ttl
	// after the last Append.
	Append(ctx context.Context, key string, chunk []byte, ttl time.Duration) error
	// Chunk returns chunk i of blob key, waiting up to wait for it to be
	// appended; ok is false if it was not there by then.
	Chunk(ctx context.Context, key string, i int, wait time.Duration) (chunk []byte, ok bool, err error)
}

// A Bus is what instances of a fleet share: Redis (package fleet/redisbus).
type Bus interface {
	Streams
	Messenger
	Blobs
	// Close releases the Bus's connections; calls in flight fail.
	Close() error
}
