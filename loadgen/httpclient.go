package loadgen

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"trackd/bittorrent"
)

// httpPending is a request written and not yet answered.
type httpPending struct {
	sent   int64
	kind   uint8
	nh     uint8
	inst   uint8 // the instance (index in httpWorker.insts) it went to
	fill   fillPeer
	hashes [MaxScrapeHashes]bittorrent.InfoHash
}

// httpInst is an instance an HTTP worker sends to, and its connection
// there.
type httpInst struct {
	index      int    // in the runner's targets
	addr       string // host:port to dial
	areq, sreq httpReq
	conn       *net.TCPConn
	rw         net.Conn // conn, or the TLS connection over it
	tls        *tls.Config
	br         *bufio.Reader
	bw         *bufio.Writer
	deadline   int64
	unflushed  int // requests queued in bw, not yet written
}

// httpWorker is one HTTP connection, bound to one source address, playing
// one lane of peers. With keep-alive it pipelines up to the window of
// requests; with HTTPClose it opens a connection for every request. When
// it roams over a fleet it keeps a connection to each instance and sends
// each request on the one its peer's turn picks; the window is shared,
// and replies are read in the order the requests were sent.
type httpWorker struct {
	r      *runner
	lane   lane
	cyc    cycle
	evs    laneEvents
	rng    rng
	dialer net.Dialer

	insts       []httpInst
	ring        []httpPending
	head, count int
	unflushed   int // requests queued in all bws, not yet written
	window      int
	rr          int // round-robin of the scrapes over the instances

	buf, body []byte
	peer      Peer
	hashes    []bittorrent.InfoHash

	fills      fillQueue
	dialFails  int
	dialAt     int64
	everConn   bool
	gaveUp     bool
	warm, meas Stats
}

func newHTTPWorker(r *runner, s, count int) *httpWorker {
	cfg := r.cfg
	l := r.wl.lane(s, count)
	tgts := r.tgts
	if len(tgts) == 0 {
		tgts = []target{r.tgt}
	}
	w := &httpWorker{
		r:      r,
		lane:   l,
		cyc:    newCycle(l.n, cfg.Seed^uint64(s)<<32^0x68747470),
		evs:    newLaneEvents(l.n, cfg),
		rng:    newRNG(cfg.Seed ^ uint64(s)<<40 ^ 0x687474702d726e67),
		dialer: net.Dialer{Timeout: cfg.Timeout},
		window: cfg.Window,
		buf:    make([]byte, 0, 2048),
		body:   make([]byte, 0, 4096),
		hashes: make([]bittorrent.InfoHash, 0, MaxScrapeHashes),
		fills:  fillQueue{retry: make([]fillPeer, 0, 2*cfg.Window)},
	}
	// Sticking to one instance, worker s sends to instance s mod N;
	// roaming, to all of them.
	mine := []int{s % len(tgts)}
	if cfg.Roam && len(tgts) > 1 {
		mine = mine[:0]
		for i := range tgts {
			mine = append(mine, i)
		}
	}
	for _, i := range mine {
		t := tgts[i]
		w.insts = append(w.insts, httpInst{
			index: i,
			addr:  t.addr.String(),
			areq:  httpReq{path: t.path, host: t.host, close: cfg.HTTPClose},
			sreq:  httpReq{path: t.spath, host: t.host, close: cfg.HTTPClose},
			br:    bufio.NewReaderSize(nil, 32<<10),
			bw:    bufio.NewWriterSize(nil, 32<<10),
			tls:   newClientTLS(cfg, t),
		})
	}
	if cfg.HTTPClose {
		w.window = 1
	}
	w.ring = make([]httpPending, w.window)
	if tgts[0].bind {
		w.dialer.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(SourceAddr(l.addr), 0))
	}
	return w
}

func (w *httpWorker) stats() (warm, meas *Stats) { return &w.warm, &w.meas }
func (w *httpWorker) close()                     { w.drop() }

func (w *httpWorker) st(now int64) *Stats {
	if w.r.measuring(now) {
		return &w.meas
	}
	return &w.warm
}

