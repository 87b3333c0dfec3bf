package udp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/internal/race"
	"trackd/internal/ratelog"
	"trackd/metrics"
	"trackd/store"
	"trackd/tracker"
)

func TestConnect(t *testing.T) {
	f := newFixture(t, tracker.Config{}, Options{})
	from := ap("192.0.2.1:4000")
	good := connectPkt(0xdeadbeef)
	wrongMagic := slices.Clone(good)
	wrongMagic[7] ^= 1
	for _, tc := range []struct {
		name  string
		from  netip.AddrPort
		pkt   []byte
		reply bool
	}{
		{"good", from, good, true},
		{"longer than 16 bytes: the rest is ignored", from, append(slices.Clone(good), 1, 2, 3, 4), true},
		{"IPv6 sender", ap("[2001:db8::1]:4000"), good, true},
		{"wrong magic: silent drop", from, wrongMagic, false},
		{"zero magic: silent drop", from, header(0, actionConnect, 1), false},
		{"15 bytes: silent drop", from, good[:15], false},
		{"empty: silent drop", from, nil, false},
		{"invalid sender address: silent drop", netip.AddrPort{}, good, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reply := f.do(tc.from, tc.pkt)
			if !tc.reply {
				if len(reply) != 0 {
					t.Fatalf("reply %x, want none", reply)
				}
				return
			}
			if len(reply) != 16 || be32(reply) != actionConnect || be32(reply[4:]) != 0xdeadbeef {
				t.Fatalf("reply %x, want a connect reply for transaction deadbeef", reply)
			}
			id := binary.BigEndian.Uint64(reply[8:])
			if !f.h.ids.valid(new(idScratch), canonicalAddrPort(tc.from), id) {
				t.Errorf("connection id %x is not valid for %v", id, tc.from)
			}
		})
	}
}

func TestShortPacketsDropped(t *testing.T) {
	f := newFixture(t, tracker.Config{}, Options{})
	from := ap("192.0.2.1:4000")
	id := f.connect(t, from)
	pkts := [][]byte{
		connectPkt(1),
		header(id, actionAnnounce, 1),
		header(id, actionScrape, 1),
		header(id, 99, 1),
	}
	for _, p := range pkts {
		for n := range headerLen {
			if reply := f.do(from, p[:n]); len(reply) != 0 {
				t.Errorf("%d-byte packet %x: reply %x, want none", n, p[:n], reply)
			}
		}
	}
}

func TestUnknownAction(t *testing.T) {
	f := newFixture(t, tracker.Config{}, Options{})
	from := ap("192.0.2.1:4000")
	id := f.connect(t, from)
	for _, tc := range []struct {
		name string
		pkt  []byte
		want string
	}{
		{"valid id", header(id, 7, 42), "unknown action"},
		{"valid id, action error", header(id, actionError, 42), "unknown action"},
		{"valid id, action 2^32-1", header(id, 0xffffffff, 42), "unknown action"},
		{"valid id, with a body", append(header(id, 7, 42), make([]byte, 100)...), "unknown action"},
		// An unverified sender gets the invalid-id error cut to the
		// request's 16 bytes: 8 of header, 8 of message.
		{"invalid id", header(id+1, 7, 42), "invalid "},
		{"invalid id, 30 bytes", append(header(id+1, 7, 42), make([]byte, 14)...), "invalid connection id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := errorText(t, f.do(from, tc.pkt), 42); got != tc.want {
				t.Errorf("error %q, want %q", got, tc.want)
			}
		})
	}
}

