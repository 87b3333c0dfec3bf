package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"trackd/bittorrent"
)

// The WebSocket mode: every connection is one simulated browser, a peer id
// bound to a socket, announcing on the torrents of its lane of the
// workload (Config.WSTorrents of them, dealt by the popularity model), each
// announce carrying Config.WSOffers offers; it answers every offer relayed
// to it and checks every message. One goroutine per connection does all of
// the connection's reading and writing.

// wsShards is the number of locked Stats the connections share (per
// connection Stats with their histograms would cost more memory than the
// connections themselves at 100,000 connections).
const wsShards = 64

type wsShard struct {
	mu         sync.Mutex
	warm, meas Stats
	_          [64]byte
}

// wsRun is what the connections of a WebSocket run share.
type wsRun struct {
	salt    uint64
	sdps    *wsSDPs
	peerIDs [][20]byte // peer id of every connection
	shards  [wsShards]wsShard
	dialSem chan struct{} // bounds dials (and first announces) in flight

	// Idle mode.
	ready, failed atomic.Int64 // connections announced / given up
	holdEnd       atomic.Int64 // nanotime the hold ends; 0 until all are ready
	alive         atomic.Int64 // connections open at the end of the hold
}

func newWSRun(r *runner, n int) *wsRun {
	cfg := r.cfg
	ws := &wsRun{
		salt:    mix64(cfg.Seed ^ 0x77732d73616c74),
		sdps:    newWSSDPs(cfg.WSSDPBytes),
		peerIDs: make([][20]byte, n),
		dialSem: make(chan struct{}, wsConnectAtOnce),
	}
	var p Peer
	for s := range n {
		l := r.wl.lane(s, n)
		if l.n > 0 {
			r.wl.Peer(l.peer(0, r.wl.addrs), &p)
		}
		ws.peerIDs[s] = p.ID
	}
	return ws
}

func (ws *wsRun) peerOf(conn uint32) ([20]byte, bool) {
	if int(conn) >= len(ws.peerIDs) {
		return [20]byte{}, false
	}
	return ws.peerIDs[conn], true
}

// wsPending is an announce in flight.
type wsPending struct {
	sent int64
	ih   bittorrent.InfoHash
}

type wsWorker struct {
	r    *runner
	ws   *wsRun
	idx  uint32
	lane lane
	cyc  cycle
	rng  rng

	dialer  net.Dialer
	addr    string
	conn    net.Conn
	e       wsEndpoint
	pending []wsPending
	head    int
	count   int
	seq     uint32
	dlSet   int64
	next    int64 // earliest time of the next announce (WSPace)

	m        wsMsg
	chk      wsChecker
	buf      []byte
	scratch  []byte
	ids      [][20]byte
	peer     Peer
	fails    int
	everConn bool
}

func newWSWorker(r *runner, ws *wsRun, s, count int) *wsWorker {
	cfg := r.cfg
	l := r.wl.lane(s, count)
	w := &wsWorker{
		r:       r,
		ws:      ws,
		idx:     uint32(s),
		lane:    l,
		cyc:     newCycle(l.n, cfg.Seed^uint64(s)<<32^0x7773),
		rng:     newRNG(cfg.Seed ^ uint64(s)<<40 ^ 0x77732d726e67),
		dialer:  net.Dialer{Timeout: cfg.Timeout, Control: bindNoPort},
		addr:    r.tgt.addr.String(),
		pending: make([]wsPending, cfg.WSWindow),
		chk:     wsChecker{salt: ws.salt, sdps: ws.sdps},
	}
	w.e.rng = newRNG(cfg.Seed ^ uint64(s)<<24 ^ 0x6d61736b)
	w.e.client = true
	w.e.max = wsMaxMessage
	if r.tgt.bind {
		w.dialer.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(SourceAddr(l.addr), 0))
	}
	return w
}

// wsMaxMessage bounds the messages the generator reads.
const wsMaxMessage = 1 << 20

func (w *wsWorker) stats() (warm, meas *Stats) { return nil, nil }
func (w *wsWorker) close()                     { w.drop() }

// lock returns the Stats a thing seen at now counts in, locked; unlock
// with w.unlock.
func (w *wsWorker) lock(now int64) *Stats {
	sh := &w.ws.shards[w.idx%wsShards]
	sh.mu.Lock()
	if w.r.measuring(now) {
		return &sh.meas
	}
	return &sh.warm
}

