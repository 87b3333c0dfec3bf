// Package relay is a signaling.Registry that spans the instances of a
// fleet: a WebTorrent offer from a WebSocket peer connected to one
// instance reaches a peer connected to another, and its answer comes
// back, so that a WebTorrent swarm spans the fleet.
//
// # How
//
// Each instance keeps every swarm's WebSocket peers in a
// signaling.Memory: its own peers, bound to their connections, and the
// other instances' peers, each bound to a Sender that stands for it (a
// remote peer: a pointer per instance, swarm and peer id). Picking the
// peers an announce's offers go to, uniformly at random over the
// fleet's peers of the swarm, and routing an answer are the Memory's,
// as on a single instance; the Sender picked or routed to may be a
// remote peer, whose Send queues the message for its instance.
//
// What instances exchange goes through a fleet.Messenger (Redis
// Pub/Sub), at most once:
//
//   - membership changes: every announce and leave of a local peer is
//     broadcast, in batches every FlushInterval, as a change (swarm, peer
//     id, seeder, announce/completed/leave); the other instances apply it
//     to their Memory with the remote peer as its Sender. A remote peer
//     is refreshed by its announces and expires by the registry's peer
//     lifetime like a local one; it leaves on its leave.
//   - relayed messages: a message Sent to a remote peer is queued for its
//     instance (a bounded queue per instance, never blocking the sender)
//     and sent to it directly by a goroutine, batched; the instance
//     delivers it to the connection the recipient is bound to there. An
//     offer to a remote peer is preceded, in the same queue, by the
//     offering peer's change, so that the recipient's instance knows the
//     offerer when the answer comes, even before the broadcast batch.
//   - heartbeats: an instance that has broadcast nothing for Heartbeat
//     broadcasts an empty batch; one not heard from for Timeout is gone,
//     and its peers are dropped. An instance shutting down says bye, and
//     its peers are dropped at once.
//   - dumps: when an instance hears from one it does not know (it just
//     started, or had been dropped), it sends it all its local peers, as
//     changes, and asks for its peers in return. So an instance that
//     starts, or comes back after an outage, has the fleet's peers
//     within a heartbeat and the time to send them, not an announce
//     interval (up to 30 minutes) later.
//
// # Guarantees and limits
//
// The request path never waits on the network: Announce, Route, Leave
// and a remote peer's Send only append to bounded queues in memory.
// Everything is bounded: the changes waiting to be broadcast
// (MaxPendingBytes), the messages waiting per instance (MaxQueueBytes),
// the instances known (MaxInstances), and the peers, local and remote
// together, by the Memory's MaxPeers: a flood of peers into one instance
// is bounded everywhere. A dump holds 42 bytes per local peer while it
// is sent, one dump at a time. What does not fit is dropped and counted
// (Stats).
//
// Delivery is at most once. While the Messenger is down the changes wait
// and go out, in order, when it is back; past MaxPendingBytes changes
// are dropped (new ones while the queue is full, the oldest when a
// batch that failed is put back). A change lost that way (or by the
// Messenger) heals by itself: every peer announces again within an
// interval, and its next announce carries the same information. A leave
// lost leaves a remote peer behind, until it expires or a message is
// relayed to it: its instance, which does not have it, answers with a
// leave. A relayed message is not kept when the Messenger fails: an
// offer lost is an offer the browser does not get answered, as when its
// recipient left. After an outage longer than Timeout, each instance
// has dropped the others' peers; when they hear from each other again
// they exchange dumps.
//
// The changes an instance broadcasts are numbered, and the hints and
// dumps it sends one instance directly carry the number they are as of:
// a hint that arrives after the broadcast of a later change of its peer,
// or a dump's peer whose leave (made after the dump) arrived first, is
// skipped, so neither brings back a peer that left.
//
// # Peer ids
//
// A peer id is bound, in a swarm, to one connection until it expires
// (signaling.ErrPeerIDTaken), and that holds across the fleet: a remote
// peer does not take a local peer's id, nor a local peer a remote one's,
// nor one instance's peer another's. Each instance keeps the binding it
// had first; a conflicting change is refused and counted (Conflicts). A
// browser that reconnects to another instance gets its id back once its
// old connection's leave has arrived there (a batch later).
package relay

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"trackd/bittorrent"
	"trackd/fleet"
	"trackd/signaling"
)