func TestConnectionIDs(t *testing.T) {
	f := newFixture(t, tracker.Config{}, Options{})
	from := ap("192.0.2.1:4000")
	scrape := func(h *Handler, from netip.AddrPort, id uint64) bool {
		t.Helper()
		pkt := scrapePkt(id, 5, hash20("x"))
		reply := h.Handle(context.Background(), from, pkt, nil)
		switch {
		case len(reply) >= 8 && be32(reply) == actionScrape:
			return true
		case errorText(t, reply, 5) == "invalid connection id"[:min(21, len(pkt)-8)]:
			return false
		}
		t.Fatalf("unexpected reply %x", reply)
		return false
	}
	steps := []struct {
		name  string
		after time.Duration // since the connect
		from  netip.AddrPort
		valid bool
	}{
		{"now", 0, from, true},
		{"v4-mapped form of the same sender", 0, ap("[::ffff:192.0.2.1]:4000"), true},
		{"another address", 0, ap("192.0.2.2:4000"), false},
		{"another port", 0, ap("192.0.2.1:4001"), false},
		{"an IPv6 address", 0, ap("[2001:db8::1]:4000"), false},
		{"after 59 s", 59 * time.Second, from, true},
		{"after 1 min", time.Minute, from, true},
		{"after 2 min", 2 * time.Minute, from, true},
		{"after 2 min 59 s, if issued at the start of a window", 2*time.Minute + 59*time.Second, from, true},
		{"after 3 min", 3 * time.Minute, from, false},
		{"after 10 min", 10 * time.Minute, from, false},
	}
	// Issue at the start of a window so that "2 min 59 s" is still
	// inside the third window.
	start := f.now.Truncate(time.Minute)
	*f.now = start
	id := f.connect(t, from)
	for _, s := range steps {
		*f.now = start.Add(s.after)
		if got := scrape(f.h, s.from, id); got != s.valid {
			t.Errorf("%s: accepted %v, want %v", s.name, got, s.valid)
		}
	}
	// Issued at the last second of a window: still valid 2 minutes later.
	*f.now = start.Add(59 * time.Second)
	id = f.connect(t, from)
	*f.now = start.Add(59*time.Second + 2*time.Minute)
	if !scrape(f.h, from, id) {
		t.Error("an id issued at the end of a window is refused 2 minutes later")
	}
	*f.now = start.Add(59*time.Second + 2*time.Minute + time.Second)
	if scrape(f.h, from, id) {
		t.Error("an id is accepted 2 min 1 s after the end of the window it was issued in")
	}

	// The id of an IPv6 client depends on all of its address.
	*f.now = start
	v6 := ap("[2001:db8::1:2:3:4]:4000")
	id6 := f.connect(t, v6)
	if !scrape(f.h, v6, id6) {
		t.Error("IPv6 id refused")
	}
	for i := range 16 {
		a := v6.Addr().As16()
		a[i] ^= 0x80
		if other := netip.AddrPortFrom(netip.AddrFrom16(a), 4000); scrape(f.h, other, id6) {
			t.Errorf("id of %v accepted from %v", v6, other)
		}
	}
	// A zone does not change the client.
	if !scrape(f.h, netip.AddrPortFrom(v6.Addr().WithZone("eth0"), 4000), id6) {
		t.Error("IPv6 id refused with a zone")
	}
	if id6 == f.connect(t, ap("[2001:db8::1:2:3:5]:4000")) {
		t.Error("two IPv6 addresses got the same id")
	}

	// Handlers that share a secret accept each other's ids; different
	// or random secrets do not.
	for _, tc := range []struct {
		name   string
		secret []byte
		valid  bool
	}{
		{"same secret", testSecret, true},
		{"same secret, another copy", []byte(string(testSecret)), true},
		{"other secret", []byte("another secret"), false},
		{"random secret", nil, false},
	} {
		opts := Options{Secret: tc.secret, Now: func() time.Time { return *f.now }}
		other := NewHandler(f.tr, opts)
		if got := scrape(other, from, f.connect(t, from)); got != tc.valid {
			t.Errorf("%s: id of the first handler accepted %v, want %v", tc.name, got, tc.valid)
		}
	}
	r1 := NewHandler(f.tr, Options{Now: func() time.Time { return *f.now }})
	r2 := NewHandler(f.tr, Options{Now: func() time.Time { return *f.now }})
	var buf idScratch
	if r1.ids.issue(&buf, from) == r2.ids.issue(&buf, from) {
		t.Error("two handlers with random secrets issue the same id")
	}
}

// TestAnnounceFamilies checks that a reply carries the peers of the
// request's family, from a store that hands out compact peers
// (store.CompactAnnouncer) and from one that does not.
func TestAnnounceFamilies(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprintf("plain=%v", plain), func(t *testing.T) {
			testAnnounceFamilies(t, newFixtureOf(t, tracker.Config{}, Options{}, plain))
		})
	}
}

