package loadgen

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"time"

	"trackd/bittorrent"
	"trackd/mmsg"
)

// Slot kinds.
const (
	kindConnect  = actionConnect
	kindAnnounce = actionAnnounce
	kindScrape   = actionScrape
)

// fillTries is how often a fill announces a peer whose requests time out.
const fillTries = 3

// udpSlot is one place in a socket's window: a request buffer that is
// reused, patched in place, for every request sent from it. The slot index
// is the low 16 bits of the transaction id and the slot's generation the
// high 16, so a late reply to an earlier use of the slot is told apart.
type udpSlot struct {
	buf      []byte
	sent     int64
	fill     fillPeer // fill: the announced peer
	gen      uint16
	staleGen uint16 // generation of the last request that timed out
	kind     uint8
	hashes   uint8
	inst     uint8 // the instance it went to (index in udpWorker.insts)
	busy     bool
	stale    bool
	tmpl     bool // buf holds the announce template
}

// udpInst is an instance a UDP worker sends to, with the worker's
// connection id there (each instance of a fleet issues its own, unless
// they share -udp-secret).
type udpInst struct {
	addr       netip.AddrPort // the destination; zero on a connected socket
	index      int            // in the runner's targets
	connID     uint64
	haveID     bool
	everID     bool
	gaveUp     bool
	idAt       int64 // when the current id was asked for
	connecting int   // slot of the connect in flight, or -1
	connTries  int   // connects sent without a reply, before the first id
	renewAt    int64 // renew early after an error reply (0: no)
}

// fillPeer is a peer of a fill and how often it was sent.
type fillPeer struct {
	local int32 // lane-local index
	tries int32
}

// fillQueue hands out the peers of a lane for -fill: the ones to try again
// first, then the ones not yet announced.
type fillQueue struct {
	fillNext int
	retry    []fillPeer
}

// done reports whether every one of the lane's n peers has been handed out
// and none waits to be tried again.
func (q *fillQueue) done(n int) bool { return q.fillNext >= n && len(q.retry) == 0 }

// next returns the next peer to announce, with its try counted.
func (q *fillQueue) next() fillPeer {
	var f fillPeer
	if n := len(q.retry); n > 0 {
		f, q.retry = q.retry[n-1], q.retry[:n-1]
	} else {
		f = fillPeer{local: int32(q.fillNext)}
		q.fillNext++
	}
	f.tries++
	return f
}

// udpWorker is one UDP socket, bound to one source address, playing one
// lane of peers with a window of requests in flight. Its socket is
// connected to its one instance, or, when it roams over a fleet, sends to
// every instance.
type udpWorker struct {
	r    *runner
	conn *net.UDPConn
	mc   *mmsg.Conn // batched I/O on conn: Window datagrams each way
	lane lane
	cyc  cycle
	evs  laneEvents
	rng  rng

	slots    []udpSlot
	free     []int
	inflight int
	outSlot  []int // slot of each datagram queued on mc

	insts      []udpInst
	live       int // instances not given up
	rr         int // round-robin of the scrapes over the instances
	deadline   int64
	nextScan   int64
	peerSize   int
	peer       Peer
	hashes     []bittorrent.InfoHash
	fills      fillQueue
	warm, meas Stats
	gaveUp     bool
}