// Defaults of Options.
const (
	// DefaultFlushInterval is how often the membership changes are
	// broadcast: a peer that announced to one instance is offered by the
	// others about this much later (plus the Messenger's latency).
	DefaultFlushInterval = 50 * time.Millisecond
	// DefaultHeartbeat is how often an instance that had nothing to
	// broadcast says it is there.
	DefaultHeartbeat = 2 * time.Second
	// DefaultTimeout is how long an instance not heard from is kept:
	// three heartbeats missed, and some slack.
	DefaultTimeout = 7 * time.Second
	// DefaultMaxPendingBytes bounds the changes waiting to be
	// broadcast: about 100,000 changes (42 bytes each), two seconds of a
	// very busy instance.
	DefaultMaxPendingBytes = 4 << 20
	// DefaultMaxQueueBytes bounds the messages waiting to be sent to
	// one instance: some hundreds of offers of a few KB.
	DefaultMaxQueueBytes = 1 << 20
	// DefaultMaxInstances bounds the other instances known at once.
	DefaultMaxInstances = 64
)

// Options configure a Registry. The zero value of a field means its
// default.
type Options struct {
	// Self is this instance's id; zero means a new random one.
	// Messages sent to Self reach this Registry.
	Self fleet.Instance
	// PeerLifetime, MaxPeers and Now configure the Memory that holds the
	// peers, local and remote (signaling.Options). Set MaxPeers: it is
	// the bound of the remote peers too.
	PeerLifetime time.Duration
	MaxPeers     int
	Now          func() time.Time
	// FlushInterval, Heartbeat and Timeout: see the defaults.
	FlushInterval time.Duration
	Heartbeat     time.Duration
	Timeout       time.Duration
	// MaxPendingBytes, MaxQueueBytes and MaxInstances are the bounds:
	// see the defaults.
	MaxPendingBytes int
	MaxQueueBytes   int
	MaxInstances    int
	// Logger logs the Messenger's failures, at most once a minute; nil
	// means slog.Default().
	Logger *slog.Logger
}

// Stats are a Registry's counts since it was made. The server exports
// them as metrics.
type Stats struct {
	// Instances and RemotePeers are the other instances known now and
	// the peers of theirs this registry holds.
	Instances   int
	RemotePeers int
	// ChangesSent are the local changes broadcast; ChangesDropped those
	// lost to the pending bound (MaxPendingBytes) while they waited.
	ChangesSent    uint64
	ChangesDropped uint64
	// ChangesApplied are the other instances' changes applied here;
	// Conflicts those refused because the peer id is bound here to
	// another connection (local or another instance's), Full those
	// refused because the registry holds MaxPeers.
	ChangesApplied uint64
	Conflicts      uint64
	Full           uint64
	// Relayed are the messages queued for other instances' peers;
	// RelayDropped those refused because the instance's queue was full
	// (or the instance gone, or the message too large). Delivered are the
	// messages from other instances handed to a local connection;
	// Undeliverable those whose recipient is not a peer connected here
	// (left, expired, never was) or whose connection refused them.
	Relayed       uint64
	RelayDropped  uint64
	Delivered     uint64
	Undeliverable uint64
	// Stale are the hints skipped (the change they repeat, or a later
	// one, had come first) and the peers of dumps skipped (they left
	// after the dump was made).
	Stale uint64
	// Dumps are the times this instance sent its local peers to
	// another (one it had not heard from, or that asked), DumpedPeers
	// the peers they carried.
	Dumps       uint64
	DumpedPeers uint64
	// SendErrors are the Messenger's Sends that failed: everything in
	// them is lost. Invalid are the messages received that did not parse,
	// skipped whole; Foreign those that are not the relay's (no magic:
	// another user of the Messenger's), ignored. InstancesGone are the instances dropped: timed out
	// or said bye. TooManyInstances are messages from an instance not
	// known, ignored because MaxInstances are.
	SendErrors       uint64
	Invalid          uint64
	Foreign          uint64
	InstancesGone    uint64
	TooManyInstances uint64
}

