package loadgen

import (
	"bufio"
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
	fill   fillPeer
	hashes [MaxScrapeHashes]bittorrent.InfoHash
}

// httpWorker is one HTTP connection, bound to one source address, playing
// one lane of peers. With keep-alive it pipelines up to the window of
// requests; with HTTPClose it opens a connection for every request.
type httpWorker struct {
	r      *runner
	lane   lane
	cyc    cycle
	rng    rng
	dialer net.Dialer
	addr   string

	conn        *net.TCPConn
	br          *bufio.Reader
	bw          *bufio.Writer
	deadline    int64
	ring        []httpPending
	head, count int
	unflushed   int // requests queued in bw, not yet written
	window      int

	areq, sreq httpReq
	buf, body  []byte
	peer       Peer
	hashes     []bittorrent.InfoHash

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
	w := &httpWorker{
		r:      r,
		lane:   l,
		cyc:    newCycle(l.n, cfg.Seed^uint64(s)<<32^0x68747470),
		rng:    newRNG(cfg.Seed ^ uint64(s)<<40 ^ 0x687474702d726e67),
		dialer: net.Dialer{Timeout: cfg.Timeout},
		addr:   r.tgt.addr.String(),
		br:     bufio.NewReaderSize(nil, 32<<10),
		bw:     bufio.NewWriterSize(nil, 32<<10),
		window: cfg.Window,
		areq:   httpReq{path: r.tgt.path, host: r.tgt.host, close: cfg.HTTPClose},
		sreq:   httpReq{path: r.tgt.spath, host: r.tgt.host, close: cfg.HTTPClose},
		buf:    make([]byte, 0, 2048),
		body:   make([]byte, 0, 4096),
		hashes: make([]bittorrent.InfoHash, 0, MaxScrapeHashes),
		fills:  fillQueue{retry: make([]fillPeer, 0, 2*cfg.Window)},
	}
	if cfg.HTTPClose {
		w.window = 1
	}
	w.ring = make([]httpPending, w.window)
	if r.tgt.bind {
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

// drop closes the connection, if any, without lingering: in -http-close
// mode that keeps TIME_WAIT sockets from piling up on either side.
func (w *httpWorker) drop() {
	if w.conn != nil {
		w.conn.SetLinger(0)
		w.conn.Close()
		w.conn = nil
	}
	w.count, w.head, w.unflushed = 0, 0, 0
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
		if w.conn == nil && !w.dial() {
			continue
		}
		for w.count < w.window && (!cfg.Fill || w.fillPending()) {
			w.queue(nanotime())
			w.unflushed++
		}
		// Send the queued requests only when about to wait for a reply:
		// while replies are already buffered, more requests pile up and
		// go out in one write.
		if w.unflushed > 0 && (w.br.Buffered() == 0 || w.unflushed == w.count) {
			if err := w.bw.Flush(); err != nil {
				w.lost(nanotime(), errMsg(err))
				continue
			}
			w.unflushed = 0
		}
		if w.count == 0 {
			continue
		}
		oldest := w.ring[w.head].sent
		deadline := oldest + int64(cfg.Timeout)
		if !cfg.Fill {
			deadline = min(deadline, w.r.end)
		}
		if deadline != w.deadline {
			w.deadline = deadline
			w.conn.SetReadDeadline(epoch.Add(time.Duration(deadline)))
		}
		status, body, closeConn, err := readHTTPResponse(w.br, w.body)
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
			w.drop()
		} else if closeConn {
			if w.count > 0 {
				w.lost(now, "tracker closed the connection with requests in flight (use -http-close, or -window 1)")
			}
			w.drop()
		}
	}
}

// dial opens the connection. It gives up on the worker after three
// failures if no connection ever succeeded.
func (w *httpWorker) dial() bool {
	w.dialAt = nanotime()
	conn, err := w.dialer.Dial("tcp", w.addr)
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
	w.conn = conn.(*net.TCPConn)
	w.conn.SetNoDelay(true)
	w.br.Reset(w.conn)
	w.bw.Reset(w.conn)
	w.deadline = 0
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

// queue writes the next request into the connection's buffer.
func (w *httpWorker) queue(now int64) {
	cfg := w.r.cfg
	p := &w.ring[(w.head+w.count)%len(w.ring)]
	w.count++
	p.sent = now
	if cfg.HTTPClose {
		p.sent = w.dialAt // the connection is part of the request's cost
	}
	b := w.buf[:0]
	switch {
	case cfg.Fill:
		f := w.fills.next()
		p.kind, p.fill = kindAnnounce, f
		w.r.wl.Peer(w.lane.peer(int(f.local), w.r.wl.addrs), &w.peer)
		b = appendAnnounceRequest(b, &w.areq, &w.peer, true, cfg.NumWant)
	case cfg.ScrapeShare > 0 && w.rng.chance(cfg.ScrapeShare):
		w.hashes = pickScrape(&w.rng, w.r.wl, cfg.ScrapeMaxHashes, w.hashes[:0])
		p.kind, p.nh = kindScrape, uint8(copy(p.hashes[:], w.hashes))
		b = appendScrapeRequest(b, &w.sreq, w.hashes)
	default:
		local, first := w.cyc.next()
		p.kind = kindAnnounce
		w.r.wl.Peer(w.lane.peer(local, w.r.wl.addrs), &w.peer)
		b = appendAnnounceRequest(b, &w.areq, &w.peer, first, cfg.NumWant)
	}
	w.buf = b
	w.bw.Write(b)
	w.st(now).Sent++
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
	st.Latency.Record(time.Duration(now - p.sent))
	if p.kind == kindScrape {
		st.Scrapes++
	} else {
		st.Announces++
		st.Peers += uint64(peers)
	}
}