func testAnnounceFamilies(t *testing.T, f *fixture) {
	ih := hash20("families")
	f.fill(t, ih, 5, 2, false)
	f.fill(t, ih, 4, 1, true)
	for _, tc := range []struct {
		name string
		from netip.AddrPort
		v6   bool
		want int // peers
	}{
		{"IPv4 sender gets IPv4 peers", ap("192.0.2.1:4000"), false, 5},
		{"IPv6 sender gets IPv6 peers", ap("[2001:db8:1::1]:4000"), true, 4},
		// It also sees the IPv4 sender before it.
		{"v4-mapped sender is an IPv4 client", ap("[::ffff:192.0.2.9]:4000"), false, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := f.connect(t, tc.from)
			a := announce{id: id, tid: 77, ih: ih, pid: hash20(tc.name), left: 10, numWant: 50, port: 6881, event: udpEventStarted}
			r := decodeAnnounce(t, f.do(tc.from, a.bytes()), 77, tc.v6)
			if len(r.peers) != tc.want {
				t.Fatalf("%d peers, want %d: %v", len(r.peers), tc.want, r.peers)
			}
			for _, p := range r.peers {
				if p.Addr().Is4() == tc.v6 || p.Addr().Is4In6() || p.Port() != 6881 {
					t.Errorf("peer %v of the wrong family or port", p)
				}
			}
			if r.interval != 60 {
				t.Errorf("interval %d, want 60", r.interval)
			}
		})
	}
	// All three announcers joined: the counts cover both families, and
	// the v4-mapped sender was stored as plain IPv4. The last announce
	// turns the first announcer (same address and port) into a seeder:
	// 3+1 seeders, 3+3+2 leechers.
	id := f.connect(t, ap("192.0.2.1:4000"))
	a := announce{id: id, tid: 1, ih: ih, pid: hash20("x"), left: 0, numWant: 200, port: 6881}
	r := decodeAnnounce(t, f.do(ap("192.0.2.1:4000"), a.bytes()), 1, false)
	if r.seeders != 4 || r.leechers != 8 {
		t.Errorf("seeders %d leechers %d, want 4 and 8", r.seeders, r.leechers)
	}
	if !slices.Contains(r.peers, ap("192.0.2.9:6881")) {
		t.Errorf("the v4-mapped announcer is not among the IPv4 peers %v", r.peers)
	}
}

func TestAnnounceIPField(t *testing.T) {
	f := newFixture(t, tracker.Config{}, Options{
		TrustIPParam: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8:1::/48")},
	})
	for _, tc := range []struct {
		name   string
		from   netip.AddrPort
		ip     [4]byte
		stored netip.AddrPort // as another client sees it
		v6     bool
	}{
		{"trusted IPv4 sender", ap("192.0.2.1:4000"), [4]byte{198, 51, 100, 7}, ap("198.51.100.7:6881"), false},
		{"trusted v4-mapped sender", ap("[::ffff:192.0.2.1]:4000"), [4]byte{198, 51, 100, 8}, ap("198.51.100.8:6881"), false},
		{"trusted sender, ip 0", ap("192.0.2.2:4000"), [4]byte{}, ap("192.0.2.2:6881"), false},
		{"untrusted IPv4 sender", ap("203.0.113.1:4000"), [4]byte{198, 51, 100, 9}, ap("203.0.113.1:6881"), false},
		{"trusted IPv6 sender: the 4-byte field is ignored", ap("[2001:db8:1::5]:4000"), [4]byte{198, 51, 100, 10}, ap("[2001:db8:1::5]:6881"), true},
		{"untrusted IPv6 sender", ap("[2001:db8:2::5]:4000"), [4]byte{198, 51, 100, 11}, ap("[2001:db8:2::5]:6881"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ih := hash20(tc.name)
			id := f.connect(t, tc.from)
			a := announce{id: id, tid: 2, ih: ih, pid: hash20("a"), left: 1, ip: tc.ip, numWant: 50, port: 6881}
			decodeAnnounce(t, f.do(tc.from, a.bytes()), 2, tc.v6)
			// Another client of the same family sees where it was stored.
			other := ap("203.0.113.200:5000")
			if tc.v6 {
				other = ap("[2001:db8:3::1]:5000")
			}
			oid := f.connect(t, other)
			b := announce{id: oid, tid: 3, ih: ih, pid: hash20("b"), left: 1, numWant: 50, port: 7000}
			r := decodeAnnounce(t, f.do(other, b.bytes()), 3, tc.v6)
			if len(r.peers) != 1 || r.peers[0] != tc.stored {
				t.Errorf("peers %v, want [%v]", r.peers, tc.stored)
			}
		})
	}
}