// Registry is a signaling.Registry over the instances of a fleet. Its
// zero value is not usable; make one with New, and Run it for as long as
// it serves. It is safe for concurrent use.
type Registry struct {
	mem      *signaling.Memory
	bus      fleet.Messenger
	opts     Options
	lifetime time.Duration
	log      *slog.Logger

	changes *queue         // local changes to broadcast
	dumps   chan *instance // instances to send the local peers to

	mu        sync.Mutex
	instances map[fleet.Instance]*instance
	ctx       context.Context // Run's, while it runs
	senders   sync.WaitGroup

	lastLog atomic.Int64 // unix nanoseconds

	changesSent, changesDropped, changesApplied, conflicts, full atomic.Uint64
	relayed, relayDropped, delivered, undeliverable              atomic.Uint64
	sendErrors, invalid, instancesGone, tooManyInstances         atomic.Uint64
	dumpsSent, dumpedPeers, stale, foreign                       atomic.Uint64
}

// instance is another instance of the fleet, as this one knows it.
type instance struct {
	id    fleet.Instance
	r     *Registry
	heard atomic.Int64 // unix nanoseconds of its last message
	out   *queue       // messages to it
	wake  chan struct{}
	done  chan struct{} // closed when it is dropped

	// dumpPending says a dump to it is scheduled; dumpAsk that the dump
	// asks for its own in return.
	dumpPending, dumpAsk atomic.Bool

	mu      sync.Mutex
	peers   map[peerKey]*remote // nil once dropped
	applied uint64              // the highest numbered change applied
	// left and leftOld are the numbers of the leaves applied lately
	// (since rotated, and the period before): what a dump made before a
	// leave, and received after it, must not undo.
	left, leftOld map[peerKey]uint64
	rotated       int64 // unix nanoseconds
}

// Bounds of the leaves an instance remembers (see instance.left): a dump
// takes seconds to arrive.
const (
	leftPeriod = 10 * time.Second
	maxLeft    = 1 << 14
)

// leftAt returns the number of k's latest leave remembered, or 0. inst.mu
// must be held.
func (inst *instance) leftAt(k peerKey) uint64 {
	return max(inst.left[k], inst.leftOld[k])
}

// remember records k's leave numbered seq. inst.mu must be held.
func (inst *instance) remember(k peerKey, seq uint64, now int64) {
	if inst.left == nil || len(inst.left) >= maxLeft/2 || now-inst.rotated > int64(leftPeriod) {
		inst.left, inst.leftOld, inst.rotated = make(map[peerKey]uint64), inst.left, now
	}
	inst.left[k] = seq
}

type peerKey struct {
	ih bittorrent.InfoHash
	id bittorrent.PeerID
}

// remote is a peer connected to another instance: the Sender it is bound
// to in the Memory, a pointer so that it compares as the Memory needs.
type remote struct {
	inst *instance
	key  peerKey
	seen int64 // unix nanoseconds of its last change; under inst.mu
}

// Send implements signaling.Sender: msg is queued for the peer's
// instance, never blocking; false if its queue is full or it is gone.
func (p *remote) Send(msg []byte) bool {
	r := p.inst.r
	if len(msg) == 0 || len(msg) > MaxMessageBytes || !p.inst.out.addMessage(p.key.ih, p.key.id, msg) {
		r.relayDropped.Add(1)
		return false
	}
	r.relayed.Add(1)
	p.inst.kick()
	return true
}

var _ signaling.Registry = (*Registry)(nil)

