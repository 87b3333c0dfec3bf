package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMaskBytes(t *testing.T) {
	for n := range 40 {
		for pos := range 4 {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(i * 7)
			}
			want := bytes.Clone(b)
			k := [4]byte{0x12, 0x34, 0x56, 0x78}
			for i := range want {
				want[i] ^= k[(pos+i)&3]
			}
			if next := maskBytes(b, 0x12345678, pos); next != (pos+n)&3 || !bytes.Equal(b, want) {
				t.Fatalf("n %d pos %d: %x, want %x", n, pos, b, want)
			}
		}
	}
}

// wsPair returns a client and a server endpoint over loopback TCP, after
// the handshake.
func wsPair(t *testing.T) (cl, sv *wsEndpoint) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	sv = &wsEndpoint{max: 1 << 20}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		sv.conn, sv.br, sv.bw = c, bufio.NewReader(c), bufio.NewWriter(c)
		done <- wsServerHandshake(sv.br, sv.bw)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cl = &wsEndpoint{conn: c, br: bufio.NewReader(c), bw: bufio.NewWriter(c), client: true, max: 1 << 20, rng: newRNG(1)}
	r := newRNG(2)
	if err := wsClientHandshake(c, cl.br, cl.bw, "127.0.0.1", "/announce", &r); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.conn.Close(); sv.conn.Close() })
	cl.conn.SetDeadline(time.Now().Add(10 * time.Second))
	sv.conn.SetDeadline(time.Now().Add(10 * time.Second))
	return cl, sv
}

// async runs f on a goroutine and returns a channel closed when it is done.
func async(f func()) <-chan struct{} {
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	return done
}

func TestWSFraming(t *testing.T) {
	cl, sv := wsPair(t)
	// Sizes around the length encodings, both ways.
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 200000} {
		msg := bytes.Repeat([]byte("x"), n)
		for _, d := range [][2]*wsEndpoint{{cl, sv}, {sv, cl}} {
			done := async(func() { d[0].writeText(msg); d[0].flush() })
			got, err := d[1].readMessage()
			<-done
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("%d bytes, client %v: got %d bytes, %v", n, d[1].client, len(got), err)
			}
		}
	}
	// A fragmented message with a ping between its fragments: the ping is
	// answered with a pong carrying its payload, the message joined.
	<-async(func() {
		sv.bw.Write([]byte{0x01, 3, 'a', 'b', 'c'})
		sv.bw.Write([]byte{0x89, 2, 'p', 'q'})
		sv.bw.Write([]byte{0x80, 2, 'd', 'e'})
		sv.flush()
	})
	got, err := cl.readMessage()
	if err != nil || string(got) != "abcde" {
		t.Fatalf("fragmented: %q, %v", got, err)
	}
	pong := make([]byte, 8)
	if _, err := sv.br.Read(pong[:2]); err != nil || pong[0] != 0x8A || pong[1] != 0x80|2 {
		t.Fatalf("pong header %x, %v", pong[:2], err)
	}
	if _, err := sv.br.Read(pong[2:8]); err != nil {
		t.Fatal(err)
	}
	key := [4]byte(pong[2:6])
	if pong[6]^key[0] != 'p' || pong[7]^key[1] != 'q' {
		t.Errorf("pong payload %x", pong)
	}
	// Bad frames are errors.
	for _, bad := range []struct {
		frame []byte
		err   string
	}{
		{[]byte{0x82, 1, 'x'}, "binary"},
		{[]byte{0x81, 0x81, 0, 0, 0, 0, 'x'}, "masked frame from the server"},
		{[]byte{0xC1, 1, 'x'}, "reserved bits"},
		{[]byte{0x80, 1, 'x'}, "fragmentation"},
		{[]byte{0x81, 2, 0xc3, 0x28}, "not UTF-8"},
		{[]byte{0x09, 0}, "control frame"},
		{[]byte{0x81, 127, 0, 0, 0, 0, 0x10, 0, 0, 0}, "message over"},
	} {
		cl, sv := wsPair(t)
		<-async(func() { sv.bw.Write(bad.frame); sv.flush() })
		if _, err := cl.readMessage(); err == nil || !strings.Contains(err.Error(), bad.err) {
			t.Errorf("%x: %v, want %q", bad.frame, err, bad.err)
		}
	}
	// A close frame is answered and reported with its code.
	cl, sv = wsPair(t)
	<-async(func() { sv.bw.Write([]byte{0x88, 4, 0x03, 0xE8 + 1, 'h', 'i'}); sv.flush() })
	_, err = cl.readMessage()
	var ce *wsCloseError
	if !errors.As(err, &ce) || ce.code != 1001 || ce.reason != "hi" || !errors.Is(err, errWSClosed) {
		t.Errorf("close: %v", err)
	}
	if _, err := sv.readMessage(); !errors.As(err, &ce) || ce.code != 1000 {
		t.Errorf("close answered with %v", err)
	}
}

