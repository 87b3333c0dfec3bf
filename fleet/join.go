package fleet

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"trackd/bittorrent"
	"trackd/snapshot"
)

// Defaults of JoinConfig and of the donor's side (Config).
const (
	// DefaultJoinWait is how long a joining instance waits for an answer
	// (a donor's header) before it goes on without one: what a lone
	// instance's start costs with sync on.
	DefaultJoinWait = 3 * time.Second
	// DefaultChunkWait is how long a joining instance waits for each next
	// chunk of a snapshot before it gives the snapshot up.
	DefaultChunkWait = 10 * time.Second
	// DefaultMaxSnapshot bounds the snapshot a joining instance takes, in
	// bytes: about 70 million peers.
	DefaultMaxSnapshot = 1 << 30
	// DefaultChunkSize is the size of a snapshot's chunks in the Bus.
	DefaultChunkSize = 1 << 20
	// joinTTL is how long a snapshot's claim and its blob live in the
	// Bus after the last chunk: the joiner reads them at once.
	joinTTL = 30 * time.Second
)

// ErrNoDonor is what Join returns when no instance answered within
// JoinConfig.Wait: there is none (or none ready), and the joining
// instance is the fleet's first.
var ErrNoDonor = errors.New("fleet: no instance answered the snapshot request")

// JoinConfig configures Node.Join. Its zero value is usable.
type JoinConfig struct {
	// Wait is how long to wait for a donor's answer; 0 means
	// DefaultJoinWait.
	Wait time.Duration
	// ChunkWait is how long to wait for each next chunk; 0 means
	// DefaultChunkWait.
	ChunkWait time.Duration
	// MaxBytes bounds the snapshot taken; 0 means DefaultMaxSnapshot.
	MaxBytes int
}

// JoinInfo says what a Join took.
type JoinInfo struct {
	Donor         Instance
	Swarms, Peers uint64
	Bytes         int
	// Took is the time from the request to the last swarm restored.
	Took time.Duration
}

// The join's messages and chunks (integers big-endian):
//
//	request  "tj", version (1), 'R', joiner (8 bytes), nonce (16 bytes)
//	chunk 0  "tj", version (1), 'H', donor (8 bytes), streams (uint16),
//	         then per stream: next (uint64), position length (1 byte,
//	         1..maxPosLen), position
//	chunk k  'D' then snapshot bytes; or 'X' then why the donor gave up;
//	         or the end: 'Z', marks (uvarint), then each mark: swarms
//	         (uvarint), then per stream next (uvarint)
//
// The snapshot bytes, chunks 1.. concatenated, are a state file
// (snapshot.Encode). The request travels on the Messenger, broadcast; the
// chunks in the blob "join:<nonce hex>", which the donor claimed under
// the same key.
const (
	joinMagic   = "tj"
	joinVersion = 1
	kindRequest = 'R'
	kindHeader  = 'H'
	chunkData   = 'D'
	chunkEnd    = 'Z'
	chunkAbort  = 'X'
	requestSize = len(joinMagic) + 2 + 8 + 16
	maxPosLen   = 64
)

// joinStart is where a reader starts after a join: the donor's position
// in the stream, and the number of the donor's first change there that
// its snapshot may lack.
type joinStart struct {
	pos  string
	next uint64
}

// joinHeader is chunk 0 of a snapshot.
type joinHeader struct {
	donor   Instance
	streams []joinStart
}

func appendJoinHeader(b []byte, h *joinHeader) []byte {
	b = append(b, joinMagic...)
	b = append(b, joinVersion, kindHeader)
	b = append(b, h.donor[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.streams)))
	for _, s := range h.streams {
		b = binary.BigEndian.AppendUint64(b, s.next)
		b = append(b, byte(len(s.pos)))
		b = append(b, s.pos...)
	}
	return b
}