// New returns a Registry that exchanges with the other instances
// through m. It holds local peers and works as a single instance's
// registry until Run starts the exchange.
func New(m fleet.Messenger, opts Options) *Registry {
	if opts.Self == (fleet.Instance{}) {
		opts.Self = fleet.NewInstance()
	}
	if opts.PeerLifetime <= 0 {
		opts.PeerLifetime = signaling.DefaultPeerLifetime
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxPendingBytes <= 0 {
		opts.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if opts.MaxQueueBytes <= 0 {
		opts.MaxQueueBytes = DefaultMaxQueueBytes
	}
	if opts.MaxInstances <= 0 {
		opts.MaxInstances = DefaultMaxInstances
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Registry{
		mem:       signaling.NewMemory(signaling.Options{PeerLifetime: opts.PeerLifetime, MaxPeers: opts.MaxPeers, Now: opts.Now}),
		bus:       m,
		opts:      opts,
		lifetime:  opts.PeerLifetime,
		log:       opts.Logger,
		changes:   newQueue(opts.Self, opts.MaxPendingBytes, true),
		dumps:     make(chan *instance, opts.MaxInstances),
		instances: make(map[fleet.Instance]*instance),
	}
}

// Self returns this instance's id.
func (r *Registry) Self() fleet.Instance { return r.opts.Self }

// Announce implements signaling.Registry. a.Via is a local connection;
// the peers picked may be other instances' (their Send relays). The
// change is queued for the other instances.
func (r *Registry) Announce(a *signaling.Announce, dst []signaling.Sender) ([]signaling.Sender, bittorrent.Stats, error) {
	n0 := len(dst)
	dst, st, err := r.mem.Announce(a, dst)
	if err != nil {
		return dst, st, err
	}
	o := opOf(a.Event)
	seq := r.change(a.InfoHash, a.PeerID, o, a.Seeder)
	// The offers to another instance's peers follow, in its queue, the
	// announcing peer's change (a hint): the answer finds the offerer
	// there even if the broadcast comes later.
	for i := n0; i < len(dst); i++ {
		p, ok := dst[i].(*remote)
		if !ok {
			continue
		}
		first := true
		for _, s := range dst[n0:i] {
			if q, ok := s.(*remote); ok && q.inst == p.inst {
				first = false
				break
			}
		}
		if first {
			p.inst.out.addHint(a.InfoHash, a.PeerID, o, a.Seeder, seq)
		}
	}
	return dst, st, nil
}

// change queues a local change for broadcast and returns its number.
func (r *Registry) change(ih bittorrent.InfoHash, id bittorrent.PeerID, o op, seeder bool) uint64 {
	seq, ok := r.changes.addChange(ih, id, o, seeder)
	if !ok {
		r.changesDropped.Add(1)
	}
	return seq
}

// Route implements signaling.Registry: the Sender returned may be
// another instance's peer.
func (r *Registry) Route(ih bittorrent.InfoHash, from bittorrent.PeerID, via signaling.Sender, to bittorrent.PeerID) (signaling.Sender, error) {
	return r.mem.Route(ih, from, via, to)
}

// Leave implements signaling.Registry; the leave is queued for the other
// instances.
func (r *Registry) Leave(ih bittorrent.InfoHash, id bittorrent.PeerID, via signaling.Sender) bool {
	if !r.mem.Leave(ih, id, via) {
		return false
	}
	r.change(ih, id, opLeave, false)
	return true
}

// Has implements signaling.Registry.
func (r *Registry) Has(ih bittorrent.InfoHash, id bittorrent.PeerID, via signaling.Sender) bool {
	return r.mem.Has(ih, id, via)
}

// Scrape implements signaling.Registry: the counts are the fleet's, as
// far as this instance knows them.
func (r *Registry) Scrape(hashes []bittorrent.InfoHash, dst []bittorrent.Stats) []bittorrent.Stats {
	return r.mem.Scrape(hashes, dst)
}

// Totals implements signaling.Registry: local and remote peers.
func (r *Registry) Totals() signaling.Totals { return r.mem.Totals() }

// Expire implements signaling.Registry: local and remote peers expire
// alike, by the peer lifetime since their last announce.
func (r *Registry) Expire() int {
	n := r.mem.Expire()
	// Forget the remote peers the Memory has expired: a little later
	// than it does (its clock is in whole seconds), so that a remote
	// peer forgotten here is never still bound there.
	cut := r.opts.Now().Add(-r.lifetime - 2*time.Second).UnixNano()
	for _, inst := range r.known() {
		inst.mu.Lock()
		for k, p := range inst.peers {
			if p.seen < cut {
				delete(inst.peers, k)
			}
		}
		inst.mu.Unlock()
	}
	return n
}

// known returns the instances known now.
func (r *Registry) known() []*instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := make([]*instance, 0, len(r.instances))
	for _, inst := range r.instances {
		list = append(list, inst)
	}
	return list
}

// Stats returns the counts.
func (r *Registry) Stats() Stats {
	st := Stats{
		ChangesSent:      r.changesSent.Load(),
		ChangesDropped:   r.changesDropped.Load(),
		ChangesApplied:   r.changesApplied.Load(),
		Conflicts:        r.conflicts.Load(),
		Full:             r.full.Load(),
		Relayed:          r.relayed.Load(),
		RelayDropped:     r.relayDropped.Load(),
		Delivered:        r.delivered.Load(),
		Undeliverable:    r.undeliverable.Load(),
		Stale:            r.stale.Load(),
		Dumps:            r.dumpsSent.Load(),
		DumpedPeers:      r.dumpedPeers.Load(),
		SendErrors:       r.sendErrors.Load(),
		Invalid:          r.invalid.Load(),
		Foreign:          r.foreign.Load(),
		InstancesGone:    r.instancesGone.Load(),
		TooManyInstances: r.tooManyInstances.Load(),
	}
	for _, inst := range r.known() {
		st.Instances++
		inst.mu.Lock()
		st.RemotePeers += len(inst.peers)
		inst.mu.Unlock()
	}
	return st
}

// errRunning refuses a second Run at once.
var errRunning = errors.New("relay: Registry is already running")

// Run exchanges with the other instances until ctx ends: it listens to
// the Messenger, broadcasts the changes and heartbeats, sends the
// relayed messages and drops the instances gone. It returns once all
// of that has stopped, after a bye to the others (best effort, within a
// second), with ctx's error.
func (r *Registry) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.ctx != nil {
		r.mu.Unlock()
		return errRunning
	}
	r.ctx = ctx
	r.mu.Unlock()

	var wg sync.WaitGroup
	wg.Go(func() { r.listen(ctx) })
	wg.Go(func() { r.broadcast(ctx) })
	wg.Go(func() { r.dumpLoop(ctx) })
	wg.Wait()

	r.mu.Lock()
	r.ctx = nil
	list := make([]*instance, 0, len(r.instances))
	for _, inst := range r.instances {
		list = append(list, inst)
	}
	r.mu.Unlock()
	for _, inst := range list {
		r.drop(inst, false)
	}
	r.senders.Wait()

	bye, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	var frame [headerLen + 1]byte
	b := append(appendHeader(frame[:0], r.opts.Self), kindBye)
	r.send(bye, fleet.Instance{}, b)
	return ctx.Err()
}

// listen hands every message received to receive until ctx ends,
// listening again a second after the Messenger fails.
func (r *Registry) listen(ctx context.Context) {
	for ctx.Err() == nil {
		err := r.bus.Listen(ctx, r.opts.Self, r.receive)
		if ctx.Err() != nil {
			return
		}
		r.logError("relay: listening failed", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// broadcast sends the changes every FlushInterval, a heartbeat when
// there were none for Heartbeat, and drops the instances not heard from
// for Timeout, until ctx ends.
func (r *Registry) broadcast(ctx context.Context) {
	t := time.NewTicker(r.opts.FlushInterval)
	defer t.Stop()
	var frames [][]byte
	var last, lastReap time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		frames = r.changes.take(frames[:0])
		now := time.Now()
		if len(frames) == 0 && now.Sub(last) >= r.opts.Heartbeat {
			var hb [headerLen]byte
			frames = append(frames, appendHeader(hb[:0], r.opts.Self))
		}
		for i, f := range frames {
			last = now
			if !r.send(ctx, fleet.Instance{}, f) {
				// kept for the next tick: a short outage loses nothing
				// while the changes fit the bound
				if len(f) > headerLen {
					r.changesDropped.Add(uint64(r.changes.requeue(frames[i:])))
				}
				frames = frames[:i]
				break
			}
			r.changesSent.Add(uint64((len(f) - headerLen) / changeLen))
		}
		r.changes.recycle(frames)
		clear(frames)
		if now.Sub(lastReap) >= r.opts.Heartbeat/2 {
			lastReap = now
			r.reap()
		}
	}
}

// send sends one frame, counting and logging a failure.
func (r *Registry) send(ctx context.Context, to fleet.Instance, frame []byte) bool {
	if err := r.bus.Send(ctx, to, frame); err != nil {
		r.sendErrors.Add(1)
		if ctx.Err() == nil {
			r.logError("relay: sending failed", err)
		}
		return false
	}
	return true
}

// logError logs err at most once a minute.
func (r *Registry) logError(msg string, err error) {
	now := time.Now().UnixNano()
	last := r.lastLog.Load()
	if now-last < int64(time.Minute) || !r.lastLog.CompareAndSwap(last, now) {
		return
	}
	r.log.Warn(msg, "err", err, "instance", r.opts.Self.String())
}

// reap drops the instances not heard from for Timeout.
func (r *Registry) reap() {
	cut := r.opts.Now().Add(-r.opts.Timeout).UnixNano()
	for _, inst := range r.known() {
		if inst.heard.Load() < cut {
			r.drop(inst, true)
		}
	}
}

// drop forgets inst: its queue and sender stop, its peers leave the
// Memory. gone counts it as gone (not so when Run stops).
func (r *Registry) drop(inst *instance, gone bool) {
	r.mu.Lock()
	if r.instances[inst.id] != inst {
		r.mu.Unlock()
		return
	}
	delete(r.instances, inst.id)
	r.mu.Unlock()
	close(inst.done)
	inst.out.close()
	inst.mu.Lock()
	for k, p := range inst.peers {
		r.mem.Leave(k.ih, k.id, p)
	}
	inst.peers = nil
	inst.mu.Unlock()
	if gone {
		r.instancesGone.Add(1)
	}
}

// instance returns the instance id, made (and its sender started) if it
// is new; nil if it is new and MaxInstances are known, or Run is not
// running.
func (r *Registry) instance(id fleet.Instance) *instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	if inst := r.instances[id]; inst != nil {
		return inst
	}
	if r.ctx == nil {
		return nil
	}
	if len(r.instances) >= r.opts.MaxInstances {
		r.tooManyInstances.Add(1)
		return nil
	}
	inst := &instance{
		id:    id,
		r:     r,
		out:   newQueue(r.opts.Self, r.opts.MaxQueueBytes, false),
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
		peers: make(map[peerKey]*remote),
	}
	inst.heard.Store(r.opts.Now().UnixNano())
	r.instances[id] = inst
	ctx := r.ctx
	r.senders.Go(func() { r.sendTo(ctx, inst) })
	r.scheduleDump(inst, true)
	return inst
}

// sendTo sends the messages queued for inst, as they come, until it is
// dropped or ctx ends.
func (r *Registry) sendTo(ctx context.Context, inst *instance) {
	var frames [][]byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-inst.done:
			return
		case <-inst.wake:
		}
		frames = inst.out.take(frames[:0])
		for _, f := range frames {
			r.send(ctx, inst.id, f)
		}
		inst.out.recycle(frames)
		clear(frames)
	}
}