func TestWSClientHandshakeRefused(t *testing.T) {
	for _, reply := range []string{
		"HTTP/1.1 404 Not Found\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: wrong\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\n\r\n",
		"garbage\r\n\r\n",
	} {
		a, b := net.Pipe()
		go func() {
			br := bufio.NewReader(b)
			for {
				l, err := br.ReadString('\n')
				if err != nil || l == "\r\n" {
					break
				}
			}
			b.Write([]byte(reply))
			b.Close()
		}()
		r := newRNG(1)
		if err := wsClientHandshake(a, bufio.NewReader(a), bufio.NewWriter(a), "h", "/", &r); err == nil {
			t.Errorf("%q accepted", reply)
		}
		a.Close()
	}
}

// fakeWSTracker is a tiny WebSocket tracker with real swarms, for the
// generator's end-to-end tests: it relays each offer to a different random
// other peer of the swarm and each answer to its to_peer_id, as
// bittorrent-tracker does. mangle, if set, changes every relayed message;
// closeAfterReply closes every connection after its first reply.
type fakeWSTracker struct {
	ln              net.Listener
	mangle          func([]byte) []byte
	closeAfterReply bool

	mu     sync.Mutex
	swarms map[[20]byte]map[[20]byte]*fakeConn
	wg     sync.WaitGroup
}

type fakeConn struct {
	mu sync.Mutex
	e  wsEndpoint
}

func (c *fakeConn) send(msg []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.e.writeText(msg) == nil {
		c.e.flush()
	}
}

