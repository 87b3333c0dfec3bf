package ws

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/signaling"
	"trackd/store"
	"trackd/store/memory"
	"trackd/tracker"
	"trackd/wsserver"
)

// fakeConn is a wsserver.Conn that keeps what is sent to it; full makes
// Send refuse.
type fakeConn struct {
	mu     sync.Mutex
	got    [][]byte
	full   bool
	closed bool
}

func (c *fakeConn) Send(msg []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.full || c.closed {
		return false
	}
	c.got = append(c.got, append([]byte(nil), msg...))
	return true
}

func (c *fakeConn) Close() { c.mu.Lock(); c.closed = true; c.mu.Unlock() }

func (c *fakeConn) RemoteAddr() netip.AddrPort { return netip.MustParseAddrPort("127.0.0.1:1") }

// take returns the messages sent so far, decoded, and forgets them.
func (c *fakeConn) take(t *testing.T) []map[string]any {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]any
	for _, b := range c.got {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("sent %q: not a JSON object: %v", b, err)
		}
		out = append(out, m)
	}
	c.got = nil
	return out
}

// counts is a Metrics that counts.
type counts struct {
	mu       sync.Mutex
	messages map[string]int
	relayed  map[Relay]int
	dropped  map[Drop]int
}

func newCounts() *counts {
	return &counts{messages: map[string]int{}, relayed: map[Relay]int{}, dropped: map[Drop]int{}}
}

func (c *counts) Message(a Action, r Result) {
	c.mu.Lock()
	c.messages[a.String()+"/"+r.String()]++
	c.mu.Unlock()
}
func (c *counts) Relayed(r Relay, n int) { c.mu.Lock(); c.relayed[r] += n; c.mu.Unlock() }
func (c *counts) Dropped(d Drop, n int)  { c.mu.Lock(); c.dropped[d] += n; c.mu.Unlock() }

// env is a Handler over a fresh tracker, with its clock.
type env struct {
	h   *Handler
	now time.Time
	m   *counts
}

func newEnv(t testing.TB, cfg tracker.Config, opts Options) *env {
	t.Helper()
	s := memory.New(store.Options{PeerLifetime: time.Hour})
	t.Cleanup(func() { s.Close() })
	e := &env{now: time.Unix(1_800_000_000, 0), m: newCounts()}
	opts.Now = func() time.Time { return e.now }
	if opts.Metrics == nil {
		opts.Metrics = e.m
	}
	e.h = NewHandler(tracker.New(cfg, s), opts)
	return e
}

// peer is one connection with its session.
type peer struct {
	c  *fakeConn
	s  wsserver.Session
	id [20]byte
}

func (e *env) connect(n int) *peer {
	c := &fakeConn{}
	p := &peer{c: c, s: e.h.Open(c)}
	copy(p.id[:], fmt.Sprintf("-WW0100-%012d", n))
	return p
}

func (p *peer) send(msg string) { p.s.Message(context.Background(), []byte(msg)) }

// announce sends an announce of ih with the given offers (ids 1..n) and
// extra fields.
func (p *peer) announce(ih bittorrent.InfoHash, offers int, extra string) {
	var b strings.Builder
	b.WriteString(`{"action":"announce","info_hash":` + js(ih[:]) + `,"peer_id":` + js(p.id[:]) + `,"uploaded":0,"downloaded":0`)
	if extra != "" {
		b.WriteString("," + extra)
	}
	if offers > 0 {
		b.WriteString(`,"offers":[`)
		for i := range offers {
			if i > 0 {
				b.WriteByte(',')
			}
			var id [20]byte
			id[0] = byte(i + 1)
			b.WriteString(`{"offer_id":` + js(id[:]) + fmt.Sprintf(`,"offer":{"type":"offer","sdp":"v=0\r\nsdp-%d"}}`, i+1))
		}
		b.WriteString("]")
	}
	b.WriteString("}")
	p.send(b.String())
}

// bin is a decoded binary string as bytes.
func bin(t *testing.T, v any) []byte {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		t.Fatalf("%v is not a string", v)
	}
	var b []byte
	for _, r := range s {
		if r > 0xff {
			t.Fatalf("%q is not a binary string", s)
		}
		b = append(b, byte(r))
	}
	return b
}

