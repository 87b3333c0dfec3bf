package attack

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"trackd/internal/testcert"

	"github.com/gobwas/ws"
)

// TestWebSocketAttack attacks the WebSocket way in (WebTorrent, ws:// on
// the HTTP port), each attack on a trackd of its own, while the HTTP and
// UDP probers and the WebSocket prober run.
func TestWebSocketAttack(t *testing.T) {
	t.Run("PerAddressBound", testWSPerAddressBound)
	t.Run("Squatters", testWSSquatters)
	t.Run("NonReaders", testWSNonReaders)
	t.Run("BadFrames", testWSBadFrames)
	t.Run("TorrentFlood", testWSTorrentFlood)
	t.Run("IdleConnections", testWSIdle)
	// wss:// through the HTTPS listener: each connection on a goroutine
	// of its own, behind TLS, rather than on the event loops.
	t.Run("PerAddressBoundTLS", testWSPerAddressBound)
	t.Run("SquattersTLS", testWSSquatters)
	t.Run("NonReadersTLS", testWSNonReaders)
	t.Run("BadFramesTLS", testWSBadFrames)
	t.Run("IdleConnectionsTLS", testWSIdle)
}

// startAll starts trackd with extra flags and the three probers (the
// WebSocket prober over ws://). It returns the target the attack goes to:
// ws:// on the HTTP listener, or, when the subtest's name ends in TLS,
// wss:// on an HTTPS listener with a test certificate.
func startAll(t *testing.T, extra ...string) (*trackd, *prober, *wsProber, wsTarget) {
	var pool *x509.CertPool
	if strings.HasSuffix(t.Name(), "TLS") {
		dir := t.TempDir()
		certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		pool = x509.NewCertPool()
		pool.AddCert(testcert.Write(t, certFile, keyFile, 1))
		extra = append([]string{"-https", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile}, extra...)
	}
	d := startTrackd(t, extra...)
	tg := wsTarget{addr: d.http}
	if pool != nil {
		tg = wsTarget{addr: d.https, tls: &tls.Config{RootCAs: pool}}
	}
	return d, startProber(t, d), startWSProber(t, d), tg
}

// checkAll checks the three probers.
func checkAll(t *testing.T, p *prober, wp *wsProber) {
	t.Helper()
	wp.check(t, slowestBound)
	p.check(t, slowestBound)
}

// metricLabelled is the value of the metric line that starts with
// series (a name and its labels, as /metrics writes them), 0 if none.
func (d *trackd) metricLabelled(t testing.TB, series string) float64 {
	t.Helper()
	v, _ := d.metricValue(t, series)
	return v
}

