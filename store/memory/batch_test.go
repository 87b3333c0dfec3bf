package memory

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/store"
)

// TestAnnounceBatch checks that AnnounceBatch leaves the store as the same
// announces one by one do (counts, downloads, expiry), counts the ones
// that fail, and allocates nothing.
func TestAnnounceBatch(t *testing.T) {
	ctx := context.Background()
	h1, h2 := bittorrent.InfoHash{1}, bittorrent.InfoHash{2}
	peer := func(s string) bittorrent.Peer { return bittorrent.Peer{Addr: netip.MustParseAddrPort(s)} }
	as := []store.Announce{
		{InfoHash: h1, Peer: peer("192.0.2.1:1"), Event: bittorrent.EventStarted},
		{InfoHash: h1, Peer: peer("192.0.2.2:1"), Seeder: true, NumWant: 50},
		{InfoHash: h1, Peer: peer("192.0.2.1:1"), Event: bittorrent.EventCompleted, Seeder: true},
		{InfoHash: h1, Peer: peer("192.0.2.1:1"), Event: bittorrent.EventCompleted, Seeder: true}, // counted once
		{InfoHash: h2, Peer: peer("[2001:db8::1]:2")},
		{InfoHash: h2, Peer: peer("192.0.2.3:1")},
		{InfoHash: h2, Peer: peer("192.0.2.3:1"), Event: bittorrent.EventStopped},
		{InfoHash: h2, Peer: bittorrent.Peer{}}, // no address: fails
	}
	const lifetime = time.Minute
	clock := newFakeClock()
	one := NewWithConfig(store.Options{PeerLifetime: lifetime, Now: clock.Now}, Config{SweepInterval: -1})
	defer one.Close()
	batch := NewWithConfig(store.Options{PeerLifetime: lifetime, Now: clock.Now}, Config{SweepInterval: -1})
	defer batch.Close()
	wantFailed := 0
	for _, a := range as {
		if _, _, err := one.Announce(ctx, a, nil); err != nil {
			wantFailed++
		}
	}
	if got := batch.AnnounceBatch(ctx, as); got != wantFailed || got != 1 {
		t.Errorf("AnnounceBatch failed %d, Announce %d; want 1", got, wantFailed)
	}
	if as[1].NumWant != 50 {
		t.Errorf("AnnounceBatch changed NumWant to %d", as[1].NumWant)
	}
	hashes := []bittorrent.InfoHash{h1, h2}
	same := func(when string) {
		t.Helper()
		a, _ := one.Scrape(ctx, hashes, nil)
		b, _ := batch.Scrape(ctx, hashes, nil)
		if a[0] != b[0] || a[1] != b[1] {
			t.Errorf("%s: one by one %+v, batch %+v", when, a, b)
		}
		ta, _ := one.Totals(ctx)
		tb, _ := batch.Totals(ctx)
		if ta != tb {
			t.Errorf("%s: totals one by one %+v, batch %+v", when, ta, tb)
		}
	}
	same("after the announces")
	if st, _ := batch.Scrape(ctx, hashes, nil); st[0] != (bittorrent.Stats{Seeders: 2, Downloaded: 1}) || st[1] != (bittorrent.Stats{Leechers: 1}) {
		t.Errorf("batch: %+v", st)
	}
	clock.Advance(lifetime - time.Second)
	same("before the lifetime")
	clock.Advance(2 * time.Second)
	same("after the lifetime")
	if st, _ := batch.Scrape(ctx, hashes, nil); st[0].Seeders+st[0].Leechers+st[1].Seeders+st[1].Leechers != 0 {
		t.Errorf("peers alive after their lifetime: %+v", st)
	}

	// Re-announces of known peers allocate nothing.
	again := as[:3]
	batch.AnnounceBatch(ctx, again)
	if n := testing.AllocsPerRun(100, func() { batch.AnnounceBatch(ctx, again) }); n != 0 {
		t.Errorf("AnnounceBatch allocates %v times a call", n)
	}

	batch.Close()
	if got := batch.AnnounceBatch(ctx, as[:3]); got != 3 {
		t.Errorf("AnnounceBatch on a closed store failed %d of 3", got)
	}
}