// TestOfferAnswer: two peers exchange an offer and an answer, as
// bittorrent-tracker's client does.
func TestOfferAnswer(t *testing.T) {
	e := newEnv(t, tracker.Config{}, Options{})
	a, b := e.connect(1), e.connect(2)
	a.announce(ihX, 0, `"left":100,"event":"started","numwant":50`)
	got := a.c.take(t)
	if len(got) != 1 {
		t.Fatalf("a got %d messages, want its reply", len(got))
	}
	r := got[0]
	if r["action"] != "announce" || string(bin(t, r["info_hash"])) != string(ihX[:]) || r["interval"] != 60.0 || r["complete"] != 0.0 || r["incomplete"] != 1.0 || len(r) != 5 {
		t.Errorf("a's reply %v", r)
	}

	b.announce(ihX, 3, `"left":0,"event":"started","numwant":3`)
	got = b.c.take(t)
	if len(got) != 1 || got[0]["complete"] != 1.0 || got[0]["incomplete"] != 1.0 {
		t.Fatalf("b got %v, want its reply: 1 seeder, 1 leecher", got)
	}
	got = a.c.take(t)
	if len(got) != 1 {
		t.Fatalf("a got %d offers, want 1 (the swarm's only other peer)", len(got))
	}
	o := got[0]
	offerID := bin(t, o["offer_id"])
	if o["action"] != "announce" || string(bin(t, o["peer_id"])) != string(b.id[:]) || string(bin(t, o["info_hash"])) != string(ihX[:]) || len(offerID) != 20 || len(o) != 5 {
		t.Errorf("offer relayed as %v", o)
	}
	if sdp := o["offer"].(map[string]any); sdp["type"] != "offer" || !strings.HasPrefix(sdp["sdp"].(string), "v=0\r\nsdp-") {
		t.Errorf("offer object %v", sdp)
	}

	a.send(`{"action":"announce","info_hash":` + js(ihX[:]) + `,"peer_id":` + js(a.id[:]) + `,"to_peer_id":` + js(b.id[:]) + `,"offer_id":` + js(offerID) + `,"answer":{"type":"answer","sdp":"v=0\r\nanswer"}}`)
	if got := a.c.take(t); len(got) != 0 {
		t.Errorf("the answerer got %v, want nothing", got)
	}
	got = b.c.take(t)
	if len(got) != 1 {
		t.Fatalf("b got %d answers", len(got))
	}
	ans := got[0]
	if ans["action"] != "announce" || string(bin(t, ans["peer_id"])) != string(a.id[:]) || string(bin(t, ans["offer_id"])) != string(offerID) || string(bin(t, ans["info_hash"])) != string(ihX[:]) || len(ans) != 5 {
		t.Errorf("answer relayed as %v", ans)
	}
	if sdp := ans["answer"].(map[string]any); sdp["sdp"] != "v=0\r\nanswer" {
		t.Errorf("answer object %v", sdp)
	}
	if e.m.relayed[RelayOffer] != 1 || e.m.relayed[RelayAnswer] != 1 || e.m.messages["announce/ok"] != 2 || e.m.messages["answer/ok"] != 1 {
		t.Errorf("metrics %+v", e.m)
	}
}

// TestSeederOffersToLeechers: a seeder's offers go to leechers only; a
// leecher's to anyone but itself.
func TestSeederOffersToLeechers(t *testing.T) {
	e := newEnv(t, tracker.Config{}, Options{})
	var seeders, leechers []*peer
	for i := range 6 {
		p := e.connect(i)
		if i%2 == 0 {
			p.announce(ihX, 0, `"left":0`)
			seeders = append(seeders, p)
		} else {
			p.announce(ihX, 0, `"left":5`)
			leechers = append(leechers, p)
		}
		p.c.take(t)
	}
	seeders[0].announce(ihX, 5, `"left":0`)
	for _, p := range seeders {
		if got := p.c.take(t); len(got) > 0 && got[0]["offer"] != nil {
			t.Errorf("a seeder got a seeder's offer")
		}
	}
	for _, p := range leechers {
		if got := p.c.take(t); len(got) != 1 {
			t.Errorf("a leecher got %d offers, want 1", len(got))
		}
	}
	leechers[0].announce(ihX, 10, `"left":5`)
	n := 0
	for _, p := range append(seeders, leechers[1:]...) {
		n += len(p.c.take(t))
	}
	if got := leechers[0].c.take(t); len(got) != 1 {
		t.Errorf("the sender got %d messages, want its reply only", len(got))
	}
	if n != 5 {
		t.Errorf("a leecher's 10 offers in a swarm of 6 reached %d peers, want 5", n)
	}
}