func TestAnnounceNumWant(t *testing.T) {
	f := newFixture(t, tracker.Config{}, Options{})
	ih := hash20("numwant")
	f.fill(t, ih, 250, 0, false)
	from := ap("192.0.2.1:4000")
	id := f.connect(t, from)
	for _, tc := range []struct {
		numWant int32
		want    int
	}{
		{-1, 50}, // the default
		{-7, 50}, // any negative value
		{-1 << 31, 50},
		{0, 0},
		{1, 1},
		{10, 10},
		{200, 200},     // the cap
		{201, 200},     // capped
		{1 << 30, 200}, // capped
	} {
		a := announce{id: id, tid: 9, ih: ih, pid: hash20("me"), left: 1, numWant: tc.numWant, port: 6881}
		r := decodeAnnounce(t, f.do(from, a.bytes()), 9, false)
		if len(r.peers) != tc.want {
			t.Errorf("num_want %d: %d peers, want %d", tc.numWant, len(r.peers), tc.want)
		}
		if r.leechers != 251 || r.seeders != 0 {
			t.Errorf("num_want %d: leechers %d seeders %d", tc.numWant, r.leechers, r.seeders)
		}
	}
}

// TestAnnounceFitsOneDatagram: however many peers a client asks for and the
// config allows, a reply fits one unfragmented datagram (1472 bytes of
// payload over IPv4, 1232 over IPv6).
func TestAnnounceFitsOneDatagram(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprintf("plain=%v", plain), func(t *testing.T) {
			testAnnounceFitsOneDatagram(t, newFixtureOf(t, tracker.Config{MaxNumWant: 1000, DefaultNumWant: 1000}, Options{}, plain))
		})
	}
}

func testAnnounceFitsOneDatagram(t *testing.T, f *fixture) {
	for _, tc := range []struct {
		v6       bool
		from     string
		max, lim int
	}{
		{false, "192.0.2.1:4000", maxPeers4, 1472},
		{true, "[2001:db8::1]:4000", maxPeers6, 1232},
	} {
		ih := hash20(tc.from)
		f.fill(t, ih, 300, 0, tc.v6)
		from := ap(tc.from)
		id := f.connect(t, from)
		for _, numWant := range []int32{-1, 1000} {
			a := announce{id: id, tid: 9, ih: ih, pid: hash20("me"), left: 1, numWant: numWant, port: 6881}
			reply := f.do(from, a.bytes())
			r := decodeAnnounce(t, reply, 9, tc.v6)
			if len(r.peers) != tc.max || len(reply) > tc.lim {
				t.Errorf("%s num_want %d: %d peers in %d bytes, want %d peers within %d bytes", tc.from, numWant, len(r.peers), len(reply), tc.max, tc.lim)
			}
		}
	}
}

// TestAnnounceEvents follows one client through started, a re-announce,
// completed (twice), paused and stopped, checking the counts each step as
// the HTTP frontend would report them.
func TestAnnounceEvents(t *testing.T) {
	f := newFixture(t, tracker.Config{}, Options{})
	ih := hash20("events")
	f.fill(t, ih, 3, 1, false) // 1 seeder, 2 leechers
	from := ap("192.0.2.1:4000")
	id := f.connect(t, from)
	scrapeStats := func() [3]uint32 { // seeders, completed, leechers
		t.Helper()
		reply := f.do(from, scrapePkt(id, 4, ih))
		if len(reply) != 20 || be32(reply) != actionScrape {
			t.Fatalf("scrape reply %x", reply)
		}
		return [3]uint32{be32(reply[8:]), be32(reply[12:]), be32(reply[16:])}
	}
	for _, step := range []struct {
		name      string
		event     uint32
		left      int64
		peers     int
		stats     [3]uint32
		leechSeed [2]int32 // leechers and seeders in the announce reply
	}{
		{"started", udpEventStarted, 100, 3, [3]uint32{1, 0, 3}, [2]int32{3, 1}},
		{"re-announce", udpEventNone, 50, 3, [3]uint32{1, 0, 3}, [2]int32{3, 1}},
		// A seeder gets only leechers.
		{"completed", udpEventCompleted, 0, 2, [3]uint32{2, 1, 2}, [2]int32{2, 2}},
		{"completed again counts once", udpEventCompleted, 0, 2, [3]uint32{2, 1, 2}, [2]int32{2, 2}},
		{"paused (BEP 21) is a regular announce", udpEventPaused, 0, 2, [3]uint32{2, 1, 2}, [2]int32{2, 2}},
		{"stopped", udpEventStopped, 0, 0, [3]uint32{1, 1, 2}, [2]int32{2, 1}},
	} {
		a := announce{id: id, tid: 8, ih: ih, pid: hash20("me"), left: step.left, event: step.event, numWant: -1, port: 6881}
		r := decodeAnnounce(t, f.do(from, a.bytes()), 8, false)
		if len(r.peers) != step.peers {
			t.Errorf("%s: %d peers, want %d", step.name, len(r.peers), step.peers)
		}
		if [2]int32{r.leechers, r.seeders} != step.leechSeed {
			t.Errorf("%s: leechers, seeders = %d, %d, want %v", step.name, r.leechers, r.seeders, step.leechSeed)
		}
		if got := scrapeStats(); got != step.stats {
			t.Errorf("%s: scrape %v, want %v", step.name, got, step.stats)
		}
	}
}