func startFakeWSTracker(t *testing.T, f *fakeWSTracker) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.ln, f.swarms = ln, make(map[[20]byte]map[[20]byte]*fakeConn)
	conns := make(chan net.Conn, 1024)
	f.wg.Go(func() {
		defer close(conns)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
			f.wg.Go(func() { f.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		for c := range conns {
			c.Close()
		}
		f.wg.Wait()
	})
	return "ws://" + ln.Addr().String() + "/announce"
}

func (f *fakeWSTracker) serve(nc net.Conn) {
	defer nc.Close()
	c := &fakeConn{e: wsEndpoint{conn: nc, br: bufio.NewReader(nc), bw: bufio.NewWriter(nc), max: 1 << 20}}
	if wsServerHandshake(c.e.br, c.e.bw) != nil {
		return
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var joined [][2][20]byte // (info hash, peer id)
	defer func() {
		f.mu.Lock()
		for _, j := range joined {
			delete(f.swarms[j[0]], j[1])
		}
		f.mu.Unlock()
	}()
	var m wsMsg
	for {
		msg, err := c.e.readMessage()
		if err != nil {
			return
		}
		if parseWSMsg(msg, &m) != nil || m.has&(wsHasInfoHash|wsHasPeerID) != wsHasInfoHash|wsHasPeerID {
			c.send([]byte(`{"failure reason":"bad message"}`))
			continue
		}
		f.mu.Lock()
		sw := f.swarms[m.infoHash]
		if sw == nil {
			sw = make(map[[20]byte]*fakeConn)
			f.swarms[m.infoHash] = sw
		}
		if sw[m.peerID] == nil {
			sw[m.peerID] = c
			joined = append(joined, [2][20]byte{m.infoHash, m.peerID})
		}
		var others []*fakeConn
		for id, o := range sw {
			if id != m.peerID {
				others = append(others, o)
			}
		}
		to := sw[m.toPeerID]
		f.mu.Unlock()
		var out [][]byte
		if m.has&wsHasAnswer != 0 {
			if to != nil {
				to.send(f.mangled(appendRelay(nil, "answer", m.answer.raw, &m.offerID, &m.peerID, &m.infoHash)))
			}
			continue
		}
		reply := appendBinaryString([]byte(`{"action":"announce","interval":120,"complete":1,"incomplete":2,"info_hash":`), m.infoHash[:])
		c.send(append(reply, '}'))
		if f.closeAfterReply {
			return
		}
		rng.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
		for i := range min(len(m.offers), len(others)) {
			o := &m.offers[i]
			out = append(out, f.mangled(appendRelay(nil, "offer", o.offer.raw, &o.id, &m.peerID, &m.infoHash)))
			others[i].send(out[len(out)-1])
		}
	}
}

func (f *fakeWSTracker) mangled(b []byte) []byte {
	if f.mangle != nil {
		return f.mangle(b)
	}
	return b
}

func wsConfig(target string) Config {
	cfg := DefaultConfig()
	cfg.WS = target
	cfg.Torrents = 20
	cfg.WSConns = 40
	cfg.WSTorrents = 2
	cfg.WSOffers = 3
	cfg.WSSDPBytes = 1500
	cfg.SourceAddrs = 4
	cfg.Duration = time.Second
	cfg.Warmup = 0
	cfg.MaxTime = 30 * time.Second
	// Long enough that a slow machine (or -race) gives no timeouts: the
	// tests check that there are none.
	cfg.Timeout = 10 * time.Second
	return cfg
}

func runWS(t *testing.T, cfg Config) *Result {
	t.Helper()
	start := time.Now()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > cfg.Warmup+cfg.Duration+cfg.WSIdle+15*time.Second {
		t.Errorf("the run took %v", d)
	}
	if len(res) != 1 || res[0].Protocol != "ws" {
		t.Fatalf("results %+v", res)
	}
	var b strings.Builder
	res[0].Format(&b)
	t.Logf("\n%s", b.String())
	return &res[0]
}

func checkWSClean(t *testing.T, r *Result) {
	t.Helper()
	if r.Errors != 0 || r.Timeouts != 0 {
		t.Errorf("%d errors, %d timeouts: %v", r.Errors, r.Timeouts, r.ErrorMessages)
	}
	if r.Announces == 0 || r.OffersReceived == 0 || r.AnswersReceived == 0 {
		t.Errorf("announces %d, offers relayed %d, answers relayed %d", r.Announces, r.OffersReceived, r.AnswersReceived)
	}
	if r.Messages != r.Announces+r.OffersReceived+r.AnswersReceived || r.MessagesPerSec <= 0 {
		t.Errorf("messages %d (%.0f/s)", r.Messages, r.MessagesPerSec)
	}
	if r.LatencyP50US <= 0 || r.AnswerP50US <= 0 || r.AnswerP99US < r.AnswerP50US {
		t.Errorf("latencies: announce p50 %v, answer p50 %v p99 %v", r.LatencyP50US, r.AnswerP50US, r.AnswerP99US)
	}
	if r.Warmup == 0 && r.Connects != uint64(r.Workers) {
		t.Errorf("%d connections opened, want %d", r.Connects, r.Workers)
	}
}

// Against the canned server every offer comes back to its sender, and
// every answer too: all counts match.
func TestWSRunAgainstCanned(t *testing.T) {
	c, err := StartCannedWS("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := runWS(t, wsConfig("ws://"+c.Addr().String()+"/announce"))
	checkWSClean(t, r)
	if r.OffersToSelf != r.OffersReceived {
		t.Errorf("offers to self %d of %d", r.OffersToSelf, r.OffersReceived)
	}
	// Every relay lands in the window but for those in flight at the end:
	// the offers of a connection's last two announces (the next announce
	// goes out on the reply, which comes before the offers), and their
	// answers.
	if r.OffersReceived < r.OffersSent-uint64(2*3*r.Workers) || r.AnswersReceived < r.AnswersSent-uint64(2*3*r.Workers) {
		t.Errorf("sent %d offers, %d relayed; %d answers, %d relayed", r.OffersSent, r.OffersReceived, r.AnswersSent, r.AnswersReceived)
	}
}

// Against a tracker with real swarms, offers go to other peers, whose
// answers come back to the sender.
func TestWSRunAgainstFakeTracker(t *testing.T) {
	addr := startFakeWSTracker(t, &fakeWSTracker{})
	cfg := wsConfig(addr)
	cfg.Warmup = 200 * time.Millisecond
	r := runWS(t, cfg)
	checkWSClean(t, r)
	if r.OffersToSelf != 0 {
		t.Errorf("%d offers relayed to their sender", r.OffersToSelf)
	}
	// Answers sent in the warm-up and relayed in the measured window count
	// on one side only: at tens of thousands a second and milliseconds of
	// latency that is up to a few hundred. A tracker that relayed answers
	// twice would be far past this bound.
	if r.AnswersReceived > r.AnswersSent+r.AnswersSent/20+uint64(3*r.Workers) {
		t.Errorf("%d answers relayed, %d sent", r.AnswersReceived, r.AnswersSent)
	}
}

// A tracker that changes what it relays is caught.
func TestWSRunCountsBadRelays(t *testing.T) {
	for _, c := range []struct {
		name   string
		mangle func([]byte) []byte
		err    string
	}{
		{"sdp changed", func(b []byte) []byte { return bytes.Replace(b, []byte("a=mid:0"), []byte("a=mid:1"), 1) }, "sdp differs"},
		{"info_hash changed", func(b []byte) []byte {
			i := bytes.LastIndex(b, []byte(`"info_hash":`))
			return append(b[:i], `"info_hash":"XXXXXXXXXXXXXXXXXXXX"}`...)
		}, "offer_id or info_hash"},
		{"not JSON", func(b []byte) []byte { return b[:len(b)-1] }, "bad message"},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr := startFakeWSTracker(t, &fakeWSTracker{mangle: c.mangle})
			cfg := wsConfig(addr)
			cfg.Duration = 500 * time.Millisecond
			r := runWS(t, cfg)
			n := uint64(0)
			for m, k := range r.ErrorMessages {
				if strings.Contains(m, c.err) {
					n += k
				}
			}
			if n == 0 || n != r.Errors || r.AnswersReceived != 0 {
				t.Errorf("errors %v, answers relayed %d", r.ErrorMessages, r.AnswersReceived)
			}
		})
	}
}

func TestWSIdle(t *testing.T) {
	c, err := StartCannedWS("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := wsConfig(c.Addr().String())
	cfg.WSConns = 300
	cfg.WSIdle = 300 * time.Millisecond
	var progress strings.Builder
	cfg.Progress = &progress
	r := runWS(t, cfg)
	if r.Mode != "idle" || r.IdleReady != 300 || r.IdleOpen != 300 || r.Connects != 300 || r.Announces != 300 || r.Errors != 0 {
		t.Errorf("idle run: %+v", r)
	}
	if r.Seconds < 0.25 || r.Seconds > 2 {
		t.Errorf("held %.2f s", r.Seconds)
	}
	if !strings.Contains(progress.String(), "ws idle: 300 connections open and announced, 0 failed") {
		t.Errorf("progress %q", progress.String())
	}
}

// Connections the tracker closes during the hold are counted.
func TestWSIdleClosedByTracker(t *testing.T) {
	addr := startFakeWSTracker(t, &fakeWSTracker{closeAfterReply: true})
	cfg := wsConfig(addr)
	cfg.WSIdle = 300 * time.Millisecond
	r := runWS(t, cfg)
	if r.IdleOpen != 0 || r.Errors == 0 {
		t.Errorf("idle open %d, errors %v", r.IdleOpen, r.ErrorMessages)
	}
	for m := range r.ErrorMessages {
		if !strings.HasPrefix(m, "idle: ") {
			t.Errorf("error %q", m)
		}
	}
}

func TestWSConfigCheck(t *testing.T) {
	for _, c := range []struct {
		mod func(*Config)
		err string
	}{
		{func(c *Config) { c.UDP = "127.0.0.1:1" }, "alone"},
		{func(c *Config) { c.Fill = true }, "-fill"},
		{func(c *Config) { c.WSConns = 0 }, "-ws-conns"},
		{func(c *Config) { c.WSOffers = wsMaxOffers + 1 }, "-ws-offers"},
		{func(c *Config) { c.WSWindow = 0 }, "-ws-window"},
		{func(c *Config) { c.WSSDPBytes = -1 }, "-ws-sdp"},
		{func(c *Config) { c.WSIdle = -1 }, "-ws-idle"},
		{func(c *Config) { c.WSPace = -1 }, "-ws-pace"},
		{func(c *Config) { c.WS = "ws://10.1.2.3:80/" }, "loopback"},
		{func(c *Config) { c.WS = "http://127.0.0.1:80/" }, "scheme"},
	} {
		cfg := wsConfig("ws://127.0.0.1:1/")
		c.mod(&cfg)
		_, err := Run(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%v, want %q", err, c.err)
		}
	}
	for _, c := range []struct{ in, path string }{
		{"127.0.0.1:8000", "/"},
		{"ws://127.0.0.1:8000", "/"},
		{"ws://127.0.0.1:8000/announce", "/announce"},
		{"ws://127.0.0.1:8000/a%20b?x=1", "/a%20b?x=1"},
	} {
		tg, err := resolveTarget("ws", c.in, false)
		if err != nil || tg.path != c.path || tg.addr.Port() != 8000 {
			t.Errorf("%s: %+v, %v", c.in, tg, err)
		}
	}
}

// With -ws-pace a connection announces at most once per pace.
func TestWSPace(t *testing.T) {
	c, err := StartCannedWS("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := wsConfig(c.Addr().String())
	cfg.WSConns = 10
	cfg.WSPace = 100 * time.Millisecond
	r := runWS(t, cfg)
	// 10 connections, 1 s: about 10 announces each (one more at the start).
	if r.Sent < 50 || r.Sent > 10*11 || r.Errors != 0 || r.Timeouts != 0 {
		t.Errorf("%d announces sent by 10 connections paced at 100ms in 1s; errors %v", r.Sent, r.ErrorMessages)
	}
}
