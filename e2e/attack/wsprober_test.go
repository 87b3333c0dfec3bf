package attack

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// The well-behaved WebTorrent client. Two seeders (offerers) and a
// leecher (the answerer) share a swarm of WebSocket peers, from
// proberAddr; every probeEvery one of the seeders, in turn (each then
// announces once a second, within the offer rate limit), announces with
// one offer, which trackd relays to the leecher (a seeder's offers go to
// leechers only), whose answer trackd relays back. A round is the time
// from the announce to the answer; a round not done within probeTimeout,
// a failure reason or a connection closed is a failure. The peers answer
// trackd's pings.

var (
	wsProbeHash  = wsID("ws-attack-probe")
	wsProbeSDP   = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
	wsAnswerSDP  = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
	wsProbeNames = [3]string{"ws-probe-answerer", "ws-probe-offerer-1", "ws-probe-offerer-2"}
)

// wsProber is a running well-behaved WebSocket client.
type wsProber struct {
	stopc, done chan struct{}
	peers       [3]*wsClient // the answerer, then the offerers
	mu          sync.Mutex
	res         probeResult
	pending     map[string]chan time.Time // offer_id → its answer's arrival
}

func (p *wsProber) fail(err error) {
	p.mu.Lock()
	p.res.record(0, err)
	p.mu.Unlock()
}

// startWSProber joins the probed WebSocket swarm and starts the rounds;
// check ends them.
func startWSProber(t testing.TB, d *trackd) *wsProber {
	t.Helper()
	p := &wsProber{stopc: make(chan struct{}), done: make(chan struct{}),
		res: probeResult{name: "WebSocket prober"}, pending: map[string]chan time.Time{}}
	for i, name := range wsProbeNames {
		c, err := dialWS(proberAddr, d.http, probeTimeout, nil)
		if err != nil {
			t.Fatalf("WebSocket prober: %v", err)
		}
		t.Cleanup(func() { c.c.Close() })
		left := 0
		if i == 0 {
			left = 1000
		}
		if err := c.send(wsAnnounce(wsProbeHash, wsID(name), left, 5, "started", 0, "", "")); err != nil {
			t.Fatalf("WebSocket prober: %v", err)
		}
		m, err := c.nextJSON(time.Now().Add(probeTimeout))
		if err != nil || m["interval"] == nil {
			t.Fatalf("WebSocket prober %s: announce reply %v, %v", name, m, err)
		}
		p.peers[i] = c
	}
	var readers sync.WaitGroup
	readers.Add(3)
	go func() { defer readers.Done(); p.answer() }()
	for _, c := range p.peers[1:] {
		go func() { defer readers.Done(); p.readOfferer(c) }()
	}
	go func() {
		defer close(p.done)
		var wg sync.WaitGroup
		tick := time.NewTicker(probeEvery)
		defer tick.Stop()
		for i := 0; ; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); p.round(i) }()
			select {
			case <-tick.C:
			case <-p.stopc:
				wg.Wait()
				for _, c := range p.peers {
					c.c.Close()
				}
				readers.Wait()
				return
			}
		}
	}()
	t.Cleanup(p.stop)
	return p
}

// round is one offer and its answer.
func (p *wsProber) round(i int) {
	id := wsID(fmt.Sprintf("probe-offer-%d", i))
	got := make(chan time.Time, 1)
	p.mu.Lock()
	p.pending[id] = got
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pending, id)
		p.mu.Unlock()
	}()
	c := p.peers[1+i%2]
	m := wsAnnounce(wsProbeHash, wsID(wsProbeNames[1+i%2]), 0, 1, "", 1, "", wsProbeSDP)
	m["offers"].([]any)[0].(map[string]any)["offer_id"] = id
	start := time.Now()
	var err error
	if err = c.send(m); err == nil {
		select {
		case at := <-got:
			p.mu.Lock()
			p.res.record(at.Sub(start), nil)
			p.mu.Unlock()
			return
		case <-time.After(probeTimeout):
			err = fmt.Errorf("offer %q: no answer relayed back", id)
		}
	}
	p.mu.Lock()
	p.res.record(time.Since(start), err)
	p.mu.Unlock()
}

// readOfferer reads an offerer's messages: its announce replies and the
// answers relayed to it.
func (p *wsProber) readOfferer(c *wsClient) {
	for {
		m, err := c.nextJSON(time.Now().Add(time.Hour))
		if err != nil {
			if !p.stopped() {
				p.fail(fmt.Errorf("offerer: %v", err))
			}
			return
		}
		switch {
		case m["failure reason"] != nil:
			p.fail(fmt.Errorf("offerer: failure reason %q", m["failure reason"]))
		case m["answer"] != nil:
			id, _ := m["offer_id"].(string)
			p.mu.Lock()
			ch := p.pending[id]
			p.mu.Unlock()
			if ch == nil {
				p.fail(fmt.Errorf("offerer: answer to %q, an offer not pending (late?)", id))
				continue
			}
			select {
			case ch <- time.Now():
			default:
			}
		case m["interval"] != nil:
			if m["info_hash"] != wsProbeHash {
				p.fail(fmt.Errorf("offerer: announce reply %v", m))
			}
		default:
			p.fail(fmt.Errorf("offerer: unexpected message %v", m))
		}
	}
}

// answer reads the answerer's messages and answers every offer.
func (p *wsProber) answer() {
	c := p.peers[0]
	for {
		m, err := c.nextJSON(time.Now().Add(time.Hour))
		if err != nil {
			if !p.stopped() {
				p.fail(fmt.Errorf("answerer: %v", err))
			}
			return
		}
		if m["failure reason"] != nil || m["offer"] == nil {
			p.fail(fmt.Errorf("answerer: unexpected message %v", m))
			continue
		}
		err = c.send(map[string]any{"action": "announce", "info_hash": wsProbeHash, "peer_id": wsID(wsProbeNames[0]),
			"to_peer_id": m["peer_id"], "offer_id": m["offer_id"], "answer": map[string]any{"type": "answer", "sdp": wsAnswerSDP}})
		if err != nil && !p.stopped() {
			p.fail(fmt.Errorf("answerer: %v", err))
		}
	}
}

func (p *wsProber) stopped() bool {
	select {
	case <-p.stopc:
		return true
	default:
		return false
	}
}

func (p *wsProber) stop() {
	select {
	case <-p.stopc:
	default:
		close(p.stopc)
	}
	<-p.done
}

// check stops p and fails t unless every round succeeded within bound.
func (p *wsProber) check(t testing.TB, bound time.Duration) {
	t.Helper()
	p.stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	r := &p.res
	t.Logf("%s: %d offer/answer rounds and errors, %d failed, slowest %v", r.name, r.n, r.failures, r.slowest.Round(10*time.Microsecond))
	if r.failures > 0 {
		t.Errorf("%s: %d of %d failed (want 0); first: %s", r.name, r.failures, r.n, strings.Join(r.errs, "; "))
	}
	if r.slowest > bound {
		t.Errorf("%s: slowest round took %v, want at most %v", r.name, r.slowest.Round(time.Millisecond), bound)
	}
}