func (w *wsWorker) unlock() { w.ws.shards[w.idx%wsShards].mu.Unlock() }

func (w *wsWorker) addError(now int64, msg string) {
	st := w.lock(now)
	st.addError(msg)
	w.unlock()
}

func (w *wsWorker) drop() {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
	w.count, w.head = 0, 0
}

// over reports whether the run is over for this connection.
func (w *wsWorker) over(now int64) bool {
	if w.r.cfg.WSIdle > 0 {
		end := w.ws.holdEnd.Load()
		return w.r.stop.Load() || end != 0 && now >= end
	}
	return w.r.over(now)
}

// dial opens the connection and does the handshake. After three failures
// without ever having connected, the worker gives up.
func (w *wsWorker) dial() bool {
	for w.fails < 3 || w.everConn {
		now := nanotime()
		if w.over(now) {
			return false
		}
		conn, err := w.dialer.Dial("tcp", w.addr)
		if err == nil {
			conn.(*net.TCPConn).SetNoDelay(true)
			if w.e.br == nil {
				// Held idle connections keep small buffers: a big message
				// bypasses them.
				rs, ws := 2048, 4096
				if w.r.cfg.WSIdle > 0 {
					rs, ws = 512, 512
				}
				w.e.br = bufio.NewReaderSize(conn, rs)
				w.e.bw = bufio.NewWriterSize(conn, ws)
			} else {
				w.e.br.Reset(conn)
				w.e.bw.Reset(conn)
			}
			conn.SetDeadline(time.Now().Add(w.r.cfg.Timeout))
			err = wsClientHandshake(conn, w.e.br, w.e.bw, w.r.tgt.host, w.r.tgt.path, &w.rng)
			if err == nil {
				// Writes never wait past the end of the run.
				conn.SetDeadline(time.Time{})
				conn.SetWriteDeadline(time.Now().Add(w.r.cfg.maxTime()))
				w.conn, w.e.conn, w.dlSet = conn, conn, 0
				w.e.rd, w.e.msg = wsReadState{}, w.e.msg[:0]
				w.everConn = true
				st := w.lock(nanotime())
				st.Connects++
				w.unlock()
				return true
			}
			conn.Close()
		}
		w.addError(nanotime(), "connect: "+errMsg(err))
		w.fails++
		if w.everConn {
			time.Sleep(errBackoff)
		}
	}
	return false
}

// connectAll opens the connections of ws workers, wsConnectAtOnce at a
// time, one try each.
func connectAll(ctx context.Context, workers []worker) {
	sem := make(chan struct{}, wsConnectAtOnce)
	var wg sync.WaitGroup
	for _, w := range workers {
		if ctx.Err() != nil {
			break
		}
		w := w.(*wsWorker)
		if w.lane.n == 0 {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fails := w.fails
			w.fails = 2 // one try
			w.dial()
			w.fails = fails + w.fails - 2
		})
	}
	wg.Wait()
}

// wsConnectAtOnce bounds the handshakes in flight while connections are
// opened.
const wsConnectAtOnce = 256

func (w *wsWorker) run() {
	defer w.drop()
	if w.lane.n == 0 {
		return
	}
	if w.r.cfg.WSIdle > 0 {
		w.runIdle()
		return
	}
	for {
		now := nanotime()
		if w.over(now) {
			return
		}
		if w.conn == nil && !w.dial() {
			return
		}
		for w.count < len(w.pending) && now >= w.next {
			if err := w.announce(now); err != nil {
				w.lost(now, "writing: "+errMsg(err))
				break
			}
			w.next = now + int64(w.r.cfg.WSPace)
		}
		if w.conn == nil {
			continue
		}
		msg, err := w.read(now)
		now = nanotime()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if w.count > 0 && now >= w.pending[w.head].sent+int64(w.r.cfg.Timeout) {
					st := w.lock(now)
					st.Timeouts += uint64(w.count)
					w.unlock()
					w.count = 0
				}
				continue
			}
			if w.over(now) {
				return
			}
			w.lost(now, "reading: "+errMsg(err))
			continue
		}
		if err := w.handle(msg, now); err != nil {
			w.lost(now, "writing: "+errMsg(err))
		}
	}
}