// TestAnnounceLenient: announces as real clients send them, through the
// handler, the core and the in-memory store. WebTorrent's node client
// sends left = 2^64-1 ("unknown") on its stopped announce: the peer must
// leave the swarm. Negative counts, unused fields and events past 3 never
// fail an announce.
func TestAnnounceLenient(t *testing.T) {
	f := newFixture(t, tracker.Config{}, Options{})
	ih := hash20("lenient swarm")
	type step struct {
		name              string
		from              string
		a                 announce // id, tid, ih filled in
		leechers, seeders int32
	}
	const allOnes = -1 // left = 2^64-1 on the wire
	for _, st := range []step{
		{"seeder", "192.0.2.1:4000", announce{pid: hash20("s"), left: 0, event: udpEventStarted, port: 6881}, 0, 1},
		{"WebTorrent started, left unknown", "192.0.2.2:4000", announce{pid: hash20("-WW0107-a"), left: allOnes, event: udpEventStarted, port: 6882}, 1, 1},
		{"left -2^63", "192.0.2.3:4000", announce{pid: hash20("c"), left: -1 << 63, event: udpEventStarted, port: 6883}, 2, 1},
		{"negative downloaded and uploaded, random key", "192.0.2.4:4000", announce{pid: hash20("d"), left: 5, downloaded: -1, uploaded: -5, key: 0xdeadbeef, port: 6884}, 3, 1},
		{"paused (libtorrent, 4)", "192.0.2.1:4000", announce{pid: hash20("s"), left: 0, event: udpEventPaused, port: 6881}, 3, 1},
		{"event 5", "192.0.2.4:4000", announce{pid: hash20("d"), left: 5, event: 5, port: 6884}, 3, 1},
		{"event 2^32-1", "192.0.2.4:4000", announce{pid: hash20("d"), left: 5, event: 0xffffffff, port: 6884}, 3, 1},
		{"WebTorrent stopped, left 2^64-1", "192.0.2.2:4000", announce{pid: hash20("-WW0107-a"), left: allOnes, event: udpEventStopped, port: 6882}, 2, 1},
		{"stopped, left -2^63", "192.0.2.3:4000", announce{pid: hash20("c"), left: -1 << 63, event: udpEventStopped, port: 6883}, 1, 1},
	} {
		from := ap(st.from)
		a := st.a
		a.id, a.tid, a.ih, a.numWant = f.connect(t, from), 9, ih, -1
		r := decodeAnnounce(t, f.do(from, a.bytes()), 9, false)
		if r.leechers != st.leechers || r.seeders != st.seeders {
			t.Errorf("%s: leechers %d, seeders %d; want %d, %d", st.name, r.leechers, r.seeders, st.leechers, st.seeders)
		}
	}
	// The stopped peers are gone: a scrape counts what is left.
	from := ap("192.0.2.9:4000")
	reply := f.do(from, scrapePkt(f.connect(t, from), 10, ih))
	if len(reply) != 20 || be32(reply) != actionScrape {
		t.Fatalf("scrape reply %x", reply)
	}
	if seeders, leechers := be32(reply[8:]), be32(reply[16:]); seeders != 1 || leechers != 1 {
		t.Errorf("after the stopped announces: %d seeders, %d leechers; want 1, 1", seeders, leechers)
	}
}

