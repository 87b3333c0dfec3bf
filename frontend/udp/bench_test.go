package udp

import (
	"context"
	"net/netip"
	"testing"

	"trackd/tracker"
)

// The benchmarks run a whole packet through Handle: id check, parse, core,
// in-memory store, reply encoding. No socket.

func BenchmarkHandleConnect(b *testing.B) {
	f := newFixture(b, tracker.Config{}, Options{})
	from := ap("192.0.2.1:4000")
	pkt := connectPkt(1)
	out := make([]byte, 0, 2048)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		f.h.Handle(ctx, from, pkt, out)
	}
}

func benchAnnounce(b *testing.B, from netip.AddrPort, v6 bool) {
	f := newFixture(b, tracker.Config{}, Options{})
	ih := hash20("bench")
	f.fill(b, ih, 200, 50, v6)
	id := f.connect(b, from)
	a := announce{id: id, tid: 1, ih: ih, pid: hash20("me"), left: 1, numWant: 50, port: 6881}
	pkt := a.bytes()
	out := make([]byte, 0, 2048)
	ctx := context.Background()
	if r := decodeAnnounce(b, f.h.Handle(ctx, from, pkt, out), 1, v6); len(r.peers) != 50 {
		b.Fatalf("%d peers", len(r.peers))
	}
	b.ReportAllocs()
	for b.Loop() {
		f.h.Handle(ctx, from, pkt, out)
	}
}

// BenchmarkHandleAnnounce: a leecher re-announcing in a swarm of 200 IPv4
// peers, num_want 50.
func BenchmarkHandleAnnounce(b *testing.B) { benchAnnounce(b, ap("192.0.2.1:4000"), false) }

// BenchmarkHandleAnnounceV6: the same over IPv6, 200 IPv6 peers.
func BenchmarkHandleAnnounceV6(b *testing.B) { benchAnnounce(b, ap("[2001:db8:9::1]:4000"), true) }

// BenchmarkHandleScrape: 10 hashes, each a swarm of 20 peers.
func BenchmarkHandleScrape(b *testing.B) {
	f := newFixture(b, tracker.Config{}, Options{})
	from := ap("192.0.2.1:4000")
	var hashes [][20]byte
	for i := range 10 {
		ih := hash20(string(rune('a' + i)))
		f.fill(b, ih, 20, 5, false)
		hashes = append(hashes, ih)
	}
	pkt := scrapePkt(f.connect(b, from), 1, hashes...)
	out := make([]byte, 0, 2048)
	ctx := context.Background()
	if r := f.h.Handle(ctx, from, pkt, out); len(r) != 8+12*10 {
		b.Fatalf("reply %x", r)
	}
	b.ReportAllocs()
	for b.Loop() {
		f.h.Handle(ctx, from, pkt, out)
	}
}

// BenchmarkConnIDCheck is the id check alone (two AES blocks when the id
// is of the current window).
func BenchmarkConnIDCheck(b *testing.B) {
	f := newFixture(b, tracker.Config{}, Options{})
	from := ap("[2001:db8::1]:4000")
	var buf idScratch
	id := f.h.ids.issue(&buf, from)
	b.ReportAllocs()
	for b.Loop() {
		if !f.h.ids.valid(&buf, from, id) {
			b.Fatal("invalid")
		}
	}
}