func newUDPWorker(r *runner, s, count int) (*udpWorker, error) {
	cfg := r.cfg
	tgts := r.tgts
	if len(tgts) == 0 {
		tgts = []target{r.tgt}
	}
	// Sticking to one instance, worker s sends to instance s mod N over a
	// connected socket; roaming, to all of them from an unconnected one.
	var insts []udpInst
	if cfg.Roam && len(tgts) > 1 {
		for i, t := range tgts {
			insts = append(insts, udpInst{addr: t.addr, index: i, connecting: -1})
		}
	} else {
		insts = []udpInst{{index: s % len(tgts), connecting: -1}}
	}
	first := tgts[insts[0].index]
	network := "udp4"
	if first.addr.Addr().Is6() {
		network = "udp6"
	}
	var laddr *net.UDPAddr
	l := r.wl.lane(s, count)
	if first.bind {
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(SourceAddr(l.addr), 0))
	}
	var conn *net.UDPConn
	var err error
	if len(insts) == 1 {
		conn, err = net.DialUDP(network, laddr, net.UDPAddrFromAddrPort(first.addr))
	} else {
		conn, err = net.ListenUDP(network, laddr)
	}
	if err != nil {
		return nil, err
	}
	conn.SetReadBuffer(4 << 20)
	conn.SetWriteBuffer(4 << 20)
	w := &udpWorker{
		r:        r,
		conn:     conn,
		lane:     l,
		cyc:      newCycle(l.n, cfg.Seed^uint64(s)<<32^0x75647063),
		evs:      newLaneEvents(l.n, cfg),
		rng:      newRNG(cfg.Seed ^ uint64(s)<<40 ^ 0x7564702d726e67),
		slots:    make([]udpSlot, cfg.Window),
		free:     make([]int, 0, cfg.Window),
		outSlot:  make([]int, cfg.Window),
		insts:    insts,
		live:     len(insts),
		peerSize: 6,
		hashes:   make([]bittorrent.InfoHash, 0, MaxScrapeHashes),
		fills:    fillQueue{retry: make([]fillPeer, 0, 2*cfg.Window)},
	}
	if first.addr.Addr().Is6() {
		w.peerSize = 18
	}
	reqLen := max(udpAnnounceLen, udpScrapeHdrLen+20*cfg.ScrapeMaxHashes)
	replyLen := max(2048, udpAnnounceHdrLen+w.peerSize*cfg.NumWant+64)
	reqs := make([]byte, reqLen*cfg.Window)
	for i := range w.slots {
		w.slots[i].buf = reqs[i*reqLen : (i+1)*reqLen : (i+1)*reqLen]
		w.free = append(w.free, cfg.Window-1-i)
	}
	w.mc, err = mmsg.New(conn, cfg.Window, replyLen)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return w, nil
}

func (w *udpWorker) close()                     { w.conn.Close() }
func (w *udpWorker) stats() (warm, meas *Stats) { return &w.warm, &w.meas }
func (w *udpWorker) st(now int64) *Stats {
	if w.r.measuring(now) {
		return &w.meas
	}
	return &w.warm
}

const (
	scanEvery    = int64(10 * time.Millisecond)
	readWait     = int64(50 * time.Millisecond)
	connIDLife   = int64(2 * time.Minute)
	connIDMargin = int64(5 * time.Second)
	errBackoff   = 10 * time.Millisecond
)

func (w *udpWorker) run() {
	for w.step() {
	}
}

// step sends what the window allows, then waits for replies (at most
// readWait) and handles them. It reports whether to go on.
func (w *udpWorker) step() bool {
	now := nanotime()
	if w.r.over(now) || w.gaveUp || (w.r.cfg.Fill && w.fillDone()) {
		return false
	}
	if now >= w.nextScan {
		w.scanTimeouts(now)
		w.nextScan = now + scanEvery
	}
	w.send(now)
	if w.deadline-now < readWait/2 {
		w.deadline = now + readWait
		w.conn.SetReadDeadline(epoch.Add(time.Duration(w.deadline)))
	}
	n, err := w.mc.Read()
	now = nanotime()
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return true
		}
		if errors.Is(err, net.ErrClosed) {
			return false
		}
		// Typically ECONNREFUSED: an ICMP port unreachable came back
		// for an earlier datagram.
		w.st(now).addError(errMsg(err))
		time.Sleep(errBackoff)
		return true
	}
	for i := range n {
		reply, from := w.mc.Message(i)
		w.handle(reply, from, now)
	}
	return true
}

// fillDone reports whether the fill of this lane is over: every peer
// handed out and nothing in flight but connects.
func (w *udpWorker) fillDone() bool {
	if !w.fills.done(w.lane.n) {
		return false
	}
	connects := 0
	for k := range w.insts {
		if w.insts[k].connecting >= 0 {
			connects++
		}
	}
	return w.inflight == connects
}

// needConnect reports whether a connect to in should be sent now.
func (w *udpWorker) needConnect(in *udpInst, now int64) bool {
	if in.connecting >= 0 || in.gaveUp {
		return false
	}
	if !in.haveID {
		return true
	}
	age := now - in.idAt
	if age >= connIDLife-connIDMargin {
		in.haveID = false // expired: stop using it
		return true
	}
	return age >= int64(w.r.cfg.ConnIDRenew) || (in.renewAt != 0 && now >= in.renewAt)
}

// pick returns the instance for a request: want (mod the number of
// instances) if it has a connection id, else the next one that has; -1
// when none has.
func (w *udpWorker) pick(want int) int {
	n := len(w.insts)
	for j := range n {
		k := (want + j) % n
		if w.insts[k].haveID {
			return k
		}
	}
	return -1
}