// testWSPerAddressBound: 200 WebSocket connections from one address
// (half of them naming other clients in X-Forwarded-For and X-Real-IP)
// against -ws-max-conns-per-ip 50, none sending a message: each one
// beyond the 50th evicts the address's oldest, so the first 150 are
// closed with 1013 and the last 50 stay open; 50 from another address
// are all served.
func testWSPerAddressBound(t *testing.T) {
	const perIP, n = 50, 200
	_, p, wp, tg := startAll(t, "-ws-max-conns-per-ip", strconv.Itoa(perIP))
	var cs []*wsClient
	for i := range n {
		// Every other one names another client in X-Forwarded-For and
		// X-Real-IP: trackd trusts no proxy here, so they count for the
		// address they come from.
		var h http.Header
		if i%2 == 1 {
			h = http.Header{"X-Forwarded-For": {fmt.Sprintf("10.0.0.%d", i)}, "X-Real-Ip": {fmt.Sprintf("10.0.1.%d", i)}}
		}
		c, err := tg.dial("127.0.0.9", 5*time.Second, nil, h)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.c.Close()
		cs = append(cs, c)
	}
	var refused, open, other atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(2 * time.Second)
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, err := c.closeCodeWithin(deadline)
			switch {
			case err != nil:
				open.Add(1)
			case code == 1013:
				refused.Add(1)
			default:
				other.Add(1)
			}
			// The oldest are evicted first. A connection joins its
			// address's list a goroutine hop after its 101 is written,
			// so the next dial may overtake it there: neighbours around
			// the 150th may swap, nothing further.
			const swap = 5
			evicted := err == nil && code == 1013
			if (i < n-perIP-swap && !evicted) || (i >= n-perIP+swap && evicted) {
				t.Errorf("connection %d of %d: closed with 1013 %v, want %v (the oldest evicted first)", i, n, evicted, i < n-perIP)
			}
		}()
	}
	wg.Wait()
	// Another address's clients, while the 50 are held.
	var served int
	for i := range perIP {
		c, err := tg.dial("127.0.0.10", 5*time.Second, nil, nil)
		if err != nil {
			t.Fatalf("another address: %v", err)
		}
		defer c.c.Close()
		if err := c.send(wsAnnounce(wsID(fmt.Sprintf("per-ip-%d", i)), wsID("other-address"), 10, 5, "started", 0, "", "")); err != nil {
			t.Fatal(err)
		}
		if m, err := c.nextJSON(time.Now().Add(probeTimeout)); err == nil && m["interval"] != nil {
			served++
		} else {
			t.Errorf("another address's client %d: %v, %v", i, m, err)
		}
	}
	t.Logf("%d connections from one address: %d evicted with 1013, %d open, %d closed otherwise; another address: %d of %d served",
		n, refused.Load(), open.Load(), other.Load(), served, perIP)
	if open.Load() != perIP || refused.Load() != n-perIP {
		t.Errorf("want %d open and %d closed with 1013", perIP, n-perIP)
	}
	checkAll(t, p, wp)
}

// testWSSquatters: the attack of a client that holds every place of
// -ws-max-conns 60 and keeps it by answering pings: 57 connections
// (besides the WebSocket prober's 3) that announce once and then say
// nothing. 20 new clients from another address, each announcing, are
// all served: each evicts (1013) the connection whose last message is
// oldest, a squatter's, never the prober's, whose messages are newer;
// trackd_ws_connections_evicted_total{reason="max_conns"} counts 20 and
// the open connections stay at 60.
func testWSSquatters(t *testing.T) {
	const maxConns, squatters, newcomers = 60, 57, 20
	d, p, wp, tg := startAll(t, "-ws-max-conns", strconv.Itoa(maxConns))
	var cs []*wsClient
	for i := range squatters {
		c, err := tg.dial("127.0.0.17", 5*time.Second, nil, nil)
		if err != nil {
			t.Fatalf("squatter %d: %v", i, err)
		}
		defer c.c.Close()
		if err := c.send(wsAnnounce(wsID(fmt.Sprintf("squat-torrent-%d", i)), wsID(fmt.Sprintf("squatter-%d", i)), 10, 5, "started", 0, "", "")); err != nil {
			t.Fatal(err)
		}
		if m, err := c.nextJSON(time.Now().Add(probeTimeout)); err != nil || m["interval"] == nil {
			t.Fatalf("squatter %d: announce reply %v, %v", i, m, err)
		}
		cs = append(cs, c)
	}
	// The squatters hold their places, answering pings; the prober's
	// connections send messages meanwhile (an offer or an answer each
	// second at least).
	results := make(chan int, squatters)
	deadline := time.Now().Add(2*time.Second + 10*probeTimeout)
	for _, c := range cs {
		go func() {
			code, err := c.closeCodeWithin(deadline)
			if err != nil {
				code = 0 // still open at the deadline
			}
			results <- code
		}()
	}
	time.Sleep(2 * time.Second)
	served := 0
	for i := range newcomers {
		c, err := tg.dial("127.0.0.18", 5*time.Second, nil, nil)
		if err != nil {
			t.Fatalf("newcomer %d: %v", i, err)
		}
		defer c.c.Close()
		if err := c.send(wsAnnounce(wsID(fmt.Sprintf("new-torrent-%d", i)), wsID(fmt.Sprintf("newcomer-%d", i)), 10, 5, "started", 0, "", "")); err != nil {
			t.Fatal(err)
		}
		if m, err := c.nextJSON(time.Now().Add(probeTimeout)); err == nil && m["interval"] != nil {
			served++
		} else {
			t.Errorf("newcomer %d: %v, %v", i, m, err)
		}
	}
	open := d.metricLabelled(t, "trackd_ws_connections_open")
	for _, c := range cs {
		c.c.SetReadDeadline(time.Now()) // end the waits of those still open
	}
	evicted, other := 0, 0
	for range squatters {
		switch <-results {
		case 0:
		case 1013:
			evicted++
		default:
			other++
		}
	}
	counted := d.metricLabelled(t, `trackd_ws_connections_evicted_total{reason="max_conns"}`)
	t.Logf("%d squatters and the prober's 3 at ws_max_conns %d: %d of %d newcomers served, %d squatters evicted with 1013, %d closed otherwise; %v counted evicted, %v open",
		squatters, maxConns, served, newcomers, evicted, other, counted, open)
	if served != newcomers || evicted != newcomers || other != 0 {
		t.Errorf("want %d newcomers served and %d squatters evicted (1013), none closed otherwise", newcomers, newcomers)
	}
	if counted != newcomers || open != maxConns {
		t.Errorf("metrics: %v evicted, %v open; want %d, %d", counted, open, newcomers, maxConns)
	}
	checkAll(t, p, wp)
}