// drop closes the connections, if any, without lingering (in -http-close
// mode that keeps TIME_WAIT sockets from piling up on either side), and
// forgets the requests in flight.
func (w *httpWorker) drop() {
	for k := range w.insts {
		w.dropConn(&w.insts[k])
	}
	w.count, w.head, w.unflushed = 0, 0, 0
}

func (w *httpWorker) dropConn(in *httpInst) {
	if in.conn != nil {
		in.conn.SetLinger(0)
		in.conn.Close()
		in.conn, in.rw = nil, nil
	}
	in.unflushed = 0
}

func (w *httpWorker) fillPending() bool {
	return !w.fills.done(w.lane.n)
}

func (w *httpWorker) run() {
	cfg := w.r.cfg
	defer w.drop()
	for {
		now := nanotime()
		if w.r.over(now) || w.gaveUp || (cfg.Fill && !w.fillPending() && w.count == 0) {
			return
		}
		for w.count < w.window && (!cfg.Fill || w.fillPending()) {
			if !w.queue(nanotime()) {
				break
			}
		}
		if w.count == 0 {
			continue
		}
		// Send the queued requests only when about to wait for a reply:
		// while replies are already buffered, more requests pile up and
		// go out in one write.
		oldest := &w.ring[w.head]
		in := &w.insts[oldest.inst]
		if w.unflushed > 0 && (in.br.Buffered() == 0 || w.unflushed == w.count) {
			if !w.flush() {
				continue
			}
		}
		deadline := oldest.sent + int64(cfg.Timeout)
		if !cfg.Fill {
			deadline = min(deadline, w.r.end)
		}
		if deadline != in.deadline {
			in.deadline = deadline
			in.rw.SetReadDeadline(epoch.Add(time.Duration(deadline)))
		}
		status, body, closeConn, err := readHTTPResponse(in.br, w.body)
		w.body = body[:0]
		now = nanotime()
		if err != nil {
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded) && !cfg.Fill && now >= w.r.end:
				return // the run is over; what is in flight is not counted
			case errors.Is(err, os.ErrDeadlineExceeded):
				st := w.st(now)
				st.Timeouts += uint64(w.count)
				w.requeue()
				w.drop()
			default:
				w.lost(now, "reading reply: "+errMsg(err))
			}
			continue
		}
		p := &w.ring[w.head]
		w.head = (w.head + 1) % len(w.ring)
		w.count--
		w.check(p, status, body, now)
		if cfg.HTTPClose {
			w.dropConn(in)
		} else if closeConn {
			if w.count > 0 {
				w.lost(now, "tracker closed the connection with requests in flight (use -http-close, or -window 1)")
			}
			w.dropConn(in)
		}
	}
}

// flush writes what is queued on every connection. On an error the
// requests in flight are lost and it returns false.
func (w *httpWorker) flush() bool {
	for k := range w.insts {
		in := &w.insts[k]
		if in.unflushed == 0 {
			continue
		}
		if err := in.bw.Flush(); err != nil {
			w.lost(nanotime(), errMsg(err))
			return false
		}
		in.unflushed = 0
	}
	w.unflushed = 0
	return true
}

// dial opens the connection to in. It gives up on the worker after three
// failures if no connection ever succeeded.
func (w *httpWorker) dial(in *httpInst) bool {
	w.dialAt = nanotime()
	conn, err := w.dialer.Dial("tcp", in.addr)
	now := nanotime()
	if err != nil {
		w.st(now).addError("connect: " + errMsg(err))
		w.dialFails++
		if !w.everConn && w.dialFails >= 3 {
			w.gaveUp = true
		}
		time.Sleep(errBackoff)
		return false
	}
	in.conn = conn.(*net.TCPConn)
	in.conn.SetNoDelay(true)
	in.rw = in.conn
	in.deadline = 0
	if in.tls != nil {
		tc, err := handshake(in.conn, in.tls, w.r.cfg.Timeout)
		now = nanotime()
		if err != nil {
			w.st(now).addError("tls handshake: " + errMsg(err))
			w.dropConn(in)
			time.Sleep(errBackoff)
			return false
		}
		in.rw = tc
		if tc.ConnectionState().DidResume {
			w.st(now).Resumed++
		}
	}
	in.br.Reset(in.rw)
	in.bw.Reset(in.rw)
	w.everConn = true
	w.st(now).Connects++
	return true
}