// receive applies one message from the Messenger: a frame from another
// instance (this one's broadcasts come back too, and are skipped).
func (r *Registry) receive(msg []byte) {
	origin, err := checkFrame(msg)
	if err == errForeign {
		r.foreign.Add(1)
		return
	}
	if err != nil {
		r.invalid.Add(1)
		return
	}
	if origin == r.opts.Self {
		return
	}
	inst := r.instance(origin)
	if inst == nil {
		return
	}
	inst.heard.Store(r.opts.Now().UnixNano())
	fr, _ := readHeader(msg)
	var e entry
	var seq uint64  // the number of the next change, if numbered
	var asOf uint64 // a dump's number, if the frame is a dump
	for {
		ok, _ := fr.next(&e) // checked above
		if !ok {
			return
		}
		switch e.kind {
		case kindSeq:
			seq = e.seq
		case kindDump:
			asOf = e.seq
		case kindChange:
			e.seq = seq
			r.apply(inst, &e, asOf)
			if seq != 0 {
				seq++
			}
		case kindHint:
			r.apply(inst, &e, 0)
		case kindMessage:
			r.deliver(inst, &e)
		case kindBye:
			r.drop(inst, true)
			return
		case kindSync:
			r.scheduleDump(inst, false)
		}
	}
}

// apply applies another instance's change (or hint) to the Memory; asOf
// is the dump's number if the change is one of a dump.
func (r *Registry) apply(inst *instance, e *entry, asOf uint64) {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	if inst.peers == nil {
		return // dropped meanwhile
	}
	if e.kind == kindHint {
		if e.seq <= inst.applied {
			// the change it repeats, or a later one, came first
			r.stale.Add(1)
			return
		}
	} else if e.seq > inst.applied {
		inst.applied = e.seq
	}
	k := peerKey{e.ih, e.id}
	if asOf != 0 && inst.leftAt(k) >= asOf {
		// left after the dump was made
		r.stale.Add(1)
		return
	}
	p := inst.peers[k]
	if asOf != 0 && p != nil && r.mem.Has(k.ih, k.id, p) {
		// a dump adds the peers missing; one known here is refreshed
		// by its own announces, which say when it last announced
		return
	}
	if e.op == opLeave {
		if e.seq != 0 {
			inst.remember(k, e.seq, r.opts.Now().UnixNano())
		}
		if p != nil {
			r.mem.Leave(k.ih, k.id, p)
			delete(inst.peers, k)
		}
		r.changesApplied.Add(1)
		return
	}
	if p == nil {
		p = &remote{inst: inst, key: k}
	}
	ev := bittorrent.EventNone
	if e.op == opCompleted {
		ev = bittorrent.EventCompleted
	}
	a := signaling.Announce{InfoHash: k.ih, PeerID: k.id, Via: p, Event: ev, Seeder: e.seeder}
	_, _, err := r.mem.Announce(&a, nil)
	switch {
	case err == nil:
		p.seen = r.opts.Now().UnixNano()
		inst.peers[k] = p
		r.changesApplied.Add(1)
	case errors.Is(err, signaling.ErrPeerIDTaken):
		// bound here to another connection, or to another instance's
		// peer: the first binding stays (and p, if it was known, lost
		// its own by expiring first)
		delete(inst.peers, k)
		r.conflicts.Add(1)
	default: // signaling.ErrFull
		delete(inst.peers, k)
		r.full.Add(1)
	}
}

