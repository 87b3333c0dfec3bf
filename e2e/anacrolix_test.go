package e2e

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
	"github.com/anacrolix/torrent/tracker"
	"github.com/anacrolix/torrent/tracker/udp"
	"github.com/anacrolix/torrent/types/infohash"

	"trackd/config"
	"trackd/server"
)

// The anacrolix/torrent tests use v1.59.1: v1.62.0 requires
// github.com/anacrolix/go-utp, which the Go module proxy does not serve (it
// answers 403 "not available"), so v1.62.0 cannot be built.

// TestAnacrolixTrackerClient drives trackd with anacrolix's HTTP tracker
// client through one swarm's life: started, regular, completed and stopped
// announces, and scrapes (anacrolix has an HTTP scrape client: it derives
// /scrape from /announce).
func TestAnacrolixTrackerClient(t *testing.T) {
	ctx := deadline(t, 30*time.Second)
	const interval = 2 * time.Minute
	srv := startTracker(t, func(c *config.Config) { c.MinInterval = interval })

	cl, err := tracker.NewClient(announceURL(srv), tracker.NewClientOpts{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })

	// An info hash with the bytes that query encoders treat specially
	// (' ' becomes '+' in url.Values, '+' itself, '%', '&', '='), so a
	// decoding slip on either side shows as a different swarm.
	ih := [20]byte{' ', '+', '%', '&', '=', '?', '#', 0, 0xff, '/'}
	copy(ih[10:], "trackd-e2e")
	other := [20]byte{19: 1} // a torrent nobody announced

	type peer struct {
		id   [20]byte
		port uint16
	}
	leecher := peer{port: 41001}
	copy(leecher.id[:], "-E2E001-leecher-0001")
	seeder := peer{port: 41002}
	copy(seeder.id[:], "-E2E001-seeder--0002")

	announce := func(p peer, event tracker.AnnounceEvent, left int64) tracker.AnnounceResponse {
		t.Helper()
		resp, err := cl.Announce(ctx, tracker.AnnounceRequest{
			InfoHash: ih,
			PeerId:   p.id,
			Left:     left,
			Event:    event,
			NumWant:  -1,
			Key:      int32(p.port),
			Port:     p.port,
		}, tracker.AnnounceOpt{})
		if err != nil {
			t.Fatalf("announce (port %d, event %v): %v", p.port, event, err)
		}
		if resp.Interval != int32(interval/time.Second) {
			t.Errorf("interval %d, want %d (min_interval of a small tracker)", resp.Interval, int32(interval/time.Second))
		}
		return resp
	}
	peersOf := func(resp tracker.AnnounceResponse) []string {
		var out []string
		for _, p := range resp.Peers {
			out = append(out, net.JoinHostPort(p.IP.String(), strconv.Itoa(p.Port)))
		}
		slices.Sort(out)
		return out
	}
	addrOf := func(p peer) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.port))) }
	check := func(step string, resp tracker.AnnounceResponse, seeders, leechers int32, peers ...string) {
		t.Helper()
		if resp.Seeders != seeders || resp.Leechers != leechers {
			t.Errorf("%s: complete=%d incomplete=%d, want %d and %d", step, resp.Seeders, resp.Leechers, seeders, leechers)
		}
		got := peersOf(resp)
		slices.Sort(peers)
		if !slices.Equal(got, peers) {
			t.Errorf("%s: peers %q, want %q", step, got, peers)
		}
	}
	scrape := func(step string, want udp.ScrapeInfohashResult) {
		t.Helper()
		res, err := cl.Scrape(ctx, []infohash.T{ih, other})
		if err != nil {
			t.Fatalf("%s: scrape: %v", step, err)
		}
		if len(res) != 2 {
			t.Fatalf("%s: scrape gave %d results, want 2", step, len(res))
		}
		if res[0] != want {
			t.Errorf("%s: scrape of the swarm %+v, want %+v", step, res[0], want)
		}
		if res[1] != (udp.ScrapeInfohashResult{}) {
			t.Errorf("%s: scrape of an unknown torrent %+v, want zeros", step, res[1])
		}
	}

	check("leecher started", announce(leecher, tracker.Started, 1000), 0, 1)
	check("seeder started", announce(seeder, tracker.Started, 0), 1, 1, addrOf(leecher))
	check("leecher regular announce", announce(leecher, tracker.None, 500), 1, 1, addrOf(seeder))
	scrape("before completion", udp.ScrapeInfohashResult{Seeders: 1, Leechers: 1})

	// A seeder is given only leechers, and there are none left.
	check("leecher completed", announce(leecher, tracker.Completed, 0), 2, 0)
	scrape("after completion", udp.ScrapeInfohashResult{Seeders: 2, Completed: 1})
	// A second "completed" from the same session is not a second download.
	check("completed again", announce(leecher, tracker.Completed, 0), 2, 0)

	check("leecher stopped", announce(leecher, tracker.Stopped, 0), 1, 0)
	check("seeder stopped", announce(seeder, tracker.Stopped, 0), 0, 0)
	scrape("after both stopped", udp.ScrapeInfohashResult{Completed: 1})

	// Stopped peers are handed out to nobody.
	late := peer{port: 41003}
	copy(late.id[:], "-E2E001-latecomer-03")
	check("latecomer started", announce(late, tracker.Started, 1000), 0, 1)
}