// parseJoinHeader reads chunk 0 strictly: another magic, version or kind,
// no stream, a position empty or longer than maxPosLen, a next of 0,
// bytes missing or left over are errors.
func parseJoinHeader(b []byte) (joinHeader, error) {
	var h joinHeader
	const fixed = len(joinMagic) + 2 + 8 + 2
	if len(b) < fixed || string(b[:2]) != joinMagic || b[2] != joinVersion || b[3] != kindHeader {
		return h, errors.New("fleet: not a snapshot header")
	}
	copy(h.donor[:], b[4:12])
	n := int(binary.BigEndian.Uint16(b[12:14]))
	if n == 0 {
		return h, errors.New("fleet: snapshot header of no stream")
	}
	p := b[fixed:]
	h.streams = make([]joinStart, 0, min(n, len(p)/10))
	for i := range n {
		if len(p) < 9 {
			return h, fmt.Errorf("fleet: snapshot header truncated at stream %d", i)
		}
		s := joinStart{next: binary.BigEndian.Uint64(p)}
		l := int(p[8])
		p = p[9:]
		if s.next == 0 || l == 0 || l > maxPosLen || len(p) < l {
			return h, fmt.Errorf("fleet: snapshot header: bad stream %d", i)
		}
		s.pos = string(p[:l])
		p = p[l:]
		h.streams = append(h.streams, s)
	}
	if len(p) != 0 {
		return h, fmt.Errorf("fleet: %d bytes after the snapshot header", len(p))
	}
	return h, nil
}

// mark is what a donor's lanes said when its dump reached a part of its
// store (memory.Store.DumpMarked): the swarms of the snapshot from number
// swarms on hold exactly the donor's own changes numbered below next[i]
// on stream i, as far as the next mark.
type mark struct {
	swarms uint64
	next   []uint64
}

func appendMarks(b []byte, marks []mark) []byte {
	b = append(b, chunkEnd)
	b = binary.AppendUvarint(b, uint64(len(marks)))
	for _, m := range marks {
		b = binary.AppendUvarint(b, m.swarms)
		for _, x := range m.next {
			b = binary.AppendUvarint(b, x)
		}
	}
	return b
}

// parseMarks reads the end chunk strictly, for a header h and a snapshot
// of swarms swarms: marks in order of swarms, none past the snapshot's
// end, each stream's next never below the header's nor going back, and no
// byte left over.
func parseMarks(b []byte, h *joinHeader, swarms uint64) ([]mark, error) {
	if len(b) == 0 || b[0] != chunkEnd {
		return nil, errors.New("fleet: not the end of a snapshot")
	}
	p := b[1:]
	uv := func() (uint64, bool) {
		v, k := binary.Uvarint(p)
		if k <= 0 {
			return 0, false
		}
		p = p[k:]
		return v, true
	}
	n, ok := uv()
	// Every mark takes at least a byte per stream and one more.
	if !ok || n > uint64(len(p))/uint64(len(h.streams)+1) {
		return nil, errors.New("fleet: snapshot end: bad count of marks")
	}
	marks := make([]mark, 0, n)
	for k := range n {
		m := mark{next: make([]uint64, len(h.streams))}
		if m.swarms, ok = uv(); !ok || m.swarms > swarms || (k > 0 && m.swarms < marks[k-1].swarms) {
			return nil, fmt.Errorf("fleet: snapshot end: bad mark %d", k)
		}
		for i := range m.next {
			floor := h.streams[i].next
			if k > 0 {
				floor = marks[k-1].next[i]
			}
			if m.next[i], ok = uv(); !ok || m.next[i] < floor {
				return nil, fmt.Errorf("fleet: snapshot end: bad mark %d", k)
			}
		}
		marks = append(marks, m)
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("fleet: %d bytes after the snapshot end", len(p))
	}
	return marks, nil
}

// joinRequest is what a joining instance broadcasts.
type joinRequest struct {
	joiner Instance
	nonce  [16]byte
}

func (r *joinRequest) key() string { return "join:" + hex.EncodeToString(r.nonce[:]) }

func appendJoinRequest(b []byte, r *joinRequest) []byte {
	b = append(b, joinMagic...)
	b = append(b, joinVersion, kindRequest)
	b = append(b, r.joiner[:]...)
	return append(b, r.nonce[:]...)
}