func TestAnnounceErrors(t *testing.T) {
	f := newFixture(t, tracker.Config{}, Options{})
	from := ap("192.0.2.1:4000")
	id := f.connect(t, from)
	good := announce{id: id, tid: 6, ih: hash20("e"), pid: hash20("p"), left: 1, numWant: -1, port: 6881}
	with := func(mod func(*announce)) []byte {
		a := good
		mod(&a)
		return a.bytes()
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want string
	}{
		{"97 bytes", good.bytes()[:97], "announce packet too short"},
		{"header only", good.bytes()[:16], "announce packet too short"},
		{"port 0", with(func(a *announce) { a.port = 0 }), string(tracker.ErrPortZero)},
		{"truncated URLData", with(func(a *announce) { a.options = []byte{optURLData, 5, 'a'} }), "malformed BEP 41 option"},
		{"URLData without length", with(func(a *announce) { a.options = []byte{optNOP, optURLData} }), "malformed BEP 41 option"},
		{"unknown option", with(func(a *announce) { a.options = []byte{optNOP, 3, 0} }), "malformed BEP 41 option"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := errorText(t, f.do(from, tc.pkt), 6); got != tc.want {
				t.Errorf("error %q, want %q", got, tc.want)
			}
		})
	}
	// Options that parse are accepted.
	for _, opts := range [][]byte{
		{optNOP, optNOP},
		{optURLData, 3, '/', 'a', 'n', optURLData, 2, '?', 'x'},
		{optEndOfOptions, 0xff, 0xff},
		{optURLData, 0},
	} {
		a := good
		a.options = opts
		decodeAnnounce(t, f.do(from, a.bytes()), 6, false)
	}
}

func TestScrape(t *testing.T) {
	f := newFixture(t, tracker.Config{}, Options{})
	from := ap("192.0.2.1:4000")
	id := f.connect(t, from)
	var hashes [][20]byte
	for i := range 75 {
		ih := hash20("scrape" + string(rune('A'+i)))
		hashes = append(hashes, ih)
		if i < 10 {
			f.fill(t, ih, i+2, i, false) // i seeders, 2 leechers
		}
	}
	check := func(t *testing.T, reply []byte, hs [][20]byte) {
		t.Helper()
		if len(reply) != 8+12*len(hs) || be32(reply) != actionScrape || be32(reply[4:]) != 3 {
			t.Fatalf("scrape reply %x", reply)
		}
		for i, h := range hs {
			var want [3]uint32
			if j := slices.Index(hashes[:10], h); j >= 0 {
				want = [3]uint32{uint32(j), 0, 2}
			}
			got := [3]uint32{be32(reply[8+12*i:]), be32(reply[12+12*i:]), be32(reply[16+12*i:])}
			if got != want {
				t.Errorf("hash %d: seeders, completed, leechers = %v, want %v", i, got, want)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		hashes [][20]byte
	}{
		{"one hash", hashes[3:4]},
		{"an unknown hash", hashes[50:51]},
		{"ten hashes", hashes[:10]},
		{"duplicates, in request order", [][20]byte{hashes[5], hashes[1], hashes[5]}},
		{"74 hashes", hashes[:74]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check(t, f.do(from, scrapePkt(id, 3, tc.hashes...)), tc.hashes)
		})
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want string
	}{
		{"75 hashes", scrapePkt(id, 3, hashes...), "too many info hashes: at most 74 per scrape"},
		{"no hash", scrapePkt(id, 3), "scrape without info hashes"},
		{"partial hash", scrapePkt(id, 3, hashes[0])[:16+19], "scrape packet ends in a partial info hash"},
		{"one and a half hashes", scrapePkt(id, 3, hashes[0], hashes[1])[:16+30], "scrape packet ends in a partial info hash"},
		{"one byte", append(scrapePkt(id, 3), 1), "scrape packet ends in a partial info hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := errorText(t, f.do(from, tc.pkt), 3); got != tc.want {
				t.Errorf("error %q, want %q", got, tc.want)
			}
		})
	}
	// The core's own, lower limit is a client error too.
	g := newFixture(t, tracker.Config{MaxScrapeHashes: 5}, Options{})
	gid := g.connect(t, from)
	if got := errorText(t, g.do(from, scrapePkt(gid, 3, hashes[:6]...)), 3); !strings.HasPrefix(got, "too many info_hash values") {
		t.Errorf("error %q from the core's limit", got)
	}
}