// startSeeder starts an anacrolix client that seeds mi from dataDir,
// its data verified.
func startSeeder(ctx context.Context, t *testing.T, dataDir string, mi *metainfo.MetaInfo) (*torrent.Client, *torrent.Torrent) {
	t.Helper()
	seeder := newAnacrolixClient(t, dataDir, true)
	st, err := seeder.AddTorrent(mi)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.VerifyDataContext(ctx); err != nil {
		t.Fatalf("seeder verifying its data: %v", err)
	}
	return seeder, st
}

// newAnacrolixClient returns a torrent client that finds peers only through
// trackers, on 127.0.0.1 over TCP, storing data in dataDir.
func newAnacrolixClient(t *testing.T, dataDir string, seed bool) *torrent.Client {
	t.Helper()
	cfg := torrent.NewDefaultClientConfig()
	cfg.SetListenAddr("127.0.0.1:0")
	cfg.DataDir = dataDir
	// Piece completion in memory rather than a database file in dataDir.
	cfg.DefaultStorage = storage.NewFileOpts(storage.NewFileClientOpts{
		ClientBaseDir:   dataDir,
		PieceCompletion: storage.NewMapPieceCompletion(),
	})
	cfg.Seed = seed
	// No peer source but the tracker.
	cfg.NoDHT = true
	cfg.DisablePEX = true
	cfg.DisableWebtorrent = true
	cfg.DisableWebseeds = true
	cfg.NoDefaultPortForwarding = true
	// One transport on one family: the listen host is 127.0.0.1, which a
	// tcp6 listener cannot bind, and uTP (libutp via cgo) adds nothing to a
	// tracker test.
	cfg.DisableIPv6 = true
	cfg.DisableUTP = true
	// UDP tracker requests from a socket on 127.0.0.1, not on every
	// interface (anacrolix binds ":0" by default).
	cfg.TrackerListenPacket = loopbackTrackerListenPacket
	// Keep the connection once both sides are complete, so the test can
	// see afterwards where the leecher's peer came from.
	cfg.DropMutuallyCompletePeers = false
	// Work around an upload stall in anacrolix v1.59.1: each request a
	// peer makes reserves its chunk against this per-connection budget
	// (default 1 MiB), and a single goroutine serves the requests in map
	// order, blocking on whichever reservation it picks. On loopback the
	// leecher soon has more than 1 MiB requested (66 chunks of 16 KiB
	// were seen); the server then waits on an ungranted reservation while
	// the granted ones are never served, and the transfer stops until a
	// re-announce a minute later brings a new connection. A budget that
	// covers the whole request queue (1024 chunks of 16 KiB) grants every
	// reservation at once.
	cfg.MaxAllocPeerRequestDataPerConn = 32 << 20
	// Nothing else was needed for loopback: anacrolix filters tracker peers
	// only by port 0, its IP blocklist (none here), IPs it banned and its
	// own "doppelganger" addresses (ones it found itself at), and it keys
	// peers by ip:port, so two clients on 127.0.0.1 with different ports
	// are two peers. Its announces carry its listen port (LocalPort), so
	// trackd hands out the address the seeder really listens on.
	cfg.Slogger = testLogger(t, slog.LevelWarn)
	cl, err := torrent.NewClient(cfg)
	if err != nil {
		t.Fatalf("torrent.NewClient: %v", err)
	}
	t.Cleanup(func() {
		for _, err := range cl.Close() {
			t.Errorf("closing client: %v", err)
		}
	})
	return cl
}

// TestAnacrolixSwarm has one anacrolix client seed random data and another
// download it, with trackd as the only way for the downloader to find the
// seeder.
func TestAnacrolixSwarm(t *testing.T) {
	ctx := deadline(t, 90*time.Second)
	srv := startTracker(t, nil)
	seedDir, leechDir := t.TempDir(), t.TempDir()
	tf := makeTorrent(t, seedDir, "anacrolix.bin", 3<<20+12345, 256<<10, announceURL(srv))
	runAnacrolixSwarm(ctx, t, srv, tf, announceURL(srv), seedDir, leechDir)
}

