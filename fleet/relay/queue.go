package relay

import (
	"sync"

	"trackd/bittorrent"
	"trackd/fleet"
)

// frameBytes is the size past which a queue starts a new frame: one
// Messenger message (a Redis PUBLISH) carries at most about this much,
// or one entry if it is larger.
const frameBytes = 64 << 10

// queue is a bounded buffer of entries waiting to be sent, already
// encoded into frames that begin with the sender's header. Adding never
// blocks: past max bytes of entries, or once closed, an entry is refused
// and the caller counts it.
type queue struct {
	mu     sync.Mutex
	hdr    [headerLen]byte
	frames [][]byte // waiting; each begins with hdr
	spare  [][]byte // frames sent, kept for reuse
	bytes  int      // the entries' bytes in frames
	max    int
	closed bool
}

func newQueue(self fleet.Instance, max int) *queue {
	q := &queue{max: max}
	appendHeader(q.hdr[:0], self)
	return q
}

// reserve returns the frame an entry of n bytes is to be appended to,
// or nil if the queue is full or closed. q.mu must be held.
func (q *queue) reserve(n int) *[]byte {
	if q.closed || q.bytes+n > q.max {
		return nil
	}
	last := len(q.frames) - 1
	if last < 0 || len(q.frames[last])+n > frameBytes && len(q.frames[last]) > headerLen {
		var f []byte
		if k := len(q.spare); k > 0 {
			f, q.spare = q.spare[k-1][:0], q.spare[:k-1]
		}
		q.frames = append(q.frames, append(f, q.hdr[:]...))
		last++
	}
	q.bytes += n
	return &q.frames[last]
}

// addChange queues a change; false if the queue is full or closed.
func (q *queue) addChange(ih bittorrent.InfoHash, id bittorrent.PeerID, o op, seeder bool) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	f := q.reserve(changeLen)
	if f == nil {
		return false
	}
	*f = appendChange(*f, ih, id, o, seeder)
	return true
}

// addMessage queues a message to peer to of swarm ih; false if the
// queue is full or closed.
func (q *queue) addMessage(ih bittorrent.InfoHash, to bittorrent.PeerID, msg []byte) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	f := q.reserve(messageLen(msg))
	if f == nil {
		return false
	}
	*f = appendMessage(*f, ih, to, msg)
	return true
}

// take appends the waiting frames to dst and empties the queue.
func (q *queue) take(dst [][]byte) [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	dst = append(dst, q.frames...)
	clear(q.frames)
	q.frames = q.frames[:0]
	q.bytes = 0
	return dst
}

// recycle keeps a few of the frames take returned, once sent, for reuse.
func (q *queue) recycle(frames [][]byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, f := range frames {
		if len(q.spare) < 4 && cap(f) <= 2*frameBytes {
			q.spare = append(q.spare, f[:0])
		}
	}
}

// close refuses every entry from now on and drops those waiting.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.frames, q.spare, q.bytes = nil, nil, 0
}