// TestStoppedAndClosed: a stopped peer and a closed connection's peers
// get no more offers and leave the counts.
func TestStoppedAndClosed(t *testing.T) {
	e := newEnv(t, tracker.Config{}, Options{})
	a, b, c := e.connect(1), e.connect(2), e.connect(3)
	ih2 := bittorrent.InfoHash{2}
	for _, p := range []*peer{a, b, c} {
		p.announce(ihX, 0, `"left":1`)
	}
	a.announce(ih2, 0, `"left":1`)
	a.announce(ihX, 0, `"left":1,"event":"stopped"`)
	if got := a.c.take(t); got[len(got)-1]["incomplete"] != 2.0 {
		t.Errorf("reply to stopped: %v, want 2 leechers left", got[len(got)-1])
	}
	c.s.Closed()
	b.c.take(t)
	b.announce(ihX, 10, `"left":1`)
	if got := a.c.take(t); len(got) != 0 {
		t.Errorf("a stopped peer got %v", got)
	}
	if got := c.c.take(t); len(got) != 1 { // its one reply from before
		t.Errorf("a closed connection's peer got %d messages", len(got))
	}
	if got := b.c.take(t); len(got) != 1 || got[0]["incomplete"] != 1.0 {
		t.Errorf("b's reply %v, want 1 leecher", got)
	}
	st := e.h.Registry().Scrape([]bittorrent.InfoHash{ihX, ih2}, nil)
	if st[0].Leechers != 1 || st[1].Leechers != 1 {
		t.Errorf("counts %+v", st)
	}
	a.s.Closed()
	if tot := e.h.Registry().Totals(); tot.Peers() != 1 {
		t.Errorf("totals %+v after a closed, want b alone", tot)
	}
}

