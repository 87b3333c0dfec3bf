package signaling

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"trackd/bittorrent"
)

// Options configure a Memory registry. The zero value is usable.
type Options struct {
	// PeerLifetime is how long a peer stays after its last announce;
	// zero means DefaultPeerLifetime.
	PeerLifetime time.Duration
	// MaxPeers bounds the peers of all swarms together: a new peer over
	// it is refused with ErrFull. Zero means no bound (the connections
	// and the torrents per connection are bounded elsewhere).
	MaxPeers int
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// numShards is the number of independently locked parts of a Memory.
const numShards = 256

// indexFrom is the size at which a swarm keeps a map from peer id to
// place; a smaller swarm (most of them) is searched in order, which
// saves a map per swarm.
const indexFrom = 16

// Memory is the in-memory Registry: swarms in shards by info hash, each
// under its own lock. Its zero value is not usable; call NewMemory.
type Memory struct {
	shards   [numShards]shard
	seed     uint64
	lifetime uint32 // seconds
	maxPeers int64
	now      func() time.Time
	epoch    time.Time

	swarms, seeders, leechers atomic.Int64
}

type shard struct {
	mu     sync.Mutex
	swarms map[bittorrent.InfoHash]*swarm
	_      [40]byte // a cache line of its own
}

// member is one peer of a swarm: 40 bytes.
type member struct {
	via  Sender
	id   bittorrent.PeerID
	seen uint32 // seconds since the registry's epoch
}

// swarm is one torrent's peers, leechers and seeders apart so that a
// seeder's offers go to leechers only without a scan.
type swarm struct {
	leech, seeds []member
	// index maps a peer id to its place, for swarms of indexFrom peers
	// or more: i ≥ 0 is leech[i], i < 0 is seeds[^i].
	index      map[bittorrent.PeerID]int32
	downloaded uint32
}

// NewMemory returns an empty in-memory registry.
func NewMemory(opts Options) *Memory {
	if opts.PeerLifetime <= 0 {
		opts.PeerLifetime = DefaultPeerLifetime
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Memory{
		seed:     rand.Uint64(),
		lifetime: uint32(max((opts.PeerLifetime+time.Second-1)/time.Second, 1)),
		maxPeers: int64(opts.MaxPeers),
		now:      opts.Now,
	}
	r.epoch = r.now()
	for i := range r.shards {
		r.shards[i].swarms = make(map[bittorrent.InfoHash]*swarm)
	}
	return r
}

var _ Registry = (*Memory)(nil)

// clock is the current time in whole seconds since the epoch.
func (r *Memory) clock() uint32 {
	d := r.now().Sub(r.epoch)
	if d < 0 {
		return 0
	}
	return uint32(d / time.Second)
}

func (r *Memory) expired(m *member, now uint32) bool {
	return now-m.seen > r.lifetime && now > m.seen
}

func (r *Memory) shard(ih bittorrent.InfoHash) *shard {
	h := (binary.LittleEndian.Uint64(ih[:8]) ^ r.seed) * 0x9E3779B97F4A7C15
	return &r.shards[h>>(64-8)]
}

// find returns the place of id in s: ok false if it is not there.
func (s *swarm) find(id bittorrent.PeerID) (pos int32, ok bool) {
	if s.index != nil {
		pos, ok = s.index[id]
		return pos, ok
	}
	for i := range s.leech {
		if s.leech[i].id == id {
			return int32(i), true
		}
	}
	for i := range s.seeds {
		if s.seeds[i].id == id {
			return ^int32(i), true
		}
	}
	return 0, false
}

func (s *swarm) at(pos int32) *member {
	if pos >= 0 {
		return &s.leech[pos]
	}
	return &s.seeds[^pos]
}

func (s *swarm) size() int { return len(s.leech) + len(s.seeds) }

func (s *swarm) stats() bittorrent.Stats {
	return bittorrent.Stats{Seeders: uint32(len(s.seeds)), Leechers: uint32(len(s.leech)), Downloaded: s.downloaded}
}

// add appends m as a seeder or a leecher and returns its place.
func (s *swarm) add(m member, seeder bool) int32 {
	var pos int32
	if seeder {
		s.seeds = append(s.seeds, m)
		pos = ^int32(len(s.seeds) - 1)
	} else {
		s.leech = append(s.leech, m)
		pos = int32(len(s.leech) - 1)
	}
	if s.index != nil {
		s.index[m.id] = pos
	} else if s.size() >= indexFrom {
		s.index = make(map[bittorrent.PeerID]int32, s.size())
		for i := range s.leech {
			s.index[s.leech[i].id] = int32(i)
		}
		for i := range s.seeds {
			s.index[s.seeds[i].id] = ^int32(i)
		}
	}
	return pos
}

// remove takes the member at pos out (the last one of its list takes
// its place) and returns it.
func (s *swarm) remove(pos int32) member {
	list := &s.leech
	i := int(pos)
	if pos < 0 {
		list, i = &s.seeds, int(^pos)
	}
	l := *list
	m := l[i]
	last := len(l) - 1
	if i != last {
		l[i] = l[last]
		if s.index != nil {
			s.index[l[i].id] = pos
		}
	}
	l[last] = member{} // drop the Sender
	l = l[:last]
	if cap(l) > 16 && len(l) < cap(l)/4 {
		l = append([]member(nil), l...)
	}
	*list = l
	if s.index != nil {
		delete(s.index, m.id)
		if s.size() < indexFrom/2 {
			s.index = nil
		}
	}
	return m
}

// counted adjusts the registry's totals by a member that joined (n = 1)
// or left (n = -1).
func (r *Memory) counted(seeder bool, n int64) {
	if seeder {
		r.seeders.Add(n)
	} else {
		r.leechers.Add(n)
	}
}

// Announce implements Registry.
func (r *Memory) Announce(a *Announce, dst []Sender) ([]Sender, bittorrent.Stats, error) {
	now := r.clock()
	sh := r.shard(a.InfoHash)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sw := sh.swarms[a.InfoHash]
	var pos int32
	found := false
	if sw != nil {
		pos, found = sw.find(a.PeerID)
	}
	if found {
		if m := sw.at(pos); m.via != a.Via {
			if !r.expired(m, now) {
				return dst, sw.stats(), ErrPeerIDTaken
			}
			m.via = a.Via // its connection stopped announcing: rebound
		}
	}
	if a.Event == bittorrent.EventStopped {
		if !found {
			if sw == nil {
				return dst, bittorrent.Stats{}, nil
			}
			return dst, sw.stats(), nil
		}
		sw.remove(pos)
		r.counted(pos < 0, -1)
		st := sw.stats()
		if sw.size() == 0 {
			delete(sh.swarms, a.InfoHash)
			r.swarms.Add(-1)
		}
		return dst, st, nil
	}
	completed := a.Event == bittorrent.EventCompleted && a.Seeder
	switch {
	case !found:
		if r.maxPeers > 0 && r.seeders.Load()+r.leechers.Load() >= r.maxPeers {
			if sw == nil {
				return dst, bittorrent.Stats{}, ErrFull
			}
			return dst, sw.stats(), ErrFull
		}
		if sw == nil {
			sw = &swarm{}
			sh.swarms[a.InfoHash] = sw
			r.swarms.Add(1)
		}
		pos = sw.add(member{via: a.Via, id: a.PeerID, seen: now}, a.Seeder)
		r.counted(a.Seeder, 1)
		if completed {
			sw.downloaded++
		}
	case (pos < 0) != a.Seeder:
		// a leecher that finished (or a seeder that lost data)
		m := sw.remove(pos)
		r.counted(pos < 0, -1)
		m.seen = now
		pos = sw.add(m, a.Seeder)
		r.counted(a.Seeder, 1)
		if completed {
			sw.downloaded++
		}
	default:
		sw.at(pos).seen = now
	}
	if a.NumWant > 0 {
		dst = r.pick(sw, pos, a.Seeder, a.NumWant, now, dst)
	}
	return dst, sw.stats(), nil
}

// pick appends up to k peers of sw other than the one at self, chosen
// uniformly at random without repetition (Floyd's algorithm over the
// places, so nothing is allocated and sw is not reordered): leechers
// only for a seeder, leechers and seeders for a leecher. Expired peers
// drawn are left out.
func (r *Memory) pick(sw *swarm, self int32, seeder bool, k int, now uint32, dst []Sender) []Sender {
	// Places 0..n-1 are leech then seeds; a seeder draws from leech
	// only. skip is self's place among those drawn from, or -1.
	n, skip := len(sw.leech), -1
	if !seeder {
		n += len(sw.seeds)
		if self >= 0 {
			skip = int(self)
		} else {
			skip = len(sw.leech) + int(^self)
		}
	}
	avail := n
	if skip >= 0 {
		avail--
	}
	k = min(k, avail, MaxPick)
	if k <= 0 {
		return dst
	}
	take := func(p int) {
		if skip >= 0 && p >= skip {
			p++
		}
		var m *member
		if p < len(sw.leech) {
			m = &sw.leech[p]
		} else {
			m = &sw.seeds[p-len(sw.leech)]
		}
		if !r.expired(m, now) {
			dst = append(dst, m.via)
		}
	}
	if k == avail {
		for p := range avail {
			take(p)
		}
		return dst
	}
	var chosen [MaxPick]int32
	for c, j := 0, avail-k; j < avail; c, j = c+1, j+1 {
		t := int32(rand.IntN(j + 1))
		for _, x := range chosen[:c] {
			if x == t {
				t = int32(j)
				break
			}
		}
		chosen[c] = t
		take(int(t))
	}
	return dst
}

// Route implements Registry.
func (r *Memory) Route(ih bittorrent.InfoHash, from bittorrent.PeerID, via Sender, to bittorrent.PeerID) (Sender, error) {
	now := r.clock()
	sh := r.shard(ih)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sw := sh.swarms[ih]
	if sw == nil {
		return nil, ErrNotMember
	}
	pos, ok := sw.find(from)
	if !ok {
		return nil, ErrNotMember
	}
	if m := sw.at(pos); m.via != via || r.expired(m, now) {
		return nil, ErrNotMember
	}
	pos, ok = sw.find(to)
	if !ok {
		return nil, ErrNoPeer
	}
	m := sw.at(pos)
	if r.expired(m, now) {
		return nil, ErrNoPeer
	}
	return m.via, nil
}

// Leave implements Registry.
func (r *Memory) Leave(ih bittorrent.InfoHash, id bittorrent.PeerID, via Sender) bool {
	sh := r.shard(ih)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sw := sh.swarms[ih]
	if sw == nil {
		return false
	}
	pos, ok := sw.find(id)
	if !ok || sw.at(pos).via != via {
		return false
	}
	sw.remove(pos)
	r.counted(pos < 0, -1)
	if sw.size() == 0 {
		delete(sh.swarms, ih)
		r.swarms.Add(-1)
	}
	return true
}

// Has implements Registry.
func (r *Memory) Has(ih bittorrent.InfoHash, id bittorrent.PeerID, via Sender) bool {
	now := r.clock()
	sh := r.shard(ih)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sw := sh.swarms[ih]
	if sw == nil {
		return false
	}
	pos, ok := sw.find(id)
	if !ok {
		return false
	}
	m := sw.at(pos)
	return m.via == via && !r.expired(m, now)
}

// Scrape implements Registry.
func (r *Memory) Scrape(hashes []bittorrent.InfoHash, dst []bittorrent.Stats) []bittorrent.Stats {
	for _, ih := range hashes {
		sh := r.shard(ih)
		sh.mu.Lock()
		var st bittorrent.Stats
		if sw := sh.swarms[ih]; sw != nil {
			st = sw.stats()
		}
		sh.mu.Unlock()
		dst = append(dst, st)
	}
	return dst
}

// Expire implements Registry. It holds one shard's lock at a time.
func (r *Memory) Expire() int {
	now := r.clock()
	n := 0
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for ih, sw := range sh.swarms {
			for j := len(sw.leech) - 1; j >= 0; j-- {
				if r.expired(&sw.leech[j], now) {
					sw.remove(int32(j))
					r.counted(false, -1)
					n++
				}
			}
			for j := len(sw.seeds) - 1; j >= 0; j-- {
				if r.expired(&sw.seeds[j], now) {
					sw.remove(^int32(j))
					r.counted(true, -1)
					n++
				}
			}
			if sw.size() == 0 {
				delete(sh.swarms, ih)
				r.swarms.Add(-1)
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// Totals implements Registry.
func (r *Memory) Totals() Totals {
	return Totals{
		Swarms:   uint64(max(r.swarms.Load(), 0)),
		Seeders:  uint64(max(r.seeders.Load(), 0)),
		Leechers: uint64(max(r.leechers.Load(), 0)),
	}
}

// Lookup returns the Sender peer id is bound to in swarm ih, if it is
// there and not expired. Unlike Route it asks nothing of the caller: it
// is for a Registry that spans instances (package fleet/relay), which
// delivers a message relayed from another instance to the connection
// its recipient is bound to here.
func (r *Memory) Lookup(ih bittorrent.InfoHash, id bittorrent.PeerID) (Sender, bool) {
	now := r.clock()
	sh := r.shard(ih)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sw := sh.swarms[ih]
	if sw == nil {
		return nil, false
	}
	pos, ok := sw.find(id)
	if !ok {
		return nil, false
	}
	m := sw.at(pos)
	if r.expired(m, now) {
		return nil, false
	}
	return m.via, true
}

// Range calls fn with every peer not expired (its swarm, its id, the
// Sender it is bound to and whether it seeds) until fn returns false.
// It holds one shard's lock at a time, so fn must be quick and must not
// call r; peers that join or leave meanwhile may or may not be seen. It
// is for a Registry that spans instances (package fleet/relay), which
// tells a joining instance the peers connected here.
func (r *Memory) Range(fn func(ih bittorrent.InfoHash, id bittorrent.PeerID, via Sender, seeder bool) bool) {
	now := r.clock()
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for ih, sw := range sh.swarms {
			for j := range sw.leech {
				if m := &sw.leech[j]; !r.expired(m, now) && !fn(ih, m.id, m.via, false) {
					sh.mu.Unlock()
					return
				}
			}
			for j := range sw.seeds {
				if m := &sw.seeds[j]; !r.expired(m, now) && !fn(ih, m.id, m.via, true) {
					sh.mu.Unlock()
					return
				}
			}
		}
		sh.mu.Unlock()
	}
}