// lost accounts for the requests in flight on a connection that failed,
// then drops it.
func (w *httpWorker) lost(now int64, msg string) {
	if w.count > 0 {
		w.st(now).addErrors(msg, uint64(w.count))
	} else {
		w.st(now).addError(msg)
	}
	w.requeue()
	w.drop()
}

// requeue puts the fill peers in flight back in line (up to fillTries).
func (w *httpWorker) requeue() {
	if !w.r.cfg.Fill {
		return
	}
	for k := range w.count {
		p := &w.ring[(w.head+k)%len(w.ring)]
		if p.kind == kindAnnounce && p.fill.tries < fillTries {
			w.fills.retry = append(w.fills.retry, p.fill)
		}
	}
}

// queue writes the next request into the buffer of its instance's
// connection, opened if need be. It reports false when that connection
// could not be opened (the request is not sent; a fill peer is tried
// again later).
func (w *httpWorker) queue(now int64) bool {
	cfg := w.r.cfg
	var (
		kind  uint8
		f     fillPeer
		local int
		first bool
		want  int
	)
	switch {
	case cfg.Fill:
		f = w.fills.next()
		kind, local, first, want = kindAnnounce, int(f.local), true, int(f.local)
	case cfg.isScrape(&w.rng):
		w.rr++
		kind, want = kindScrape, w.rr
	default:
		// A roaming peer's k-th announce goes to instance (its index +
		// k) mod N.
		round := w.cyc.round
		local, first = w.cyc.next()
		kind, want = kindAnnounce, local+round
	}
	k := want % len(w.insts)
	in := &w.insts[k]
	if in.conn == nil && !w.dial(in) {
		if cfg.Fill && f.tries < fillTries {
			w.fills.retry = append(w.fills.retry, f)
		}
		return false
	}
	p := &w.ring[(w.head+w.count)%len(w.ring)]
	w.count++
	p.sent = now
	if cfg.HTTPClose {
		p.sent = w.dialAt // the connection is part of the request's cost
	}
	p.kind, p.fill, p.inst = kind, f, uint8(k)
	b := w.buf[:0]
	if kind == kindScrape {
		w.hashes = pickScrape(&w.rng, w.r.wl, cfg.ScrapeMaxHashes, w.hashes[:0])
		p.nh = uint8(copy(p.hashes[:], w.hashes))
		b = appendScrapeRequest(b, &in.sreq, w.hashes)
	} else {
		w.r.wl.Peer(w.lane.peer(local, w.r.wl.addrs), &w.peer)
		ev := evStarted
		if !cfg.Fill {
			ev = w.evs.next(&w.rng, w.r.cfg, local, first, w.peer.Seeder)
		}
		b = appendAnnounceRequest(b, &in.areq, &w.peer, ev, cfg.NumWant)
	}
	w.buf = b
	in.bw.Write(b)
	in.unflushed++
	w.unflushed++
	w.st(now).Sent++
	return true
}

// check verifies one reply and accounts for it.
func (w *httpWorker) check(p *httpPending, status int, body []byte, now int64) {
	st := w.st(now)
	what := "announce: "
	if p.kind == kindScrape {
		what = "scrape: "
	}
	if status != 200 {
		st.addError(what + "HTTP status " + strconv.Itoa(status))
		return
	}
	var err error
	peers := 0
	if p.kind == kindScrape {
		err = checkHTTPScrape(body, p.hashes[:p.nh])
	} else {
		peers, err = checkHTTPAnnounce(body, w.r.cfg.NumWant)
	}
	if err != nil {
		st.addError(what + err.Error())
		return
	}
	st.Responses++
	st.PerTarget[w.insts[p.inst].index]++
	st.Latency.Record(time.Duration(now - p.sent))
	if p.kind == kindScrape {
		st.Scrapes++
	} else {
		st.Announces++
		st.Peers += uint64(peers)
	}
}