// TestLimits: the bounds per connection.
func TestLimits(t *testing.T) {
	t.Run("offers per announce", func(t *testing.T) {
		e := newEnv(t, tracker.Config{}, Options{MaxOffers: 4})
		var others []*peer
		for i := range 10 {
			p := e.connect(i)
			p.announce(ihX, 0, "")
			others = append(others, p)
		}
		s := e.connect(99)
		count := func() int {
			n := 0
			for _, p := range others {
				n += len(p.c.take(t))
			}
			return n
		}
		count()
		s.announce(ihX, 8, "")
		if n := count(); n != 4 {
			t.Errorf("8 offers, cap 4: %d relayed", n)
		}
		s.announce(ihX, 8, `"numwant":2`)
		if n := count(); n != 2 {
			t.Errorf("8 offers, numwant 2: %d relayed", n)
		}
		s.announce(ihX, 3, `"numwant":0`)
		if n := count(); n != 0 {
			t.Errorf("numwant 0: %d relayed", n)
		}
	})
	t.Run("rate of announces with offers", func(t *testing.T) {
		e := newEnv(t, tracker.Config{}, Options{OfferBurst: 2, OfferRate: 0.5})
		a, b := e.connect(1), e.connect(2)
		a.announce(ihX, 0, "")
		for range 3 {
			b.announce(ihX, 1, "")
		}
		if got := a.c.take(t); len(got) != 3 { // its reply and 2 offers
			t.Errorf("burst 2: a got %d messages, want 3", len(got))
		}
		if got := b.c.take(t); len(got) != 3 {
			t.Errorf("b got %d replies, want 3 (limited announces are answered)", len(got))
		}
		if e.m.dropped[DropRateLimited] != 1 {
			t.Errorf("rate-limited offers counted %d, want 1", e.m.dropped[DropRateLimited])
		}
		e.now = e.now.Add(2 * time.Second)
		b.announce(ihX, 1, "")
		if got := a.c.take(t); len(got) != 1 {
			t.Errorf("after 2 s at 0.5/s: a got %d offers, want 1", len(got))
		}
	})
	t.Run("torrents per connection", func(t *testing.T) {
		e := newEnv(t, tracker.Config{}, Options{MaxTorrents: 2})
		a := e.connect(1)
		a.announce(bittorrent.InfoHash{1}, 0, "")
		a.announce(bittorrent.InfoHash{2}, 0, "")
		a.announce(bittorrent.InfoHash{1}, 0, "") // again: no new torrent
		a.announce(bittorrent.InfoHash{3}, 0, "")
		got := a.c.take(t)
		if len(got) != 4 || got[2]["failure reason"] != nil {
			t.Fatalf("replies %v", got)
		}
		if f := got[3]; f["failure reason"] != string(errTooMany) || f["action"] != "announce" || string(bin(t, f["info_hash"])) != string([]byte{3, 19: 0}) {
			t.Errorf("third torrent: %v", f)
		}
		a.announce(bittorrent.InfoHash{1}, 0, `"event":"stopped"`)
		a.announce(bittorrent.InfoHash{3}, 0, "")
		if got := a.c.take(t); got[1]["failure reason"] != nil {
			t.Errorf("after a stopped: %v", got[1])
		}
	})
	t.Run("tracker full", func(t *testing.T) {
		e := newEnv(t, tracker.Config{}, Options{MaxPeers: 1})
		a, b := e.connect(1), e.connect(2)
		a.announce(ihX, 0, "")
		b.announce(ihX, 0, "")
		got := b.c.take(t)
		if len(got) != 1 || got[0]["failure reason"] != signaling.ErrFull.Error() || e.m.messages["announce/overloaded"] != 1 {
			t.Errorf("b got %v; metrics %v", got, e.m.messages)
		}
	})
	t.Run("peer id of another connection", func(t *testing.T) {
		e := newEnv(t, tracker.Config{}, Options{})
		a, b := e.connect(1), e.connect(2)
		b.id = a.id
		a.announce(ihX, 0, "")
		b.announce(ihX, 0, "")
		got := b.c.take(t)
		if len(got) != 1 || got[0]["failure reason"] != signaling.ErrPeerIDTaken.Error() {
			t.Errorf("b got %v", got)
		}
	})
	t.Run("answers only to peers and from members", func(t *testing.T) {
		e := newEnv(t, tracker.Config{}, Options{})
		a, b, x := e.connect(1), e.connect(2), e.connect(3)
		a.announce(ihX, 0, "")
		b.announce(ihX, 0, "")
		answer := func(from *peer, id, to [20]byte) {
			from.send(`{"action":"announce","info_hash":` + js(ihX[:]) + `,"peer_id":` + js(id[:]) + `,"to_peer_id":` + js(to[:]) + `,"offer_id":` + js(offr1[:]) + `,"answer":{"sdp":"x"}}`)
		}
		a.c.take(t)
		b.c.take(t)
		answer(a, a.id, x.id) // to a stranger
		answer(x, x.id, b.id) // from a stranger
		answer(x, a.id, b.id) // from a's id over another connection
		if got := b.c.take(t); len(got) != 0 {
			t.Errorf("b got %v", got)
		}
		for _, p := range []*peer{a, x} {
			if got := p.c.take(t); len(got) != 0 {
				t.Errorf("dropped answers were answered: %v", got)
			}
		}
		if e.m.dropped[DropNoPeer] != 1 || e.m.dropped[DropNotMember] != 2 || e.m.messages["answer/dropped"] != 3 {
			t.Errorf("metrics %+v", e.m)
		}
	})
}

// TestSendFails: a connection that does not take its offer is counted
// and does not keep the others from theirs.
func TestSendFails(t *testing.T) {
	e := newEnv(t, tracker.Config{}, Options{})
	var others []*peer
	for i := range 5 {
		p := e.connect(i)
		p.announce(ihX, 0, "")
		p.c.take(t)
		others = append(others, p)
	}
	others[1].c.full = true
	others[3].c.Close()
	s := e.connect(9)
	s.announce(ihX, 5, "")
	n := 0
	for _, p := range others {
		n += len(p.c.take(t))
	}
	if n != 3 || e.m.dropped[DropSendFailed] != 2 || e.m.relayed[RelayOffer] != 3 {
		t.Errorf("%d offers delivered, %d send failures, %d relayed; want 3, 2, 3", n, e.m.dropped[DropSendFailed], e.m.relayed[RelayOffer])
	}
	if got := s.c.take(t); len(got) != 1 || got[0]["incomplete"] != 6.0 {
		t.Errorf("sender's reply %v", got)
	}
}

// hashSet refuses the hashes in it.
type hashSet map[bittorrent.InfoHash]bool

func (s hashSet) Allowed(h bittorrent.InfoHash) bool { return !s[h] }