// read flushes what is queued if nothing is buffered to read, and reads
// the next message, waiting at most until the oldest announce times out,
// the run ends, or a quarter second (to notice a stop).
func (w *wsWorker) read(now int64) ([]byte, error) {
	if w.e.br.Buffered() == 0 && w.e.bw.Buffered() > 0 {
		if err := w.e.flush(); err != nil {
			return nil, err
		}
	}
	dl := now + int64(250*time.Millisecond)
	if w.count > 0 {
		dl = min(dl, w.pending[w.head].sent+int64(w.r.cfg.Timeout))
	}
	if w.count < len(w.pending) && w.r.cfg.WSIdle == 0 {
		dl = min(dl, max(w.next, now+int64(time.Millisecond))) // the next paced announce
	}
	if w.r.cfg.WSIdle == 0 {
		dl = min(dl, w.r.end)
	} else if end := w.ws.holdEnd.Load(); end != 0 {
		dl = min(dl, end)
	}
	// Deadlines are moved only when they change by more than a
	// millisecond: each change costs a timer update.
	if d := dl - w.dlSet; d > int64(time.Millisecond) || d < -int64(time.Millisecond) {
		w.dlSet = dl
		w.conn.SetReadDeadline(epoch.Add(time.Duration(dl)))
	}
	return w.e.readMessage()
}

// lost counts the announces in flight on a failed connection as errors
// and drops it; the next loop dials again.
func (w *wsWorker) lost(now int64, msg string) {
	st := w.lock(now)
	st.addErrors(msg, uint64(max(w.count, 1)))
	w.unlock()
	w.drop()
}

// announce queues the next announce of the connection's lane.
func (w *wsWorker) announce(now int64) error {
	cfg := w.r.cfg
	local, first := w.cyc.next()
	w.r.wl.Peer(w.lane.peer(local, w.r.wl.addrs), &w.peer)
	a := wsAnnounce{
		infoHash: w.peer.InfoHash,
		peerID:   w.ws.peerIDs[w.idx],
		numWant:  cfg.WSOffers,
		left:     1 << 30,
	}
	if w.peer.Seeder {
		a.left = 0
	}
	if first {
		a.event = "started"
	}
	w.ids = w.ids[:0]
	for range cfg.WSOffers {
		w.ids = append(w.ids, wsOfferID(w.idx, w.seq, now, &a.infoHash, w.ws.salt))
		w.seq++
	}
	w.buf = appendWSAnnounce(w.buf[:0], &a, w.ids, w.ws.sdps, &w.scratch)
	p := &w.pending[(w.head+w.count)%len(w.pending)]
	p.sent, p.ih = now, a.infoHash
	w.count++
	st := w.lock(now)
	st.Sent++
	st.OffersSent += uint64(cfg.WSOffers)
	w.unlock()
	return w.e.writeText(w.buf)
}

// handle checks one message and acts on it: an announce reply ends its
// announce, an offer is answered, an answer is timed.
func (w *wsWorker) handle(msg []byte, now int64) error {
	if err := parseWSMsg(msg, &w.m); err != nil {
		w.addError(now, "bad message: "+err.Error())
		return nil
	}
	kind, err := w.chk.classify(&w.m)
	if err != nil {
		if w.m.has&wsHasInfoHash != 0 {
			w.reply(bittorrent.InfoHash(w.m.infoHash))
		}
		w.addError(now, err.Error())
		return nil
	}
	switch kind {
	case wsKindReply:
		p, ok := w.reply(bittorrent.InfoHash(w.m.infoHash))
		st := w.lock(now)
		if ok {
			st.Responses++
			st.Announces++
			st.Latency.Record(time.Duration(now - p.sent))
		} else {
			st.Late++
		}
		w.unlock()
	case wsKindOffer:
		from, err := w.chk.checkOffer(&w.m, w.ws.peerOf)
		if err != nil {
			w.addError(now, err.Error())
			return nil
		}
		st := w.lock(now)
		st.OffersReceived++
		if from == w.idx {
			st.OffersToSelf++
		}
		answer := !w.over(now)
		if answer {
			st.AnswersSent++
		}
		w.unlock()
		if answer {
			ih := bittorrent.InfoHash(w.m.infoHash)
			own := w.ws.peerIDs[w.idx]
			w.buf = appendWSAnswer(w.buf[:0], &ih, &own, &w.m.peerID, &w.m.offerID, w.ws.sdps, &w.scratch)
			return w.e.writeText(w.buf)
		}
	case wsKindAnswer:
		sent, err := w.chk.checkAnswer(&w.m, w.idx)
		if err != nil {
			w.addError(now, err.Error())
			return nil
		}
		st := w.lock(now)
		st.AnswersReceived++
		st.AnswerLatency.Record(time.Duration(now - sent))
		w.unlock()
	}
	return nil
}