// parseJoinRequest reports whether msg is a join request, and reads it.
func parseJoinRequest(msg []byte) (joinRequest, bool) {
	var r joinRequest
	if len(msg) != requestSize || string(msg[:2]) != joinMagic || msg[2] != joinVersion || msg[3] != kindRequest {
		return r, false
	}
	copy(r.joiner[:], msg[4:12])
	copy(r.nonce[:], msg[12:])
	return r, r.joiner != Instance{}
}

// Join fills the Store with the swarms of a running instance of the
// fleet, for an instance that starts (with an empty store: Join restores
// into it as into an empty one). It must be called before Run, and Run's
// readers then start where the snapshot ends, so that nothing published
// before or after it is missed:
//
// It broadcasts a request; the instances that hear it race to claim it
// (Blobs.Claim), and the winner, the donor, stops its readers between two
// batches, notes per stream the position it has replayed and the number
// of its own next change, dumps its store, lets its readers go on, and
// appends the lot to a blob in chunks while the joiner reads them. The
// joiner restores every swarm and its readers start at the donor's
// positions, skipping the donor's own changes numbered below the noted
// ones (the snapshot has them). A change replayed that the snapshot had
// too changes nothing (announces are idempotent, a completed event counts
// once per session).
//
// With no answer within cfg.Wait it returns ErrNoDonor; with the Bus
// unreachable, its error; with a snapshot cut short or refused (its
// checksum), an error and nothing restored. In every such case the
// readers start at the end of the streams, as without Join.
func (n *Node) Join(ctx context.Context, cfg JoinConfig) (JoinInfo, error) {
	if n.running.Load() {
		return JoinInfo{}, errors.New("fleet: Join after Run")
	}
	if cfg.Wait <= 0 {
		cfg.Wait = DefaultJoinWait
	}
	if cfg.ChunkWait <= 0 {
		cfg.ChunkWait = DefaultChunkWait
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxSnapshot
	}
	start := time.Now()
	req := joinRequest{joiner: n.st.self}
	rand.Read(req.nonce[:])
	key := req.key()
	// The request goes out again twice within the wait, in case the
	// first was lost (the Messenger delivers at most once: an instance
	// subscribing again, or one that has just started, misses it); the
	// claim keeps it to one donor.
	msg := appendJoinRequest(nil, &req)
	deadline := start.Add(cfg.Wait)
	var c []byte
	for {
		if err := n.bus.Send(ctx, Instance{}, msg); err != nil {
			return JoinInfo{}, fmt.Errorf("fleet: join: %w", err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return JoinInfo{}, ErrNoDonor
		}
		var ok bool
		var err error
		c, ok, err = n.bus.Chunk(ctx, key, 0, min(left, cfg.Wait/3))
		if err != nil {
			return JoinInfo{}, fmt.Errorf("fleet: join: %w", err)
		}
		if ok {
			break
		}
	}
	h, err := parseJoinHeader(c)
	if err != nil {
		return JoinInfo{}, err
	}
	if len(h.streams) != n.st.NumStreams() {
		return JoinInfo{}, fmt.Errorf("%w: the donor has %d, this instance %d", errCount, len(h.streams), n.st.NumStreams())
	}
	info := JoinInfo{Donor: h.donor}
	var body, end []byte
	for i := 1; ; i++ {
		c, ok, err := n.bus.Chunk(ctx, key, i, cfg.ChunkWait)
		if err != nil {
			return info, fmt.Errorf("fleet: join: chunk %d: %w", i, err)
		}
		if !ok {
			return info, fmt.Errorf("fleet: join: chunk %d did not come within %v", i, cfg.ChunkWait)
		}
		if len(c) == 0 {
			return info, fmt.Errorf("fleet: join: chunk %d is empty", i)
		}
		switch c[0] {
		case chunkData:
			if len(body)+len(c)-1 > cfg.MaxBytes {
				return info, fmt.Errorf("fleet: join: the snapshot is larger than %d bytes", cfg.MaxBytes)
			}
			body = append(body, c[1:]...)
			continue
		case chunkEnd:
			end = c
		case chunkAbort:
			return info, fmt.Errorf("fleet: join: the donor gave up: %s", c[1:])
		default:
			return info, fmt.Errorf("fleet: join: chunk %d of unknown kind %q", i, c[0])
		}
		break
	}
	info.Bytes = len(body)
	// Restore nothing unless all is sound: the marks, then the snapshot
	// (Decode checks its checksum before it hands out a swarm).
	marks, err := parseMarks(end, &h, math.MaxUint64)
	if err != nil {
		return info, err
	}
	// skip[i] holds the swarms of stream i whose mark is past the
	// header's next: the donor's changes to them numbered below it are
	// in the snapshot too.
	skip := make([]map[bittorrent.InfoHash]uint64, len(h.streams))
	var k int
	var index uint64
	si, err := snapshot.Decode(body, func(sw *snapshot.Swarm) error {
		for k+1 < len(marks) && marks[k+1].swarms <= index {
			k++
		}
		index++
		if len(marks) > 0 {
			i := streamOf(&sw.InfoHash, len(h.streams))
			if m := marks[k].next[i]; m > h.streams[i].next {
				if skip[i] == nil {
					skip[i] = make(map[bittorrent.InfoHash]uint64)
				}
				skip[i][sw.InfoHash] = m
			}
		}
		return n.st.inner.Restore(sw)
	})
	if err != nil {
		return info, fmt.Errorf("fleet: join: %w", err)
	}
	info.Swarms, info.Peers = si.Swarms, si.Peers
	n.start = h.streams
	n.startDonor = h.donor
	n.startSkip = skip
	info.Took = time.Since(start)
	return info, nil
}

// Donor's side.

// request is a join request heard, and when.
type request struct {
	r  joinRequest
	at time.Time
}

// listen hears the join requests of other instances until ctx ends, and
// hands them to donate; one at a time: a request heard while this
// instance is busy with another is left to the others.
func (n *Node) listen(ctx context.Context) {
	reqs := make(chan request, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case r := <-reqs:
				// A request that waited past what a joiner waits for
				// its answer is stale.
				if time.Since(r.at) < DefaultJoinWait/2 {
					n.donate(ctx, r.r)
				}
			}
		}
	})
	backoff := n.cfg.FlushInterval
	for ctx.Err() == nil {
		err := n.bus.Listen(ctx, n.st.self, func(msg []byte) {
			r, ok := parseJoinRequest(msg)
			if !ok || r.joiner == n.st.self {
				return
			}
			select {
			case reqs <- request{r, time.Now()}:
			default:
			}
		})
		if ctx.Err() != nil {
			break
		}
		n.failed(ctx, "listen", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, n.cfg.MaxBackoff)
	}
	wg.Wait()
}

