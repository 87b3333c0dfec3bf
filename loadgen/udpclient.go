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
	busy     bool
	stale    bool
	tmpl     bool // buf holds the announce template
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
// lane of peers with a window of requests in flight.
type udpWorker struct {
	r    *runner
	conn *net.UDPConn
	mc   *mmsg.Conn // batched I/O on conn: Window datagrams each way
	lane lane
	cyc  cycle
	rng  rng

	slots    []udpSlot
	free     []int
	inflight int
	outSlot  []int // slot of each datagram queued on mc

	connID     uint64
	haveID     bool
	everID     bool
	idAt       int64 // when the current id was asked for
	connecting int   // slot of the connect in flight, or -1
	connTries  int   // connects sent without a reply, before the first id
	renewAt    int64 // renew early after an error reply (0: no)
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
	network := "udp4"
	if r.tgt.addr.Addr().Is6() {
		network = "udp6"
	}
	var laddr *net.UDPAddr
	l := r.wl.lane(s, count)
	if r.tgt.bind {
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(SourceAddr(l.addr), 0))
	}
	conn, err := net.DialUDP(network, laddr, net.UDPAddrFromAddrPort(r.tgt.addr))
	if err != nil {
		return nil, err
	}
	conn.SetReadBuffer(4 << 20)
	conn.SetWriteBuffer(4 << 20)
	w := &udpWorker{
		r:          r,
		conn:       conn,
		lane:       l,
		cyc:        newCycle(l.n, cfg.Seed^uint64(s)<<32^0x75647063),
		rng:        newRNG(cfg.Seed ^ uint64(s)<<40 ^ 0x7564702d726e67),
		slots:      make([]udpSlot, cfg.Window),
		free:       make([]int, 0, cfg.Window),
		outSlot:    make([]int, cfg.Window),
		connecting: -1,
		peerSize:   6,
		hashes:     make([]bittorrent.InfoHash, 0, MaxScrapeHashes),
		fills:      fillQueue{retry: make([]fillPeer, 0, 2*cfg.Window)},
	}
	if r.tgt.addr.Addr().Is6() {
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
		reply, _ := w.mc.Message(i)
		w.handle(reply, now)
	}
	return true
}

// fillDone reports whether the fill of this lane is over.
func (w *udpWorker) fillDone() bool {
	return w.fills.done(w.lane.n) && (w.inflight == 0 || w.inflight == 1 && w.connecting >= 0)
}

// needConnect reports whether a connect should be sent now.
func (w *udpWorker) needConnect(now int64) bool {
	if w.connecting >= 0 {
		return false
	}
	if !w.haveID {
		return true
	}
	age := now - w.idAt
	if age >= connIDLife-connIDMargin {
		w.haveID = false // expired: stop using it
		return true
	}
	return age >= int64(w.r.cfg.ConnIDRenew) || (w.renewAt != 0 && now >= w.renewAt)
}

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

// send fills every free slot with a request and sends them in batches.
func (w *udpWorker) send(now int64) {
	cfg := w.r.cfg
	n := 0
	if len(w.free) > 0 && w.needConnect(now) {
		if !w.everID && w.connTries >= 3 {
			// Three connects went unanswered: the tracker is not
			// there. Stop rather than time out for the whole run.
			w.st(now).addError("no reply to 3 connect requests: giving up on this socket")
			w.gaveUp = true
			return
		}
		i, s := w.take()
		s.kind, s.sent, s.tmpl = kindConnect, now, false
		w.mc.Queue(putConnect(s.buf, w.tx(i)), netip.AddrPort{})
		w.outSlot[n] = i
		w.connecting = i
		w.renewAt = 0
		if !w.everID {
			w.connTries++
		}
		n++
	}
	for w.haveID && len(w.free) > 0 {
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
			msg = w.announce(i, s, int(f.local), true)
		case cfg.ScrapeShare > 0 && w.rng.chance(cfg.ScrapeShare):
			msg = w.scrape(i, s)
		default:
			local, first := w.cyc.next()
			msg = w.announce(i, s, local, first)
		}
		w.mc.Queue(msg, netip.AddrPort{}) // the connected target
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
		if i == w.connecting {
			w.connecting = -1
		}
		if cfg.Fill && w.slots[i].kind == kindAnnounce {
			w.fills.retry = append(w.fills.retry, w.slots[i].fill)
		}
		w.release(i)
	}
	time.Sleep(errBackoff)
}

// announce builds an announce for the lane's peer local in slot i.
func (w *udpWorker) announce(i int, s *udpSlot, local int, started bool) []byte {
	if !s.tmpl {
		initAnnounce(s.buf, w.r.cfg.NumWant)
		s.tmpl = true
	}
	s.kind = kindAnnounce
	w.r.wl.Peer(w.lane.peer(local, w.r.wl.addrs), &w.peer)
	b := s.buf[:udpAnnounceLen]
	patchAnnounce(b, w.connID, w.tx(i), &w.peer, started)
	return b
}

// scrape builds a scrape of 1..ScrapeMaxHashes distinct torrents, picked
// by popularity (the torrents of random peers), in slot i.
func (w *udpWorker) scrape(i int, s *udpSlot) []byte {
	w.hashes = pickScrape(&w.rng, w.r.wl, w.r.cfg.ScrapeMaxHashes, w.hashes[:0])
	s.kind, s.hashes, s.tmpl = kindScrape, uint8(len(w.hashes)), false
	return putScrape(s.buf, w.connID, w.tx(i), w.hashes)
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

// handle checks one reply and accounts for it.
func (w *udpWorker) handle(b []byte, now int64) {
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
		w.connecting = -1
	}
	if err != nil {
		st.addError(udpErrMsg(kind, err))
		var te *TrackerError
		if errors.As(err, &te) && kind != kindConnect && w.renewAt == 0 && now-w.idAt > int64(time.Second) {
			// The id may be the problem: renew it, at most once a
			// second.
			w.renewAt = now
		}
		return
	}
	st.Responses++
	st.Latency.Record(time.Duration(now - s.sent))
	switch kind {
	case kindConnect:
		st.Connects++
		w.connID, w.haveID, w.everID, w.idAt = got.connID, true, true, s.sent
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
			w.connecting = -1
		}
		if w.r.cfg.Fill && s.kind == kindAnnounce && s.fill.tries < fillTries {
			w.fills.retry = append(w.fills.retry, s.fill)
		}
		w.release(i)
	}
}