// reply removes the announce in flight for ih (the oldest if several), if
// there is one.
func (w *wsWorker) reply(ih bittorrent.InfoHash) (wsPending, bool) {
	n := len(w.pending)
	for k := range w.count {
		i := (w.head + k) % n
		if w.pending[i].ih != ih {
			continue
		}
		p := w.pending[i]
		// Close the gap: move the older ones up by one.
		for j := k; j > 0; j-- {
			w.pending[(w.head+j)%n] = w.pending[(w.head+j-1)%n]
		}
		w.head = (w.head + 1) % n
		w.count--
		return p, true
	}
	return wsPending{}, false
}

// runIdle opens the connection, announces once and waits for the reply
// (answering offers meanwhile), then holds the connection, answering pings
// and offers, until the hold ends.
func (w *wsWorker) runIdle() {
	w.ws.dialSem <- struct{}{}
	released := false
	release := func(ok bool) {
		if !released {
			released = true
			<-w.ws.dialSem
			if ok {
				w.ws.ready.Add(1)
			} else {
				w.ws.failed.Add(1)
			}
		}
	}
	defer release(false)
	w.fails = 2 // one try: a refused connection in a hold is an error, not a retry
	if !w.dial() {
		return
	}
	now := nanotime()
	if err := w.announce(now); err != nil {
		w.lost(now, "writing: "+errMsg(err))
		return
	}
	for {
		msg, err := w.read(now)
		now = nanotime()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if w.over(now) {
					if released {
						w.ws.alive.Add(1)
					}
					return
				}
				if w.count > 0 && now >= w.pending[w.head].sent+int64(w.r.cfg.Timeout) {
					st := w.lock(now)
					st.Timeouts++
					w.unlock()
					return
				}
				continue
			}
			if errors.Is(err, io.EOF) || errors.Is(err, errWSClosed) {
				w.addError(now, "idle: closed by the tracker: "+errMsg(err))
			} else {
				w.addError(now, "idle: reading: "+errMsg(err))
			}
			return
		}
		if err := w.handle(msg, now); err != nil {
			w.addError(now, "idle: writing: "+errMsg(err))
			return
		}
		if !released && w.count == 0 {
			release(true)
			// Held connections keep no big buffers of ours.
			w.buf, w.scratch, w.ids = nil, nil, nil
			w.chk.want, w.chk.got, w.chk.esc = nil, nil, nil
			w.e.out = nil
			if cap(w.e.msg) > 2048 {
				w.e.msg = nil
			}
		}
	}
}

// waitIdle waits until every connection of an idle run is announced or
// has given up, then starts the hold and reports it on progress.
func (ws *wsRun) waitIdle(r *runner, n int, progress io.Writer) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !r.stop.Load() {
		<-t.C
		ready, failed := ws.ready.Load(), ws.failed.Load()
		if ready+failed < int64(n) {
			continue
		}
		now := nanotime()
		ws.holdEnd.Store(now + int64(r.cfg.WSIdle))
		r.measStart = now
		if progress != nil {
			fmt.Fprintf(progress, "ws idle: %d connections open and announced, %d failed, in %.2f s; holding them for %s\n",
				ready, failed, time.Duration(now-r.start).Seconds(), r.cfg.WSIdle)
		}
		return
	}
}

// mergeWS adds the shards' Stats.
func (ws *wsRun) merged() (warm, meas Stats) {
	for i := range ws.shards {
		sh := &ws.shards[i]
		sh.mu.Lock()
		warm.Merge(&sh.warm)
		meas.Merge(&sh.meas)
		sh.mu.Unlock()
	}
	return warm, meas
}