// deliver hands a message from another instance to the local connection
// its recipient is bound to.
//
// A recipient that is not connected here (it left, expired, or never
// was; or it is another instance's peer, and a message is not relayed
// on) is one the sender holds as this instance's peer wrongly: a leave
// lost, or a change that came after it. The sender is told it left, so
// that its offers stop going there.
func (r *Registry) deliver(from *instance, e *entry) {
	s, ok := r.mem.Lookup(e.ih, e.id)
	if _, isRemote := s.(*remote); !ok || isRemote {
		r.undeliverable.Add(1)
		if _, ok := from.out.addChange(e.ih, e.id, opLeave, false); ok {
			from.kick()
		}
		return
	}
	if !s.Send(e.msg) {
		r.undeliverable.Add(1)
		return
	}
	r.delivered.Add(1)
}

// kick wakes the goroutine that sends inst's queue.
func (inst *instance) kick() {
	select {
	case inst.wake <- struct{}{}:
	default:
	}
}

// scheduleDump schedules a dump of the local peers to inst, asking for
// its own in return if ask; a dump already scheduled is not repeated.
func (r *Registry) scheduleDump(inst *instance, ask bool) {
	if ask {
		inst.dumpAsk.Store(true)
	}
	if inst.dumpPending.CompareAndSwap(false, true) {
		select {
		case r.dumps <- inst:
		default:
			inst.dumpPending.Store(false)
		}
	}
}