func (w *udpWorker) anyID() bool { return w.pick(0) >= 0 }

// take claims a free slot and starts a new generation of it.
func (w *udpWorker) take() (int, *udpSlot) {
	i := w.free[len(w.free)-1]
	w.free = w.free[:len(w.free)-1]
	s := &w.slots[i]
	s.gen++
	s.busy = true
	w.inflight++
	return i, s
}

func (w *udpWorker) release(i int) {
	w.slots[i].busy = false
	w.inflight--
	w.free = append(w.free, i)
}

func (w *udpWorker) tx(i int) uint32 { return uint32(w.slots[i].gen)<<16 | uint32(i) }

// Why a UDP worker stops sending to an instance.
const (
	errGiveUpSocket   = "no reply to 3 connect requests: giving up on this socket"
	errGiveUpInstance = "no reply to 3 connect requests: giving up on this instance (from this socket)"
)

// send fills every free slot with a request and sends them in batches.
func (w *udpWorker) send(now int64) {
	cfg := w.r.cfg
	n := 0
	for k := range w.insts {
		in := &w.insts[k]
		if len(w.free) == 0 || !w.needConnect(in, now) {
			continue
		}
		if !in.everID && in.connTries >= 3 {
			// Three connects went unanswered: the tracker is not
			// there. Stop rather than time out for the whole run.
			in.gaveUp = true
			w.live--
			if len(w.insts) == 1 {
				w.st(now).addError(errGiveUpSocket)
			} else {
				w.st(now).addError(errGiveUpInstance)
			}
			if w.live == 0 {
				w.gaveUp = true
				return
			}
			continue
		}
		i, s := w.take()
		s.kind, s.sent, s.tmpl, s.inst = kindConnect, now, false, uint8(k)
		w.mc.Queue(putConnect(s.buf, w.tx(i)), in.addr)
		w.outSlot[n] = i
		in.connecting = i
		in.renewAt = 0
		if !in.everID {
			in.connTries++
		}
		n++
	}
	for len(w.free) > 0 && w.anyID() {
		if cfg.Fill && w.fills.done(w.lane.n) {
			break
		}
		var msg []byte
		i, s := w.take()
		s.sent = now
		switch {
		case cfg.Fill:
			f := w.fills.next()
			s.fill = f
			s.inst = uint8(w.pick(int(f.local)))
			msg = w.announce(i, s, int(f.local), true, true)
		case cfg.isScrape(&w.rng):
			w.rr++
			s.inst = uint8(w.pick(w.rr))
			msg = w.scrape(i, s)
		default:
			// A roaming peer's k-th announce goes to instance
			// (its index + k) mod N.
			round := w.cyc.round
			local, first := w.cyc.next()
			s.inst = uint8(w.pick(local + round))
			msg = w.announce(i, s, local, first, false)
		}
		w.mc.Queue(msg, w.insts[s.inst].addr)
		w.outSlot[n] = i
		n++
	}
	if n == 0 {
		return
	}
	sent, err := w.mc.Flush()
	st := w.st(now)
	st.Sent += uint64(sent)
	if err == nil {
		return
	}
	// Give back the slots of the datagrams not sent (typically the one
	// that met the ECONNREFUSED of an ICMP port unreachable; the others
	// went out).
	for j := range n {
		e := w.mc.Err(j)
		if e == nil {
			continue
		}
		st.addError(errMsg(e))
		i := w.outSlot[j]
		if in := &w.insts[w.slots[i].inst]; i == in.connecting {
			in.connecting = -1
		}
		if cfg.Fill && w.slots[i].kind == kindAnnounce {
			w.fills.retry = append(w.fills.retry, w.slots[i].fill)
		}
		w.release(i)
	}
	time.Sleep(errBackoff)
}

// announce builds an announce for the lane's peer local in slot i: its
// first of the run (first) or a later one; a fill announces started and
// nothing else.
func (w *udpWorker) announce(i int, s *udpSlot, local int, first, fill bool) []byte {
	if !s.tmpl {
		initAnnounce(s.buf, w.r.cfg.NumWant)
		s.tmpl = true
	}
	s.kind = kindAnnounce
	w.r.wl.Peer(w.lane.peer(local, w.r.wl.addrs), &w.peer)
	ev := evStarted
	if !fill {
		ev = w.evs.next(&w.rng, w.r.cfg, local, first, w.peer.Seeder)
	}
	b := s.buf[:udpAnnounceLen]
	patchAnnounce(b, w.insts[s.inst].connID, w.tx(i), &w.peer, ev)
	return b
}