// TestNoAmplification checks that every reply to a packet without a valid
// connection id for its sender is at most as long as the packet.
func TestNoAmplification(t *testing.T) {
	f := newFixture(t, tracker.Config{}, Options{})
	from := ap("192.0.2.1:4000")
	other := ap("192.0.2.2:4000")
	id := f.connect(t, other) // valid, but for someone else
	f.fill(t, hash20("amp"), 100, 10, false)
	a := announce{id: id, tid: 1, ih: hash20("amp"), pid: hash20("p"), left: 1, numWant: 200, port: 6881}
	full := a.bytes()
	var pkts [][]byte
	for n := 0; n <= len(full); n++ {
		pkts = append(pkts, full[:n])
	}
	for _, action := range []uint32{actionConnect, actionAnnounce, actionScrape, actionError, 4, 0xffffffff} {
		for _, cid := range []uint64{0, id, protocolID, ^uint64(0)} {
			h := header(cid, action, 1)
			pkts = append(pkts, h, append(h, 0), append(h, make([]byte, 20)...), append(h, make([]byte, 1500)...))
		}
	}
	pkts = append(pkts, scrapePkt(id, 1, hash20("amp")), scrapePkt(id, 1, make([][20]byte, 74)...))
	for _, p := range pkts {
		for _, sender := range []netip.AddrPort{from, ap("[2001:db8::1]:4000"), ap("[::ffff:192.0.2.2]:4001")} {
			reply := f.do(sender, p)
			if len(reply) > len(p) {
				t.Errorf("from %v: %d-byte reply %x to %d-byte packet %x", sender, len(reply), reply, len(p), p)
			}
		}
	}
	// The same packets from the right sender do get full answers.
	if reply := f.do(other, full); len(reply) <= len(full) {
		t.Errorf("a verified announce got only %d bytes", len(reply))
	}
}

// failingStore fails every call, as a lost database connection would.
type failingStore struct{}

var errStoreDown = errors.New("store is down")

func (failingStore) Announce(context.Context, store.Announce, []bittorrent.Peer) ([]bittorrent.Peer, bittorrent.Stats, error) {
	return nil, bittorrent.Stats{}, errStoreDown
}
func (failingStore) Scrape(context.Context, []bittorrent.InfoHash, []bittorrent.Stats) ([]bittorrent.Stats, error) {
	return nil, errStoreDown
}
func (failingStore) ScrapeAll(context.Context, func(bittorrent.InfoHash, bittorrent.Stats) error) error {
	return errStoreDown
}
func (failingStore) Totals(context.Context) (store.Totals, error) {
	return store.Totals{}, errStoreDown
}
func (failingStore) Close() error { return nil }

func TestServerErrors(t *testing.T) {
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	counts := map[string]int{}
	errs := ratelog.New(log, ratelog.Options{Count: func(kind string) { counts[kind]++ }})
	h := NewHandler(tracker.New(tracker.Config{}, failingStore{}), Options{Secret: testSecret, Logger: log, Errors: errs})
	from := ap("192.0.2.1:4000")
	ctx := context.Background()
	reply := h.Handle(ctx, from, connectPkt(1), nil)
	id := binary.BigEndian.Uint64(reply[8:])
	a := announce{id: id, tid: 2, ih: hash20("x"), pid: hash20("p"), left: 1, numWant: -1, port: 6881}
	// The first store failure is logged; the ones that follow within
	// the interval are only counted.
	for i, pkt := range [][]byte{a.bytes(), scrapePkt(id, 2, hash20("x")), a.bytes()} {
		logBuf.Reset()
		if got := errorText(t, h.Handle(ctx, from, pkt, nil), 2); got != "internal tracker error" {
			t.Errorf("error %q, want internal tracker error", got)
		}
		logged := strings.Contains(logBuf.String(), "store is down") && strings.Contains(logBuf.String(), "kind=store")
		if logged != (i == 0) {
			t.Errorf("failure %d: logged %q", i, logBuf.String())
		}
	}
	if counts[ratelog.KindStore] != 3 {
		t.Errorf("store errors counted: %v, want 3", counts)
	}
	// A client error is not logged.
	logBuf.Reset()
	h.Handle(ctx, from, scrapePkt(id, 2), nil)
	if logBuf.Len() != 0 {
		t.Errorf("client error logged: %q", logBuf.String())
	}
	// With no logger, server errors are dropped quietly.
	h = NewHandler(tracker.New(tracker.Config{}, failingStore{}), Options{Secret: testSecret})
	if got := errorText(t, h.Handle(ctx, from, a.bytes(), nil), 2); got != "internal tracker error" {
		t.Errorf("error %q without a logger", got)
	}
}

