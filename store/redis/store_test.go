package redis

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/internal/redistest"
	"trackd/store"
)

// TestOpenUnreachable: Open fails, in bounded time, with an error that
// names the address.
func TestOpenUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now

	tests := []struct {
		name, url, want string
	}{
		{"refused", "redis://" + addr + "/0", addr},
		{"cluster refused", "redis+cluster://" + addr, addr},
		{"bad url", "redis://" + addr + "/notadb", "invalid database"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			s, err := Open(context.Background(), tt.url, store.Options{PeerLifetime: time.Minute}, Options{Timeout: 500 * time.Millisecond})
			if err == nil {
				s.Close()
				t.Fatalf("Open(%s) succeeded", tt.url)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open(%s) = %v, want an error naming %q", tt.url, err, tt.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Open took %v to fail", d)
			}
			t.Logf("%v", err)
		})
	}
}

func TestOpenOptions(t *testing.T) {
	srv := redistest.Start(t)
	for _, tt := range []struct {
		name string
		opts store.Options
		ro   Options
		want string
	}{
		{"no lifetime", store.Options{}, Options{}, "PeerLifetime"},
		{"brace in prefix", store.Options{PeerLifetime: time.Minute}, Options{KeyPrefix: "a{b}:"}, "must not contain"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(context.Background(), srv.URL(), tt.opts, tt.ro)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestDownloadedSurvivesRestart: download counts live in Redis, so a new
// Store (a restarted trackd) on the same Redis sees them, also for a
// torrent left without peers.
func TestDownloadedSurvivesRestart(t *testing.T) {
	srv := redistest.Start(t)
	clock := newFakeClock()
	opts := store.Options{PeerLifetime: testLifetime, Now: clock.Now}
	h1, h2 := hashN(1), hashN(2)

	s1 := open(t, srv.URL(), opts, Options{})
	for i := range 3 {
		mustAnnounce(t, s1, store.Announce{InfoHash: h1, Peer: peerN(i, false), Event: bittorrent.EventCompleted, Seeder: true})
	}
	// h2: one download, then its only peer stops.
	mustAnnounce(t, s1, store.Announce{InfoHash: h2, Peer: peerN(9, true), Event: bittorrent.EventCompleted, Seeder: true})
	mustAnnounce(t, s1, store.Announce{InfoHash: h2, Peer: peerN(9, true), Event: bittorrent.EventStopped, Seeder: true})
	if err := s1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s2 := open(t, srv.URL(), opts, Options{})
	st, err := s2.Scrape(context.Background(), []bittorrent.InfoHash{h1, h2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []bittorrent.Stats{{Seeders: 3, Downloaded: 3}, {Downloaded: 1}}
	if st[0] != want[0] || st[1] != want[1] {
		t.Errorf("after a new Store: Scrape = %+v, want %+v", st, want)
	}
	// Every peer expires and is swept: the counts stay.
	clock.Advance(testLifetime + time.Second)
	if err := s2.Settle(context.Background()); err != nil {
		t.Fatal(err)
	}
	all := scrapeAll(t, s2)
	if len(all) != 2 || all[h1] != (bittorrent.Stats{Downloaded: 3}) || all[h2] != (bittorrent.Stats{Downloaded: 1}) {
		t.Errorf("after expiry: ScrapeAll = %v", all)
	}
	if tot, _ := s2.Totals(context.Background()); tot != (store.Totals{}) {
		t.Errorf("after expiry: Totals = %+v, want zero", tot)
	}
	// A session that completes again after expiry is a new one.
	_, st1 := mustAnnounce(t, s2, store.Announce{InfoHash: h1, Peer: peerN(0, false), Event: bittorrent.EventCompleted, Seeder: true})
	if st1 != (bittorrent.Stats{Seeders: 1, Downloaded: 4}) {
		t.Errorf("completed again after expiry: %+v", st1)
	}
}

// TestBigSwarmExpiry: when more peers expire at once than one call may
// remove, an announce removes some, never counts nor returns the rest, and
// the sweeper finishes the job in bounded steps.
func TestBigSwarmExpiry(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	clock := newFakeClock()
	// No background rounds during the test: Settle does them.
	s := open(t, srv.URL(), store.Options{PeerLifetime: testLifetime, Now: clock.Now, PeerIDs: true}, Options{Interval: time.Hour})
	ctx := context.Background()
	h := hashN(7)
	const n = 2500
	fill(t, s, h, n, func(i int) bool { return i%2 == 0 })
	clock.Advance(testLifetime / 2)
	fresh := peerN(n+1, false)
	mustAnnounce(t, s, store.Announce{InfoHash: h, Peer: fresh})
	clock.Advance(testLifetime/2 + time.Second) // all but fresh expired

	self := peerN(n+2, true)
	peers, st := mustAnnounce(t, s, store.Announce{InfoHash: h, Peer: self, NumWant: 200})
	if st != (bittorrent.Stats{Leechers: 2}) {
		t.Errorf("announce after %d peers expired: stats %+v, want 2 leechers", n, st)
	}
	if len(peers) != 1 || peers[0] != fresh {
		t.Errorf("announce after %d peers expired: peers %v, want only %v", n, peers, fresh.Addr)
	}
	keys, _ := s.torrentKeys(nil, &h, nil)
	// Half the peers were seeders, half leechers: 1250 expired in each
	// IPv4 set, of which one call removes 1000.
	for _, k := range []int{keyS4, keyL4} {
		if got := rdb.ZCard(ctx, keys[k]).Val(); got < 250 || got > 252 {
			t.Errorf("after one announce: %d entries in set %d, want 250 expired left (+1 alive)", got, k)
		}
	}
	if got, err := s.Scrape(ctx, []bittorrent.InfoHash{h}, nil); err != nil || got[0] != (bittorrent.Stats{Leechers: 2}) {
		t.Errorf("Scrape with expired peers left = %+v, %v", got, err)
	}
	if err := s.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rdb.ZCard(ctx, keys[keyS4]).Val() + rdb.ZCard(ctx, keys[keyL4]).Val(); got != 1 {
		t.Errorf("after Settle: %d IPv4 entries, want 1", got)
	}
	if got := rdb.HLen(ctx, keys[keyP]).Val(); got != 2 {
		t.Errorf("after Settle: %d peer ids, want 2", got)
	}
	if tot, _ := s.Totals(ctx); tot != (store.Totals{Torrents: 1, Leechers: 2, Leechers6: 1}) {
		t.Errorf("after Settle: Totals %+v", tot)
	}
}

// fill announces n peers to h with NumWant 0 in one pipeline, peer i a
// seeder when seeder(i).
func fill(t testing.TB, s *Store, h bittorrent.InfoHash, n int, seeder func(int) bool) {
	t.Helper()
	ctx := context.Background()
	for lo := 0; lo < n; lo += 1000 {
		pipe := s.rdb.Pipeline()
		for i := lo; i < min(lo+1000, n); i++ {
			keys, arg := s.announceArgs(&store.Announce{InfoHash: h, Peer: peerN(i, false), Seeder: seeder(i)})
			s.sc.announce.EvalSha(ctx, pipe, keys, arg)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatalf("fill: %v", err)
		}
	}
}

// TestTwoInstances: two Stores on one Redis (two trackd instances) share
// swarms; one holds the sweeper's lease at a time, both see the totals
// without Settle, and when the holder closes the other takes over.
func TestTwoInstances(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	opts := store.Options{PeerLifetime: testLifetime, PeerIDs: true}
	ro := Options{Interval: 50 * time.Millisecond}
	a, b := open(t, srv.URL(), opts, ro), open(t, srv.URL(), opts, ro)
	h := hashN(3)
	pa, pb := peerN(1, false), peerN(2, true)
	mustAnnounce(t, a, store.Announce{InfoHash: h, Peer: pa, Seeder: true})
	peers, st := mustAnnounce(t, b, store.Announce{InfoHash: h, Peer: pb, NumWant: 10})
	if len(peers) != 1 || peers[0] != pa || st != (bittorrent.Stats{Seeders: 1, Leechers: 1}) {
		t.Errorf("B's announce: peers %v, stats %+v; want A's peer %v", peers, st, pa)
	}
	want := store.Totals{Torrents: 1, Seeders: 1, Leechers: 1, Leechers6: 1}
	waitTotals(t, want, a, b)

	holder := rdb.Get(ctx, a.leaseKey).Val()
	if holder != a.token && holder != b.token {
		t.Fatalf("lease held by %q, neither instance", holder)
	}
	first, second := a, b
	if holder == b.token {
		first, second = b, a
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	mustAnnounce(t, second, store.Announce{InfoHash: hashN(4), Peer: pa})
	waitTotals(t, store.Totals{Torrents: 2, Seeders: 1, Leechers: 2, Leechers6: 1}, second)
	if got := rdb.Get(ctx, a.leaseKey).Val(); got != second.token {
		t.Errorf("after the holder closed, the lease is held by %q, want the other instance", got)
	}
}

// waitTotals waits (bounded) until every store's Totals is want.
func waitTotals(t *testing.T, want store.Totals, stores ...*Store) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, s := range stores {
		for {
			got, err := s.Totals(context.Background())
			if err == nil && got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Totals = %+v, %v; want %+v within 10s", got, err, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestFaults: Redis dies while announces run: they fail cleanly and in
// bounded time, nothing panics, and once Redis is back (same port) the same
// Store serves again. Then Redis is paused (a slow Redis): calls time out.
func TestFaults(t *testing.T) {
	srv := redistest.Start(t)
	const timeout = time.Second
	s := open(t, srv.URL(), store.Options{PeerLifetime: testLifetime}, Options{Timeout: timeout, Interval: 50 * time.Millisecond})
	ctx := context.Background()
	// slack covers a loaded machine (the race detector, other builds).
	const bound = 3 * timeout

	type result struct {
		err error
		d   time.Duration
	}
	run := func(d time.Duration) []result {
		results := make(chan []result, 8)
		stop := time.Now().Add(d)
		for w := range 8 {
			go func() {
				var rs []result
				for i := 0; time.Now().Before(stop); i++ {
					start := time.Now()
					a := store.Announce{InfoHash: hashN(i % 10), Peer: peerN(w*1000+i%50, w%2 == 0), NumWant: 20}
					var err error
					if i%5 == 4 {
						_, err = s.Scrape(ctx, []bittorrent.InfoHash{a.InfoHash, hashN(99)}, nil)
					} else {
						_, _, err = s.Announce(ctx, a, nil)
					}
					rs = append(rs, result{err, time.Since(start)})
					if err != nil {
						time.Sleep(5 * time.Millisecond)
					}
				}
				results <- rs
			}()
		}
		var all []result
		for range 8 {
			all = append(all, <-results...)
		}
		return all
	}
	check := func(phase string, rs []result, wantOK, wantErr bool) {
		t.Helper()
		ok, failed := 0, 0
		var slowest time.Duration
		var sample error
		for _, r := range rs {
			slowest = max(slowest, r.d)
			if r.err != nil {
				failed++
				sample = r.err
			} else {
				ok++
			}
		}
		t.Logf("%s: %d ok, %d failed, slowest %v, e.g. %v", phase, ok, failed, slowest, sample)
		if slowest > bound {
			t.Errorf("%s: a call took %v, more than %v", phase, slowest, bound)
		}
		if wantOK && ok == 0 {
			t.Errorf("%s: no call succeeded", phase)
		}
		if wantErr && failed == 0 {
			t.Errorf("%s: no call failed", phase)
		}
		if !wantErr && failed > 0 {
			t.Errorf("%s: %d calls failed, e.g. %v", phase, failed, sample)
		}
	}

	check("up", run(300*time.Millisecond), true, false)

	// Redis dies mid-run.
	done := make(chan []result)
	go func() { done <- run(1500 * time.Millisecond) }()
	time.Sleep(300 * time.Millisecond)
	srv.Stop()
	check("dying", <-done, true, true)
	check("down", run(500*time.Millisecond), false, true)
	if err := s.Ping(ctx); err == nil {
		t.Error("Ping succeeded with Redis down")
	}

	// Back on the same port, without reopening the store.
	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _, err := s.Announce(ctx, store.Announce{InfoHash: hashN(1), Peer: peerN(1, false)}, nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis is back, announces still fail after 10s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	check("back", run(300*time.Millisecond), true, false)
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping after Redis came back: %v", err)
	}
	// The background rounds work again: Totals is fresh.
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, err := s.Totals(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Totals still failing 10s after Redis came back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A slow Redis: paused for longer than the timeout.
	rdb := srv.Client()
	if err := rdb.Do(ctx, "client", "pause", 3000, "all").Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, _, err := s.Announce(ctx, store.Announce{InfoHash: hashN(1), Peer: peerN(2, false)}, nil)
	if d := time.Since(start); err == nil || d > bound {
		t.Errorf("announce to a paused Redis: %v after %v; want an error within %v", err, d, bound)
	} else if !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
		t.Logf("announce to a paused Redis failed with %v (not a timeout)", err)
	}
	rdb.Do(ctx, "client", "unpause")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestScriptFlush: a Redis that lost its scripts (a restart, SCRIPT FLUSH)
// gets them again, for announces (EVAL after NOSCRIPT) and for the
// sweeper's pipelines alike.
func TestScriptFlush(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	clock := newFakeClock()
	s := open(t, srv.URL(), store.Options{PeerLifetime: testLifetime, Now: clock.Now}, Options{Interval: time.Hour})
	for i := range 20 {
		mustAnnounce(t, s, store.Announce{InfoHash: hashN(i), Peer: peerN(i, false)})
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if _, st := mustAnnounce(t, s, store.Announce{InfoHash: hashN(0), Peer: peerN(100, false)}); st.Leechers != 2 {
		t.Errorf("announce after SCRIPT FLUSH: %+v", st)
	}
	clock.Advance(testLifetime + time.Second)
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Settle(ctx); err != nil {
		t.Fatalf("Settle after SCRIPT FLUSH: %v", err)
	}
	if tot, _ := s.Totals(ctx); tot != (store.Totals{}) {
		t.Errorf("after expiry and sweep: Totals %+v", tot)
	}
}

// TestScrapeAllBigBucket: ScrapeAll visits every torrent of a bucket too
// big for one HSCAN step once, and only once.
func TestScrapeAllBigBucket(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv.URL(), store.Options{PeerLifetime: testLifetime}, Options{Interval: time.Hour})
	const n = 3000
	anns := make([]store.Announce, n)
	for i := range anns {
		h := hashN(i)
		h[0], h[1] = 0x12, 0x34 // one bucket
		anns[i] = store.Announce{InfoHash: h, Peer: peerN(i, false), Seeder: i%3 == 0}
	}
	fillAnnounces(t, s, anns)
	got := scrapeAll(t, s)
	if len(got) != n {
		t.Errorf("ScrapeAll visited %d torrents, want %d", len(got), n)
	}
	for _, a := range anns {
		want := bittorrent.Stats{Leechers: 1}
		if a.Seeder {
			want = bittorrent.Stats{Seeders: 1}
		}
		if got[a.InfoHash] != want {
			t.Errorf("ScrapeAll: %v = %+v, want %+v", a.InfoHash, got[a.InfoHash], want)
			break
		}
	}
}