// donate answers r if this instance claims it first: see Join.
func (n *Node) donate(ctx context.Context, r joinRequest) {
	select {
	case <-n.ready:
	default:
		return // its readers do not know their positions yet
	}
	key := r.key()
	ok, err := n.bus.Claim(ctx, key, joinTTL)
	if err != nil || !ok {
		return
	}
	q := newChunkQueue()
	var wg sync.WaitGroup
	var appendErr error
	wg.Go(func() {
		for c := range q.pop {
			if appendErr == nil {
				appendErr = n.bus.Append(ctx, key, c, joinTTL)
			}
		}
	})
	size := n.cfg.ChunkSize
	w := &chunkWriter{q: q, size: size, buf: make([]byte, 1, size+1)}
	w.buf[0] = chunkData
	flags := uint32(0)
	if n.st.ids {
		flags = snapshot.FlagPeerIDs
	}

	start := time.Now()
	n.gate.Lock()
	h := joinHeader{donor: n.st.self, streams: make([]joinStart, n.st.NumStreams())}
	for i := range h.streams {
		l := &n.st.lanes[i].laneState
		l.mu.Lock()
		h.streams[i] = joinStart{pos: n.pos[i], next: l.next}
		l.mu.Unlock()
	}
	q.push(appendJoinHeader(nil, &h))
	marks := []mark{{next: make([]uint64, len(h.streams))}}
	for i, s := range h.streams {
		marks[0].next[i] = s.next
	}
	var emitted uint64
	info, err := snapshot.Encode(w, flags, func(put func(*snapshot.Swarm) error) error {
		count := func(sw *snapshot.Swarm) error {
			emitted++
			return put(sw)
		}
		if d, ok := n.st.inner.(markedDumper); ok {
			return d.DumpMarked(func() { marks = append(marks, n.mark(emitted)) }, count)
		}
		return n.st.inner.Dump(count)
	})
	n.gate.Unlock()
	pause := time.Since(start)
	if err == nil {
		w.flush()
		q.push(appendMarks(nil, marks))
	} else {
		q.push(append([]byte{chunkAbort}, err.Error()...))
	}
	q.close()
	wg.Wait()
	n.donations.Add(1)
	n.lastPause.Store(int64(pause))
	if err == nil {
		err = appendErr
	}
	if err != nil {
		n.log.Warn("sync: a snapshot for a joining instance failed", "joiner", r.joiner.String(), "err", err)
		return
	}
	n.log.Info("sync: handed a snapshot to a joining instance", "joiner", r.joiner.String(),
		"swarms", info.Swarms, "peers", info.Peers, "bytes", w.total,
		"readers_paused", pause.Round(time.Millisecond), "took", time.Since(start).Round(time.Millisecond))
}