// TestFailures: what refused messages get back, exactly; the connection
// stays usable.
func TestFailures(t *testing.T) {
	refused := bittorrent.InfoHash{0xee}
	e := newEnv(t, tracker.Config{Access: hashSet{refused: true}}, Options{})
	p := e.connect(1)
	ih, id := js(ihX[:]), js(p.id[:])
	tests := []struct{ in, want string }{
		{`hello`, `{"failure reason":"a message must be a JSON object"}`},
		{`{"action":"announce"`, `{"action":"announce","failure reason":"invalid JSON"}`},
		{`{"action":"connect"}`, `{"failure reason":"invalid action: want announce or scrape"}`},
		{`{"info_hash":` + ih + `}`, `{"info_hash":` + ih + `,"failure reason":"action missing"}`},
		{`{"action":"announce","info_hash":"short","peer_id":` + id + `}`, `{"action":"announce","failure reason":"invalid info_hash: want a 20-byte binary string"}`},
		{`{"action":"announce","info_hash":` + ih + `,"peer_id":"short"}`, `{"action":"announce","info_hash":` + ih + `,"failure reason":"invalid peer_id: want a 20-byte binary string"}`},
		{`{"action":"announce","peer_id":` + id + `}`, `{"action":"announce","failure reason":"info_hash missing"}`},
		{`{"action":"announce","info_hash":` + ih + `}`, `{"action":"announce","info_hash":` + ih + `,"failure reason":"invalid peer_id: want a 20-byte binary string"}`},
		{`{"action":"announce","info_hash":[` + ih + `],"peer_id":` + id + `}`, `{"action":"announce","failure reason":"invalid info_hash: want a 20-byte binary string"}`},
		{`{"action":"announce","info_hash":` + ih + `,"peer_id":` + id + `,"event":"x"}`, `{"action":"announce","info_hash":` + ih + `,"failure reason":"invalid event"}`},
		{`{"action":"announce","info_hash":` + js(refused[:]) + `,"peer_id":` + id + `}`, `{"action":"announce","info_hash":` + js(refused[:]) + `,"failure reason":"this torrent is not tracked here (access list)"}`},
		{`{"action":"announce","info_hash":` + ih + `,"peer_id":` + id + `,"answer":{}}`, `{"action":"announce","info_hash":` + ih + `,"failure reason":"an answer needs to_peer_id and offer_id"}`},
		{`{"action":"scrape"}`, `{"action":"scrape","failure reason":"scrape needs info_hash (the full scrape is served over HTTP)"}`},
	}
	for _, tt := range tests {
		p.send(tt.in)
		p.c.mu.Lock()
		got := p.c.got
		p.c.got = nil
		p.c.mu.Unlock()
		if len(got) != 1 || string(got[0]) != tt.want {
			t.Errorf("%s\n got %q\nwant %s", tt.in, got, tt.want)
		}
	}
	p.announce(ihX, 0, "")
	if got := p.c.take(t); len(got) != 1 || got[0]["failure reason"] != nil {
		t.Errorf("after the failures an announce got %v", got)
	}
	if e.m.messages["invalid/refused"] != 3 || e.m.messages["announce/refused"] != 8 {
		t.Errorf("metrics %v", e.m.messages)
	}
}

// TestScrape: one hash, a list, an empty list; a refused hash counts
// zero.
func TestScrape(t *testing.T) {
	refused := bittorrent.InfoHash{0xee}
	e := newEnv(t, tracker.Config{Access: hashSet{}}, Options{})
	a, b := e.connect(1), e.connect(2)
	a.announce(ihX, 0, `"left":0`)
	b.announce(ihX, 0, `"left":7,"event":"started"`)
	b.announce(ihX, 0, `"left":0,"event":"completed"`)
	a.c.take(t)
	e.h.t.Config().Access.(hashSet)[refused] = true
	a.send(`{"action":"scrape","info_hash":` + js(ihX[:]) + `}`)
	a.send(`{"action":"scrape","info_hash":[` + js(ihX[:]) + `,` + js(idB[:]) + `,` + js(refused[:]) + `]}`)
	a.send(`{"action":"scrape","info_hash":[]}`)
	got := a.c.take(t)
	if len(got) != 3 {
		t.Fatalf("%d replies", len(got))
	}
	files := func(m map[string]any) map[string]any {
		if m["action"] != "scrape" || m["flags"].(map[string]any)["min_request_interval"] != 60.0 {
			t.Errorf("scrape reply %v", m)
		}
		return m["files"].(map[string]any)
	}
	want := map[string]any{"complete": 2.0, "incomplete": 0.0, "downloaded": 1.0}
	zero := map[string]any{"complete": 0.0, "incomplete": 0.0, "downloaded": 0.0}
	if f := files(got[0]); len(f) != 1 || fmt.Sprint(f[binStr(ihX[:])]) != fmt.Sprint(want) {
		t.Errorf("one hash: %v", f)
	}
	if f := files(got[1]); len(f) != 3 || fmt.Sprint(f[binStr(ihX[:])]) != fmt.Sprint(want) || fmt.Sprint(f[binStr(idB[:])]) != fmt.Sprint(zero) || fmt.Sprint(f[binStr(refused[:])]) != fmt.Sprint(zero) {
		t.Errorf("list: %v", f)
	}
	if f := files(got[2]); len(f) != 0 {
		t.Errorf("empty list: %v", f)
	}
}