// runAnacrolixSwarm has one anacrolix client seed tf from seedDir and
// another download it into leechDir, with url, tf's only announce URL, as
// the only peer source, and checks the data and trackd's counts.
func runAnacrolixSwarm(ctx context.Context, t *testing.T, srv *server.Server, tf torrentFile, url, seedDir, leechDir string) {
	t.Helper()
	mi, err := metainfo.LoadFromFile(tf.Path)
	if err != nil {
		t.Fatalf("anacrolix cannot load the metainfo: %v", err)
	}
	if got := mi.HashInfoBytes(); !bytes.Equal(got[:], tf.InfoHash[:]) {
		t.Fatalf("anacrolix computes info hash %x, trackd's bencode %x", got, tf.InfoHash)
	}
	if urls := mi.UpvertedAnnounceList().DistinctValues(); len(urls) != 1 || urls[0] != url {
		t.Fatalf("announce URLs %v, want only %s", urls, url)
	}

	seeder, st := startSeeder(ctx, t, seedDir, mi)
	select {
	case <-st.Complete().On():
	case <-ctx.Done():
		t.Fatalf("seeder does not have the whole torrent after verifying: %d bytes missing", st.BytesMissing())
	}
	waitForSeeder(ctx, t, srv, tf.InfoHash)
	seederAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(seeder.LocalPort()))

	leecher := newAnacrolixClient(t, leechDir, false)
	lt := addLeechingTorrent(ctx, t, leecher, mi)
	waitForAnacrolixDownload(ctx, t, lt, func() string {
		return fmt.Sprintf("trackd counts %+v", swarmStats(context.Background(), t, srv, tf.InfoHash))
	})

	// The leecher's connection to the seeder came from trackd.
	sources := peerSources(lt)
	if !slices.Contains(sources, fmt.Sprintf("%s from %s", seederAddr, torrent.PeerSourceTracker)) {
		t.Errorf("leecher's peers %v: none is the seeder %s found through the tracker", sources, seederAddr)
	}
	// trackd saw both: the seeder and the leecher, which announced as a
	// leecher and has not re-announced since (so it still counts as one).
	if s := swarmStats(ctx, t, srv, tf.InfoHash); s.Seeders+s.Leechers != 2 {
		t.Errorf("trackd counts %+v, want 2 peers in the swarm", s)
	}

	leecher.Close()
	checkDownloaded(t, filepath.Join(leechDir, tf.Name), tf)
}

// waitForAnacrolixDownload waits for t to complete, failing the test when
// ctx ends first (with state's description of the swarm).
//
// anacrolix v1.59.1 sometimes stops requesting on loopback: the leecher is
// interested and unchoked, has no request outstanding, and nothing wakes
// its event-driven request update (its update timer is compiled out) until
// a tracker re-announce a minute later brings a new connection. When no
// byte arrives for two seconds, toggling DisallowDataDownload and
// AllowDataDownload makes every connection recompute its requests. That is
// a client problem, not trackd's; each nudge is logged.
func waitForAnacrolixDownload(ctx context.Context, t *testing.T, lt *torrent.Torrent, state func() string) {
	t.Helper()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastMissing, lastProgress, nudges := lt.BytesMissing(), time.Now(), 0
	for {
		select {
		case <-lt.Complete().On():
			if nudges > 0 {
				t.Logf("anacrolix needed %d nudge(s) to keep requesting", nudges)
			}
			return
		case <-ctx.Done():
			t.Fatalf("download did not complete: %d bytes missing; %s; leecher's peers %v",
				lt.BytesMissing(), state(), peerSources(lt))
		case <-tick.C:
		}
		if m := lt.BytesMissing(); m != lastMissing {
			lastMissing, lastProgress = m, time.Now()
		} else if time.Since(lastProgress) >= 2*time.Second {
			nudges++
			t.Logf("leecher stalled at %d bytes missing, peers %v; nudging its request update", m, peerSources(lt))
			lt.DisallowDataDownload()
			lt.AllowDataDownload()
			lastProgress = time.Now()
		}
	}
}

// peerSources lists a torrent's connections as "addr from source".
func peerSources(t *torrent.Torrent) []string {
	var out []string
	for _, pc := range t.PeerConns() {
		out = append(out, fmt.Sprintf("%s from %s", pc.RemoteAddr, pc.Discovery))
	}
	return out
}