// testWSNonReaders: clients that join a swarm and never read (a 4 KiB
// receive buffer, a 536-byte MSS), while attackers relay offers of 5.7 KB
// to them as fast as they may and beyond, in 4 waves of 20 non-readers
// and 10 new attacker connections sending 40 announces of 10 offers back
// to back, 0.5 s apart: the
// non-readers are closed when their write queues pass their bound (the
// relays of others never wait for them), the offers beyond each
// attacker's token bucket are dropped as rate_limited, and the
// well-behaved client's relays stay fast.
func testWSNonReaders(t *testing.T) {
	const (
		waves      = 4
		nonReaders = 20 // a wave's
		attackers  = 10 // a wave's, new connections
		announces  = 40 // each attacker's, back to back: 20 within its bucket
		offers     = 10
	)
	d, p, wp, tg := startAll(t)
	hash := wsID("non-reader-swarm")
	sdp := "v=0\r\n" + strings.Repeat("a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\n", 100) // 5.7 KB
	var replies, failures atomic.Int64
	var slowestWave time.Duration
	var closed int
	for wave := range waves {
		var sinks []*wsClient
		for i := range nonReaders {
			c, err := tg.dial("127.0.0.11", 5*time.Second, smallWindow, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.c.Close()
			if err := c.send(wsAnnounce(hash, wsID(fmt.Sprintf("non-reader-%d-%d", wave, i)), 1000, 5, "started", 0, "", "")); err != nil {
				t.Fatal(err)
			}
			if m, err := c.nextJSON(time.Now().Add(probeTimeout)); err != nil || m["interval"] == nil {
				t.Fatalf("non-reader's announce: %v, %v", m, err)
			}
			sinks = append(sinks, c) // and it reads no more
		}
		start := time.Now()
		var wg sync.WaitGroup
		for a := range attackers {
			c, err := tg.dial("127.0.0.12", 5*time.Second, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.c.Close()
			wg.Add(2)
			go func() {
				defer wg.Done()
				for range announces {
					m, err := c.nextJSON(time.Now().Add(10 * time.Second))
					switch {
					case err != nil:
						t.Errorf("attacker %d: %v", a, err)
						return
					case m["failure reason"] != nil:
						failures.Add(1)
					default:
						replies.Add(1)
					}
				}
			}()
			go func() {
				defer wg.Done()
				for i := range announces {
					m := wsAnnounce(hash, wsID(fmt.Sprintf("attacker-%d-%d", wave, a)), 0, offers, "", offers, fmt.Sprintf("o%d-%d-", a, i), sdp)
					if err := c.send(m); err != nil {
						t.Errorf("attacker %d: %v", a, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		slowestWave = max(slowestWave, time.Since(start))

		// A non-reader the server closed reads what its socket held,
		// then the end of the stream (cut short, without TLS's
		// close_notify, over wss://), or a reset.
		for i, c := range sinks {
			c.c.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, err := io.Copy(io.Discard, c.r)
			if err == nil || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
				closed++
				continue
			}
			t.Errorf("wave %d: non-reader %d still open (read %d bytes, then %v): it was sent far more than its queue bound", wave, i, n, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	rateLimited := d.metricLabelled(t, `trackd_ws_dropped_total{reason="rate_limited"}`)
	sendFailed := d.metricLabelled(t, `trackd_ws_dropped_total{reason="send_failed"}`)
	relayed := d.metricLabelled(t, `trackd_ws_relayed_total{kind="offer"}`)
	t.Logf("%d waves of %d attackers × %d announces of %d offers (%d B each), the slowest wave %v: %d replies, %d failures; offers relayed %v (the probe's included), dropped rate_limited %v, send_failed %v; non-readers closed: %d of %d",
		waves, attackers, announces, offers, len(sdp), slowestWave.Round(time.Millisecond), replies.Load(), failures.Load(),
		relayed, rateLimited, sendFailed, closed, waves*nonReaders)
	if replies.Load() != waves*attackers*announces {
		t.Errorf("attackers got %d announce replies, want %d (an announce over the rate is still answered)", replies.Load(), waves*attackers*announces)
	}
	// Each attacker's bucket holds 20 and refills at 1/s: at least the
	// announces beyond 20 + its refill had their offers dropped.
	overRate := max(0, announces-20-int(slowestWave/time.Second)-1)
	if least, most := float64(waves*attackers*overRate*offers), float64(waves*attackers*(announces-20)*offers); rateLimited < least || rateLimited > most {
		t.Errorf("rate_limited drops %v, want between %v and %v", rateLimited, least, most)
	}
	checkAll(t, p, wp)
}

// testWSBadFrames: what breaks the framing closes the connection at once
// with its code: a 1 MiB message (over ws_max_message_bytes) 1009, an
// unmasked frame 1002, a binary message 1003, a text message that is
// not UTF-8 1007, a reserved opcode 1002, 68 KiB in 4 KiB fragments
// 1009; JSON that is not a message gets a failure reason on a connection
// that stays usable; a flood of pings from a client that reads no pong is
// closed; announces (stopped too) with the probe's peer ids from another
// connection are refused. 50 connections trickling a 60 KiB message a byte
// per 100 ms meanwhile, for 3 s, must not slow anyone and stay open
// (they are closed after the message timeout, 30 s, which the test does
// not wait for: it has no flag).
func testWSBadFrames(t *testing.T) {
	_, p, wp, tg := startAll(t)
	var trickling []*wsClient
	for i := range 50 {
		c, err := tg.dial("127.0.0.13", 5*time.Second, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.c.Close()
		hdr := ws.Header{Fin: true, OpCode: ws.OpText, Length: 60 << 10, Masked: true}
		var b bytes.Buffer
		ws.WriteHeader(&b, hdr)
		b.WriteString(`{"action":"announce","info_hash":"`)
		if _, err := c.c.Write(b.Bytes()); err != nil {
			t.Fatalf("unfinished message %d: %v", i, err)
		}
		trickling = append(trickling, c)
	}
	// They trickle a byte each every 100 ms while the rest runs, and
	// must stay open (the message timeout is 30 s) without slowing
	// anyone.
	stopTrickle := make(chan struct{})
	trickled := make(chan int)
	go func() {
		open := len(trickling)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopTrickle:
				trickled <- open
				return
			case <-tick.C:
			}
			open = 0
			for _, c := range trickling {
				// Masked with a zero mask: the byte as written.
				c.c.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := c.c.Write([]byte("a")); err == nil {
					open++
				}
			}
		}
	}()
	holdUntil := time.Now().Add(3 * time.Second)
	raw := func(h ws.Header, payload []byte) []byte {
		var b bytes.Buffer
		ws.WriteHeader(&b, h)
		p := append([]byte(nil), payload...)
		if h.Masked {
			ws.Cipher(p, h.Mask, 0)
		}
		b.Write(p)
		return b.Bytes()
	}
	masked := func(op ws.OpCode, p []byte) []byte {
		return raw(ws.Header{Fin: true, OpCode: op, Length: int64(len(p)), Masked: true, Mask: ws.NewMask()}, p)
	}
	msg := []byte(`{"action":"scrape","info_hash":"aaaaaaaaaaaaaaaaaaaa"}`)
	fragments := func(n, size int) []byte {
		var b []byte
		for i := range n {
			op := ws.OpContinuation
			if i == 0 {
				op = ws.OpText
			}
			b = append(b, raw(ws.Header{Fin: i == n-1, OpCode: op, Length: int64(size), Masked: true, Mask: ws.NewMask()}, bytes.Repeat([]byte("x"), size))...)
		}
		return b
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		code  int
	}{
		// The header of a 1 MiB message and its first 4 KiB: the length
		// is enough to refuse it.
		{"1 MiB message", append(raw(ws.Header{Fin: true, OpCode: ws.OpText, Length: 1 << 20, Masked: true, Mask: ws.NewMask()}, nil),
			bytes.Repeat([]byte("x"), 4096)...), 1009},
		// 68 KiB in 17 fragments of 4 KiB, each frame small.
		{"fragmented 68 KiB message", fragments(17, 4096), 1009},
		{"unmasked frame", raw(ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(len(msg))}, msg), 1002},
		{"binary message", masked(ws.OpBinary, msg), 1003},
		{"text not UTF-8", masked(ws.OpText, []byte("{\"action\":\"\xff\xfe\"}")), 1007},
		{"reserved opcode", masked(ws.OpCode(0x3), msg), 1002},
	} {
		c, err := tg.dial("127.0.0.14", 5*time.Second, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.c.Close()
		start := time.Now()
		if _, err := c.c.Write(tc.frame); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		code, err := c.closeCodeWithin(start.Add(probeTimeout))
		took := time.Since(start)
		switch {
		case err != nil:
			t.Errorf("%s: not closed within %v: %v", tc.name, probeTimeout, err)
		case code != tc.code:
			t.Errorf("%s: closed with %d, want %d", tc.name, code, tc.code)
		case took > slowestBound:
			t.Errorf("%s: closed after %v, want at once (at most %v)", tc.name, took.Round(time.Millisecond), slowestBound)
		default:
			t.Logf("%s: closed with %d after %v", tc.name, code, took.Round(10*time.Microsecond))
		}
	}
	// Bad JSON and bad ids: a failure reason, and the connection serves on.
	c, err := tg.dial("127.0.0.14", 5*time.Second, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.c.Close()
	for _, bad := range []string{`{"action":`, `[1,2]`, `{"action":"announce","info_hash":"short","peer_id":"x"}`, `{"action":"dance"}`,
		`{"action":"announce","info_hash":"aaaaaaaaaaaaaaaaaaa\u0100","peer_id":"bbbbbbbbbbbbbbbbbbbb"}`} {
		if err := c.writeFrame(ws.OpText, []byte(bad)); err != nil {
			t.Fatal(err)
		}
		m, err := c.nextJSON(time.Now().Add(probeTimeout))
		if err != nil || m["failure reason"] == nil {
			t.Errorf("%s: got %v, %v; want a failure reason", bad, m, err)
		}
	}
	if err := c.send(wsAnnounce(wsID("after-bad-json"), wsID("bad-json-peer"), 10, 5, "started", 0, "", "")); err != nil {
		t.Fatal(err)
	}
	if m, err := c.nextJSON(time.Now().Add(probeTimeout)); err != nil || m["interval"] == nil {
		t.Errorf("announce after bad messages: %v, %v", m, err)
	}
	// Pings as fast as they go from a client that never reads the pongs
	// (a small window): the pongs fill its write queue and it is closed.
	pc, err := tg.dial("127.0.0.14", 5*time.Second, smallWindow, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.c.Close()
	ping := ws.MustCompileFrame(ws.MaskFrame(ws.NewPingFrame(make([]byte, 125))))
	pingStart := time.Now()
	pings := 0
	var pingErr error
	for time.Since(pingStart) < 2*time.Second {
		pc.c.SetWriteDeadline(time.Now().Add(time.Second))
		if _, pingErr = pc.c.Write(ping); pingErr != nil {
			break
		}
		pings++
	}
	if pingErr == nil {
		t.Errorf("ping flood: %d pings in %v and the connection is still open", pings, time.Since(pingStart).Round(time.Millisecond))
	} else {
		t.Logf("ping flood, pongs never read: %d pings, then closed after %v (%v)", pings, time.Since(pingStart).Round(time.Millisecond), pingErr)
	}
	// Another connection announcing with the probe's peer ids, every
	// event (stopped too), is refused: the probe's peers stay.
	sq, err := tg.dial("127.0.0.14", 5*time.Second, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sq.c.Close()
	for _, name := range wsProbeNames {
		for _, ev := range []string{"started", "", "completed", "stopped"} {
			if err := sq.send(wsAnnounce(wsProbeHash, wsID(name), 0, 5, ev, 1, "squat", "v=0")); err != nil {
				t.Fatal(err)
			}
			m, err := sq.nextJSON(time.Now().Add(probeTimeout))
			if r, _ := m["failure reason"].(string); err != nil || !strings.Contains(r, "in use") {
				t.Errorf("announce %q with the probe's peer id %q from another connection: %v, %v; want refused", ev, name, m, err)
			}
		}
	}
	sq.c.Close()
	time.Sleep(time.Until(holdUntil))
	close(stopTrickle)
	open := <-trickled
	t.Logf("unfinished messages trickled a byte per 100 ms for 3 s: %d of %d connections open (message timeout 30 s)", open, len(trickling))
	if open != len(trickling) {
		t.Errorf("%d of %d connections trickling a message closed before the message timeout", len(trickling)-open, len(trickling))
	}
	checkAll(t, p, wp)
}

// testWSTorrentFlood: 20 connections, each announcing 100 random info
// hashes (its most) and one more, against -ws-max-peers 1000, round
// after round for 4 s (at most 60 rounds; the connections of a round
// closed before the next, each round new info hashes): the 101st
// torrent of a connection is refused, the peers beyond 1000 are refused
// as the tracker being full, a closed connection's peers leave (the next
// round gets in again), the swarms emptied are gone, trackd's resident
// memory stays within 32 MiB of its start, and the probers
// are served throughout (the probe swarm's peers joined first).
func testWSTorrentFlood(t *testing.T) {
	const (
		maxPeers = 1000
		conns    = 20
		perConn  = 100 // frontend/ws.DefaultMaxTorrents
		rounds   = 60  // at most; for floodFor at most
		floodFor = 4 * time.Second
	)
	d, p, wp, tg := startAll(t, "-ws-max-peers", strconv.Itoa(maxPeers))
	rss0, err := d.rss()
	if err != nil {
		t.Fatal(err)
	}
	var maxRSS int64
	var rssByRound []string
	floodStart := time.Now()
	round := 0
	for ; round < rounds && time.Since(floodStart) < floodFor; round++ {
		var ok, full, tooMany, other atomic.Int64
		var wg sync.WaitGroup
		var cs []*wsClient
		for i := range conns {
			c, err := tg.dial(fmt.Sprintf("127.0.1.%d", i+1), 5*time.Second, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			cs = append(cs, c)
			wg.Add(2)
			go func() {
				defer wg.Done()
				for j := range perConn + 1 {
					h := wsID(fmt.Sprintf("flood-%d-%d-%d", round, i, j))
					if err := c.send(wsAnnounce(h, wsID(fmt.Sprintf("flooder-%d", i)), 1000, 5, "started", 0, "", "")); err != nil {
						t.Errorf("flooder %d: %v", i, err)
						return
					}
				}
			}()
			go func() {
				defer wg.Done()
				for range perConn + 1 {
					m, err := c.nextJSON(time.Now().Add(10 * time.Second))
					if err != nil {
						t.Errorf("flooder %d: %v", i, err)
						return
					}
					reason, _ := m["failure reason"].(string)
					switch {
					case m["interval"] != nil:
						ok.Add(1)
					case strings.Contains(reason, "full"):
						full.Add(1)
					case strings.Contains(reason, "too many torrents"):
						tooMany.Add(1)
					default:
						other.Add(1)
						t.Errorf("flooder %d: %v", i, m)
					}
				}
			}()
		}
		wg.Wait()
		peers := d.metric(t, "trackd_ws_leechers") + d.metric(t, "trackd_ws_seeders")
		rss, err := d.rss()
		if err != nil {
			t.Fatal(err)
		}
		maxRSS = max(maxRSS, rss)
		if round%10 == 0 {
			rssByRound = append(rssByRound, fmt.Sprintf("%.1f/%.1f", float64(rss)/(1<<20), d.metric(t, "go_memstats_heap_inuse_bytes")/(1<<20)))
		}
		if round > 0 && !t.Failed() {
			continue
		}
		t.Logf("round %d: %d announces: %d joined, %d refused as full, %d over the torrents per connection, %d other; ws peers %v; RSS %.1f MiB",
			round, conns*(perConn+1), ok.Load(), full.Load(), tooMany.Load(), other.Load(), peers, float64(rss)/(1<<20))
		// The probe swarm holds 3 of the maxPeers places.
		if ok.Load() != maxPeers-3 || peers != maxPeers {
			t.Errorf("round %d: %d flood peers joined and %v ws peers in all, want %d and %d", round, ok.Load(), peers, maxPeers-3, maxPeers)
		}
		// A connection's 101st is refused as too many torrents unless
		// the tracker refused it first as full: those with room left
		// refuse it as too many.
		if tooMany.Load()+full.Load()+ok.Load() != conns*(perConn+1) || tooMany.Load() == 0 {
			t.Errorf("round %d: %d over the torrents per connection", round, tooMany.Load())
		}
		for _, c := range cs {
			c.c.Close()
		}
		// The closed connections' peers leave their swarms.
		var left float64
		for range 50 {
			if left = d.metric(t, "trackd_ws_leechers") + d.metric(t, "trackd_ws_seeders"); left == 3 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if torrents := d.metric(t, "trackd_ws_torrents"); torrents != 1 {
			t.Errorf("round %d: %v ws torrents after the flooders closed, want the probe's 1", round, torrents)
		}
		if left != 3 {
			t.Fatalf("round %d: %v ws peers 5 s after the flooders closed, want the 3 of the probe swarm", round, left)
		}
	}
	t.Logf("%d rounds in %v; RSS %.1f MiB before; RSS/Go heap in use after rounds 0, 10, 20… (MiB): %s", round, time.Since(floodStart).Round(time.Millisecond),
		float64(rss0)/(1<<20), strings.Join(rssByRound, " "))
	if maxRSS > rss0+32<<20 {
		t.Errorf("RSS grew from %.1f to %.1f MiB, want at most 32 MiB more", float64(rss0)/(1<<20), float64(maxRSS)/(1<<20))
	}
	checkAll(t, p, wp)
}

// testWSIdle: raw connections that complete the handshake and then send
// nothing, not even the pongs trackd's pings ask for, against
// -ws-idle-timeout 3s: closed after about 3 s (not before 2.25 s, at
// most 3 s + closeSlack). Ten of them are watched (read, never answered)
// for the time of the close; ten others read nothing until 3 s + slack,
// then must find their stream ended. A client that announced once and
// then only answers pings stays open for 6 s.
func testWSIdle(t *testing.T) {
	const idle = 3 * time.Second
	_, p, wp, tg := startAll(t, "-ws-idle-timeout", idle.String())
	const n = 10
	start := time.Now()
	type watched struct {
		closed <-chan time.Time
	}
	var ws1 []watched
	var silent []net.Conn
	for i := range 2 * n {
		c, err := tg.rawDial("127.0.0.15", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br, err := handshake(c, tg.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if i < n {
			ws1 = append(ws1, watched{watchClose(c, br)})
		} else {
			silent = append(silent, c)
		}
	}
	// A well-behaved client that announced once and is quiet since,
	// answering pings: never idle.
	quiet, err := tg.dial("127.0.0.16", 5*time.Second, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.c.Close()
	if err := quiet.send(wsAnnounce(wsID("quiet-torrent"), wsID("quiet-peer"), 10, 5, "started", 0, "", "")); err != nil {
		t.Fatal(err)
	}
	quietErr := make(chan error, 1)
	go func() {
		m, err := quiet.nextJSON(time.Now().Add(probeTimeout))
		if err == nil && m["interval"] == nil {
			err = fmt.Errorf("announce reply %v", m)
		}
		if err == nil {
			// Nothing more comes but pings, answered in next, until the
			// deadline ends the read.
			m, err = quiet.nextJSON(start.Add(2 * idle))
			if err == nil {
				err = fmt.Errorf("unexpected message %v", m)
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				err = nil
			}
		}
		quietErr <- err
	}()
	limit := idle + closeSlack
	var earliest, latest time.Duration
	open := 0
	for i, w := range ws1 {
		select {
		case at := <-w.closed:
			took := at.Sub(start)
			if i == 0 || took < earliest {
				earliest = took
			}
			latest = max(latest, took)
		case <-time.After(time.Until(start.Add(limit))):
			open++
		}
	}
	silentOpen := 0
	time.Sleep(time.Until(start.Add(limit)))
	for _, c := range silent {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, syscall.ECONNRESET) {
			silentOpen++
		}
	}
	t.Logf("idle connections (ws_idle_timeout %v): watched %d closed after %v to %v, %d open at %v; unread %d of %d closed by then",
		idle, n-open, earliest.Round(time.Millisecond), latest.Round(time.Millisecond), open, limit, n-silentOpen, n)
	if open > 0 || silentOpen > 0 {
		t.Errorf("%d watched and %d unread idle connections still open %v after their handshake (ws_idle_timeout %v)", open, silentOpen, limit, idle)
	}
	if err := <-quietErr; err != nil {
		t.Errorf("a client answering pings, quiet for %v (ws_idle_timeout %v): %v", 2*idle, idle, err)
	} else {
		t.Logf("a client answering pings, quiet for %v: open", 2*idle)
	}
	if open < n && earliest < idle-idle/4 {
		t.Errorf("an idle connection was closed after %v, before ws_idle_timeout (%v)", earliest.Round(time.Millisecond), idle)
	}
	checkAll(t, p, wp)
}
