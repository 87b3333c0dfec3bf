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
	// numbered queues number their changes: seq is the next number,
	// and each frame begins with the number of its first change.
	numbered bool
	seq      uint64
}

// newQueue returns a queue of frames from self holding at most max
// bytes of entries, its changes numbered if numbered.
func newQueue(self fleet.Instance, max int, numbered bool) *queue {
	q := &queue{max: max, numbered: numbered, seq: 1}
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
		} else {
			f = make([]byte, 0, max(frameBytes, headerLen+seqLen+n))
		}
		f = append(f, q.hdr[:]...)
		if q.numbered {
			f = appendSeq(f, q.seq)
			q.bytes += seqLen
		}
		q.frames = append(q.frames, f)
		last++
	}
	q.bytes += n
	return &q.frames[last]
}

// addChange queues a change and returns its number in a numbered queue;
// false if the queue is full or closed (the number is then the next
// one, not given to any change yet).
func (q *queue) addChange(ih bittorrent.InfoHash, id bittorrent.PeerID, o op, seeder bool) (uint64, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	f := q.reserve(changeLen)
	if f == nil {
		return q.seq, false
	}
	*f = appendChange(*f, ih, id, o, seeder)
	seq := q.seq
	if q.numbered {
		q.seq++
	}
	return seq, true
}

// next returns the number the next change will get.
func (q *queue) next() (uint64, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.seq, q.numbered
}

// addHint queues a hint: change number seq of the numbered queue,
// repeated. False if the queue is full or closed.
func (q *queue) addHint(ih bittorrent.InfoHash, id bittorrent.PeerID, o op, seeder bool, seq uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	f := q.reserve(hintLen)
	if f == nil {
		return false
	}
	*f = appendHint(*f, ih, id, o, seeder, seq)
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
		if len(q.spare) < q.maxSpare() && cap(f) >= frameBytes && cap(f) <= 2*frameBytes {
			q.spare = append(q.spare, f[:0])
		}
	}
}

// requeue puts frames, taken and not sent, back before those waiting,
// dropping the oldest frames past the bound; it returns the changes
// dropped.
func (q *queue) requeue(frames [][]byte) (dropped int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0
	}
	n := 0
	for _, f := range frames {
		n += len(f) - headerLen
	}
	for len(frames) > 0 && n+q.bytes > q.max {
		k := len(frames[0]) - headerLen
		n -= k
		dropped += k / changeLen
		frames = frames[1:]
	}
	// a new slice: frames is the caller's
	q.frames = append(append(make([][]byte, 0, len(frames)+len(q.frames)), frames...), q.frames...)
	q.bytes += n
	return dropped
}

// maxSpare is the most frames kept for reuse: a quarter of the bound,
// at most 16 frames (1 MiB), at least one.
func (q *queue) maxSpare() int {
	return min(max(q.max/4/frameBytes, 1), 16)
}

// close refuses every entry from now on and drops those waiting.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.frames, q.spare, q.bytes = nil, nil, 0
}