// TestExpiryWhileOpen: a peer that stops announcing leaves its swarm
// after its lifetime though its connection stays open, and its torrent
// no longer counts against the connection's.
func TestExpiryWhileOpen(t *testing.T) {
	e := newEnv(t, tracker.Config{}, Options{PeerLifetime: time.Minute, MaxTorrents: 1})
	a, b := e.connect(1), e.connect(2)
	a.announce(ihX, 0, "")
	e.now = e.now.Add(2 * time.Minute)
	b.announce(ihX, 3, "")
	if got := a.c.take(t); len(got) != 1 {
		t.Errorf("an expired peer got offers: %d messages", len(got))
	}
	if n := e.h.Expire(); n != 1 {
		t.Errorf("Expire removed %d", n)
	}
	a.announce(bittorrent.InfoHash{7}, 0, "")
	if got := a.c.take(t); len(got) != 1 || got[0]["failure reason"] != nil {
		t.Errorf("a new torrent after the old one expired: %v", got)
	}
}

// TestConcurrentSessions: many connections announcing, answering and
// closing at once (run with -race).
func TestConcurrentSessions(t *testing.T) {
	e := newEnv(t, tracker.Config{}, Options{OfferBurst: 1 << 20})
	var wg sync.WaitGroup
	peers := make([]*peer, 16)
	for i := range peers {
		peers[i] = e.connect(i)
	}
	for i, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 100 {
				ih := bittorrent.InfoHash{byte(j % 3)}
				p.announce(ih, 3, `"left":1`)
				to := peers[(i+j)%len(peers)]
				p.send(`{"action":"announce","info_hash":` + js(ih[:]) + `,"peer_id":` + js(p.id[:]) + `,"to_peer_id":` + js(to.id[:]) + `,"offer_id":` + js(offr1[:]) + `,"answer":{"sdp":"x"}}`)
				p.send(`{"action":"scrape","info_hash":` + js(ih[:]) + `}`)
			}
			p.s.Closed()
		}()
	}
	wg.Wait()
	if tot := e.h.Registry().Totals(); tot != (signaling.Totals{}) {
		t.Errorf("totals %+v after all closed", tot)
	}
}

// valueConn is a Conn of a type that cannot be compared (a struct with a
// slice, by value): the registry binds peers to sessions, never to the
// transport's Conns, so it works all the same.
type valueConn struct {
	c    *fakeConn
	tags []string // makes the type incomparable
}

func (v valueConn) Send(msg []byte) bool       { return v.c.Send(msg) }
func (v valueConn) Close()                     { v.c.Close() }
func (v valueConn) RemoteAddr() netip.AddrPort { return v.c.RemoteAddr() }

func TestIncomparableConn(t *testing.T) {
	e := newEnv(t, tracker.Config{}, Options{})
	a, b := &fakeConn{}, &fakeConn{}
	sa, sb := e.h.Open(valueConn{c: a, tags: []string{"a"}}), e.h.Open(valueConn{c: b, tags: []string{"b"}})
	sa.Message(context.Background(), []byte(`{"action":"announce","info_hash":`+js(ihX[:])+`,"peer_id":`+js(idA[:])+`}`))
	sb.Message(context.Background(), offerMessage(ihX, idB, 1))
	if got := a.take(t); len(got) != 2 || got[1]["offer"] == nil {
		t.Errorf("a got %v, want its reply and b's offer", got)
	}
	sa.Closed()
	sb.Closed()
	if tot := e.h.Registry().Totals(); tot.Peers() != 0 {
		t.Errorf("totals %+v after both closed", tot)
	}
}