// dumpLoop sends the dumps scheduled, one at a time, until ctx ends.
func (r *Registry) dumpLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case inst := <-r.dumps:
			r.dump(ctx, inst)
		}
	}
}

// dump sends inst every local peer, as changes, in frames: what an
// instance that joins (or comes back after an outage) learns at once
// rather than as the peers announce again. It holds the frames of one
// dump (42 bytes a peer) while it sends them.
func (r *Registry) dump(ctx context.Context, inst *instance) {
	inst.dumpPending.Store(false)
	ask := inst.dumpAsk.Swap(false)
	asOf, _ := r.changes.next()
	var frames [][]byte
	var f []byte
	n := 0
	start := func() {
		if f != nil {
			frames = append(frames, f)
		}
		f = appendHeader(make([]byte, 0, frameBytes), r.opts.Self)
		f = appendSeqKind(f, kindDump, asOf)
	}
	start()
	if ask {
		f = append(f, kindSync)
	}
	r.mem.Range(func(ih bittorrent.InfoHash, id bittorrent.PeerID, via signaling.Sender, seeder bool) bool {
		if _, ok := via.(*remote); ok {
			return true
		}
		if len(f)+changeLen > frameBytes {
			start()
		}
		f = appendChange(f, ih, id, opAnnounce, seeder)
		n++
		return true
	})
	if len(f) > headerLen+seqLen {
		frames = append(frames, f)
	}
	for _, f := range frames {
		select {
		case <-inst.done:
			return
		default:
		}
		if !r.send(ctx, inst.id, f) {
			return
		}
	}
	r.dumpsSent.Add(1)
	r.dumpedPeers.Add(uint64(n))
}