// markedDumper is a store that tells a donor where its dump stands
// against its announces (memory.Store). Without it, a donor's only mark
// is where its dump began, and a joiner may count twice a session of the
// donor's that completed and stopped while the dump ran.
type markedDumper interface {
	DumpMarked(mark func(), fn func(*snapshot.Swarm) error) error
}

// mark returns what the lanes say now, for the swarms from number swarms
// on.
func (n *Node) mark(swarms uint64) mark {
	m := mark{swarms: swarms, next: make([]uint64, n.st.NumStreams())}
	for i := range m.next {
		l := &n.st.lanes[i].laneState
		l.mu.Lock()
		m.next[i] = l.next
		l.mu.Unlock()
	}
	return m
}

// chunkQueue hands chunks from the dump to the goroutine that appends
// them, without bound: the dump, which holds the readers, never waits on
// the Bus. It holds at most the snapshot.
type chunkQueue struct {
	mu     sync.Mutex
	chunks [][]byte
	closed bool
	wake   chan struct{}
	pop    chan []byte
}

func newChunkQueue() *chunkQueue {
	q := &chunkQueue{wake: make(chan struct{}, 1), pop: make(chan []byte)}
	go q.run()
	return q
}

func (q *chunkQueue) push(c []byte) {
	q.mu.Lock()
	q.chunks = append(q.chunks, c)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *chunkQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// run feeds pop in order until the queue is closed and empty.
func (q *chunkQueue) run() {
	for {
		q.mu.Lock()
		cs, closed := q.chunks, q.closed
		q.chunks = nil
		q.mu.Unlock()
		for i, c := range cs {
			q.pop <- c
			cs[i] = nil
		}
		if len(cs) == 0 {
			if closed {
				close(q.pop)
				return
			}
			<-q.wake
		}
	}
}

// chunkWriter cuts what is written to it into data chunks of size bytes.
type chunkWriter struct {
	q     *chunkQueue
	size  int
	buf   []byte // chunkData, then up to size bytes
	total int
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), w.size+1-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == w.size+1 {
			w.flush()
		}
	}
	return n, nil
}

// flush queues what is buffered, if anything.
func (w *chunkWriter) flush() {
	if len(w.buf) <= 1 {
		return
	}
	w.total += len(w.buf) - 1
	w.q.push(w.buf)
	w.buf = make([]byte, 1, w.size+1)
	w.buf[0] = chunkData
}