// scrape builds a scrape of 1..ScrapeMaxHashes distinct torrents, picked
// by popularity (the torrents of random peers), in slot i.
func (w *udpWorker) scrape(i int, s *udpSlot) []byte {
	w.hashes = pickScrape(&w.rng, w.r.wl, w.r.cfg.ScrapeMaxHashes, w.hashes[:0])
	s.kind, s.hashes, s.tmpl = kindScrape, uint8(len(w.hashes)), false
	return putScrape(s.buf, w.insts[s.inst].connID, w.tx(i), w.hashes)
}

// pickScrape appends 1..most distinct info hashes of torrents picked in
// proportion to their peers.
func pickScrape(r *rng, wl *Workload, most int, dst []bittorrent.InfoHash) []bittorrent.InfoHash {
	k := 1 + r.intn(most)
	var picked [MaxScrapeHashes]int
	for tries := 0; len(dst) < k && tries < 4*k; tries++ {
		t := wl.TorrentOf(r.intn(wl.peers))
		dup := false
		for _, p := range picked[:len(dst)] {
			dup = dup || p == t
		}
		if !dup {
			picked[len(dst)] = t
			dst = append(dst, wl.InfoHash(t))
		}
	}
	return dst
}

// handle checks one reply, from from, and accounts for it.
func (w *udpWorker) handle(b []byte, from netip.AddrPort, now int64) {
	st := w.st(now)
	if len(b) < 8 {
		st.addError(errShort.Error())
		return
	}
	tx := binary.BigEndian.Uint32(b[4:])
	i, gen := int(tx&0xffff), uint16(tx>>16)
	if i >= len(w.slots) {
		st.addError(errUnknownTx.Error())
		return
	}
	s := &w.slots[i]
	if !s.busy || s.gen != gen {
		if s.stale && s.staleGen == gen {
			s.stale = false
			st.Late++
			return
		}
		st.addError(errUnknownTx.Error())
		return
	}
	in := &w.insts[s.inst]
	if in.addr.IsValid() && (from.Addr().Unmap() != in.addr.Addr() || from.Port() != in.addr.Port()) {
		// The request went to another instance: not its reply.
		st.addError(errWrongSender.Error())
		return
	}
	got, err := checkUDPReply(b, udpWant{
		action:   uint32(s.kind),
		tx:       tx,
		numwant:  w.r.cfg.NumWant,
		hashes:   int(s.hashes),
		peerSize: w.peerSize,
	})
	kind := s.kind
	w.release(i)
	if kind == kindConnect {
		in.connecting = -1
	}
	if err != nil {
		st.addError(udpErrMsg(kind, err))
		var te *TrackerError
		if errors.As(err, &te) && kind != kindConnect && in.renewAt == 0 && now-in.idAt > int64(time.Second) {
			// The id may be the problem: renew it, at most once a
			// second.
			in.renewAt = now
		}
		return
	}
	st.Responses++
	st.PerTarget[in.index]++
	st.Latency.Record(time.Duration(now - s.sent))
	switch kind {
	case kindConnect:
		st.Connects++
		in.connID, in.haveID, in.everID, in.idAt = got.connID, true, true, s.sent
	case kindAnnounce:
		st.Announces++
		st.Peers += uint64(got.peers)
	case kindScrape:
		st.Scrapes++
	}
}

func udpErrMsg(kind uint8, err error) string {
	what := [...]string{"connect", "announce", "scrape"}[kind]
	return what + ": " + err.Error()
}

// scanTimeouts frees the slots of requests unanswered after the timeout.
// In a fill, the peer is announced again (up to fillTries times).
func (w *udpWorker) scanTimeouts(now int64) {
	limit := int64(w.r.cfg.Timeout)
	for i := range w.slots {
		s := &w.slots[i]
		if !s.busy || now-s.sent <= limit {
			continue
		}
		w.st(now).Timeouts++
		s.stale, s.staleGen = true, s.gen
		if s.kind == kindConnect {
			w.insts[s.inst].connecting = -1
		}
		if w.r.cfg.Fill && s.kind == kindAnnounce && s.fill.tries < fillTries {
			w.fills.retry = append(w.fills.retry, s.fill)
		}
		w.release(i)
	}
}