// TestReplyReusesOut checks the contract of out: the reply is appended to
// out[:0], in place when it fits.
func TestReplyReusesOut(t *testing.T) {
	f := newFixture(t, tracker.Config{}, Options{})
	out := make([]byte, 5, 64)
	copy(out, "junk!")
	reply := f.h.Handle(context.Background(), ap("192.0.2.1:1"), connectPkt(1), out)
	if len(reply) != 16 || &reply[0] != &out[:1][0] {
		t.Errorf("reply not built in out: %x", reply)
	}
	if reply := f.h.Handle(context.Background(), ap("192.0.2.1:1"), []byte("short"), out); len(reply) != 0 {
		t.Errorf("dropped packet returned %x", reply)
	}
}

// TestConcurrent exercises the pool and the id check from many goroutines
// (run with -race).
func TestConcurrent(t *testing.T) {
	f := newFixture(t, tracker.Config{}, Options{})
	ih := hash20("concurrent")
	f.fill(t, ih, 50, 10, false)
	f.fill(t, ih, 50, 10, true)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(g)}), 4000)
			if g%2 == 1 {
				from = netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(g)}), 4000)
			}
			out := make([]byte, 0, 4096)
			for i := range 200 {
				reply := f.h.Handle(context.Background(), from, connectPkt(uint32(i)), out)
				id := binary.BigEndian.Uint64(reply[8:])
				a := announce{id: id, tid: uint32(i), ih: ih, pid: hash20("c"), left: int64(i % 2), numWant: 20, port: 6881,
					options: []byte{optURLData, 4, '/', 'a', 'n', 'n'}}
				reply = f.h.Handle(context.Background(), from, a.bytes(), out)
				if be32(reply) != actionAnnounce || be32(reply[4:]) != uint32(i) {
					t.Errorf("announce reply %x", reply)
					return
				}
				reply = f.h.Handle(context.Background(), from, scrapePkt(id, uint32(i), ih, ih), out)
				if be32(reply) != actionScrape || len(reply) != 32 {
					t.Errorf("scrape reply %x", reply)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	// with metrics on: counting a request allocates nothing either
	f := newFixture(t, tracker.Config{}, Options{Metrics: metrics.New(metrics.Options{})})
	ih := hash20("allocs")
	f.fill(t, ih, 100, 20, false)
	f.fill(t, ih, 100, 20, true)
	v4, v6 := ap("192.0.2.1:4000"), ap("[2001:db8:9::1]:4000")
	id4, id6 := f.connect(t, v4), f.connect(t, v6)
	a4 := announce{id: id4, tid: 1, ih: ih, pid: hash20("p4"), left: 1, numWant: 50, port: 6881}
	a6 := announce{id: id6, tid: 1, ih: ih, pid: hash20("p6"), left: 1, numWant: 50, port: 6881}
	opts := a4
	opts.options = []byte{optNOP, optURLData, 9, '/', 'a', 'n', 'n', 'o', 'u', 'n', 'c', 'e', optURLData, 4, '?', 'a', '=', 'b', optEndOfOptions}
	var hashes [][20]byte
	for i := range 10 {
		hashes = append(hashes, hash20(string(rune(i))))
	}
	hashes[0] = ih
	out := make([]byte, 0, 4096)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		from netip.AddrPort
		pkt  []byte
	}{
		{"connect", v4, connectPkt(1)},
		{"connect IPv6", v6, connectPkt(1)},
		{"announce IPv4", v4, a4.bytes()},
		{"announce IPv6", v6, a6.bytes()},
		{"announce with BEP 41 options", v4, opts.bytes()},
		{"scrape", v4, scrapePkt(id4, 1, hashes...)},
		{"invalid connection id", v4, scrapePkt(id6, 1, hashes...)},
		{"client error", v4, scrapePkt(id4, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if reply := f.h.Handle(ctx, tc.from, tc.pkt, out); len(reply) == 0 {
				t.Fatal("no reply")
			}
			allocs := testing.AllocsPerRun(200, func() { f.h.Handle(ctx, tc.from, tc.pkt, out) })
			if allocs != 0 {
				t.Errorf("%.1f allocations per packet", allocs)
			}
		})
	}
}
