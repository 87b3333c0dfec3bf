package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/tracker"
	"github.com/anacrolix/torrent/tracker/udp"
	"github.com/anacrolix/torrent/types/infohash"

	"trackd/config"
)

// Tests of trackd's UDP tracker protocol (BEP 15, with BEP 41's URL data)
// with real clients: anacrolix/torrent's UDP tracker client and torrent
// client in-process, aria2c and libtorrent as child processes, each given
// only a udp:// announce URL.

// newUDPTrackerClient returns anacrolix's tracker client for a udp:// URL,
// its socket bound to bindHost (127.0.0.1 or ::1) so that nothing listens
// beyond loopback.
func newUDPTrackerClient(t *testing.T, url, bindHost string) tracker.Client {
	t.Helper()
	cl, err := tracker.NewClient(url, tracker.NewClientOpts{
		ListenPacket: func(network, _ string) (net.PacketConn, error) {
			return net.ListenPacket(network, net.JoinHostPort(bindHost, "0"))
		},
	})
	if err != nil {
		t.Fatalf("tracker.NewClient(%q): %v", url, err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// udpOnly turns trackd's HTTP listener off, so that a test's clients can
// only have reached it over UDP.
func udpOnly(c *config.Config) { c.HTTP = "" }

// loopbackTrackerListenPacket is a TrackerListenPacket for anacrolix's
// torrent client: the UDP tracker socket on 127.0.0.1 rather than on every
// interface.
func loopbackTrackerListenPacket(network, _ string) (net.PacketConn, error) {
	return net.ListenPacket(network, "127.0.0.1:0")
}

// trackerPeer is a peer that a test announces by hand.
type trackerPeer struct {
	id   [20]byte
	port uint16
}

func newTrackerPeer(name string, port uint16) trackerPeer {
	p := trackerPeer{port: port}
	copy(p.id[:], fmt.Sprintf("-E2EUDP-%-12.12s", name))
	return p
}

// announcer announces to one tracker client and checks the replies.
type announcer struct {
	t        *testing.T
	ctx      context.Context
	cl       tracker.Client
	ih       [20]byte
	interval time.Duration // the interval every reply must carry; 0: any
}

func (a announcer) announce(p trackerPeer, event tracker.AnnounceEvent, left int64) tracker.AnnounceResponse {
	a.t.Helper()
	resp, err := a.cl.Announce(a.ctx, tracker.AnnounceRequest{
		InfoHash: a.ih,
		PeerId:   p.id,
		Left:     left,
		Event:    event,
		NumWant:  -1,
		Key:      int32(p.port),
		Port:     p.port,
	}, tracker.AnnounceOpt{})
	if err != nil {
		a.t.Fatalf("announce (port %d, event %v): %v", p.port, event, err)
	}
	if want := int32(a.interval / time.Second); a.interval != 0 && resp.Interval != want {
		a.t.Errorf("announce (port %d, event %v): interval %d, want %d", p.port, event, resp.Interval, want)
	}
	return resp
}

// check announces and fails the test unless the reply has these counts
// and exactly these peers ("host:port", any order).
func (a announcer) check(step string, p trackerPeer, event tracker.AnnounceEvent, left int64, seeders, leechers int32, peers ...string) tracker.AnnounceResponse {
	a.t.Helper()
	resp := a.announce(p, event, left)
	if resp.Seeders != seeders || resp.Leechers != leechers {
		a.t.Errorf("%s: seeders=%d leechers=%d, want %d and %d", step, resp.Seeders, resp.Leechers, seeders, leechers)
	}
	got := peerStrings(resp.Peers)
	slices.Sort(peers)
	if !slices.Equal(got, peers) {
		a.t.Errorf("%s: peers %q, want %q", step, got, peers)
	}
	return resp
}

func (a announcer) scrape(step string, want udp.ScrapeInfohashResult) {
	a.t.Helper()
	other := [20]byte{19: 0xee} // a torrent nobody announced
	res, err := a.cl.Scrape(a.ctx, []infohash.T{a.ih, other})
	if err != nil {
		a.t.Fatalf("%s: scrape: %v", step, err)
	}
	if len(res) != 2 {
		a.t.Fatalf("%s: scrape gave %d results, want 2", step, len(res))
	}
	if res[0] != want {
		a.t.Errorf("%s: scrape of the swarm %+v, want %+v", step, res[0], want)
	}
	if res[1] != (udp.ScrapeInfohashResult{}) {
		a.t.Errorf("%s: scrape of an unknown torrent %+v, want zeros", step, res[1])
	}
}

// peerStrings returns the peers as sorted "host:port" strings.
func peerStrings(ps []tracker.Peer) []string {
	var out []string
	for _, p := range ps {
		out = append(out, net.JoinHostPort(p.IP.String(), strconv.Itoa(p.Port)))
	}
	slices.Sort(out)
	return out
}

// udpSwarmLife drives one swarm's life through a UDP tracker client:
// started, regular, completed and stopped announces, and scrapes. host is
// the address the tracker sees the client at, so the one its peers have.
func udpSwarmLife(t *testing.T, a announcer, host string) {
	addr := func(p trackerPeer) string { return net.JoinHostPort(host, strconv.Itoa(int(p.port))) }
	leecher := newTrackerPeer("leecher", 41101)
	seeder := newTrackerPeer("seeder", 41102)

	a.check("leecher started", leecher, tracker.Started, 1000, 0, 1)
	a.check("seeder started", seeder, tracker.Started, 0, 1, 1, addr(leecher))
	a.check("leecher regular announce", leecher, tracker.None, 500, 1, 1, addr(seeder))
	a.scrape("before completion", udp.ScrapeInfohashResult{Seeders: 1, Leechers: 1})

	// A seeder is given only leechers, and there are none left.
	a.check("leecher completed", leecher, tracker.Completed, 0, 2, 0)
	a.scrape("after completion", udp.ScrapeInfohashResult{Seeders: 2, Completed: 1})
	// A second "completed" from the same session is not a second download.
	a.check("completed again", leecher, tracker.Completed, 0, 2, 0)

	a.check("leecher stopped", leecher, tracker.Stopped, 0, 1, 0)
	a.check("seeder stopped", seeder, tracker.Stopped, 0, 0, 0)
	a.scrape("after both stopped", udp.ScrapeInfohashResult{Completed: 1})

	// Stopped peers are handed out to nobody.
	a.check("latecomer started", newTrackerPeer("latecomer", 41103), tracker.Started, 1000, 0, 1)
}

// TestAnacrolixUDPTrackerClient drives trackd over udp://127.0.0.1 with
// anacrolix's UDP tracker client (connect, announce with BEP 41 URL data,
// scrape) through one swarm's life.
func TestAnacrolixUDPTrackerClient(t *testing.T) {
	ctx := deadline(t, 30*time.Second)
	const interval = 2 * time.Minute
	srv := startTracker(t, func(c *config.Config) { c.MinInterval = interval })
	url := udpAnnounceURL(srv)
	a := announcer{t: t, ctx: ctx, cl: newUDPTrackerClient(t, url, "127.0.0.1"), interval: interval}
	// The bytes that trip query encoders mean nothing to UDP, which
	// carries the hash raw; zeros and 0xff test the framing instead.
	a.ih = [20]byte{0, 0xff, 0, 0xff, ' ', '+', '%', '&'}
	copy(a.ih[8:], "trackd-e2e-u")
	udpSwarmLife(t, a, "127.0.0.1")
}

// TestAnacrolixUDPTrackerClientIPv6 is the same over udp://[::1]: the
// peers in the replies are IPv6 peers (BEP 15: an announce over IPv6 gets
// 18-byte entries).
func TestAnacrolixUDPTrackerClientIPv6(t *testing.T) {
	requireIPv6Loopback(t)
	ctx := deadline(t, 30*time.Second)
	const interval = 2 * time.Minute
	srv := startTracker(t, func(c *config.Config) {
		c.MinInterval = interval
		c.UDP = "[::1]:0"
	})
	if a := srv.UDPAddr().(*net.UDPAddr); a.IP.To4() != nil || !a.IP.IsLoopback() {
		t.Fatalf("UDP on %s, want [::1]", a)
	}
	url := udpAnnounceURL(srv)
	a := announcer{t: t, ctx: ctx, cl: newUDPTrackerClient(t, url, "::1"), interval: interval, ih: [20]byte{0: 6, 19: 0x15}}
	udpSwarmLife(t, a, "::1")

	// Every peer handed out is an IPv6 one.
	resp := a.announce(newTrackerPeer("checker", 41104), tracker.Started, 1000)
	if len(resp.Peers) == 0 {
		t.Fatal("no peers to check")
	}
	for _, p := range resp.Peers {
		if p.IP.To4() != nil || len(p.IP) != net.IPv6len {
			t.Errorf("peer %v over IPv6 is not an IPv6 address", p)
		}
	}
}

// TestUDPDualStackFamilies reaches one dual-stack UDP listener over IPv4
// and IPv6: each client gets the peers of its own family only (a UDP
// announce reply has room for one), while the counts cover both.
//
// Only the wildcard "[::]:0" receives both families, so trackd binds that
// here; every packet still goes to 127.0.0.1 or ::1.
func TestUDPDualStackFamilies(t *testing.T) {
	requireIPv6Loopback(t)
	ctx := deadline(t, 30*time.Second)
	srv := startTracker(t, func(c *config.Config) { c.UDP = "[::]:0" })
	port := strconv.Itoa(srv.UDPAddr().(*net.UDPAddr).Port)
	ih := [20]byte{0: 46, 19: 0x15}
	a4 := announcer{t: t, ctx: ctx, ih: ih, cl: newUDPTrackerClient(t, "udp://127.0.0.1:"+port+"/announce", "127.0.0.1")}
	a6 := announcer{t: t, ctx: ctx, ih: ih, cl: newUDPTrackerClient(t, "udp://[::1]:"+port+"/announce", "::1")}

	a4.check("first v4 peer", newTrackerPeer("v4-1", 42101), tracker.Started, 100, 0, 1)
	a6.check("first v6 peer", newTrackerPeer("v6-1", 42102), tracker.Started, 100, 0, 2)
	a4.check("second v4 peer", newTrackerPeer("v4-2", 42103), tracker.Started, 100, 0, 3, "127.0.0.1:42101")
	a6.check("second v6 peer", newTrackerPeer("v6-2", 42104), tracker.Started, 0, 1, 3, "[::1]:42102")
	a4.check("first v4 peer again", newTrackerPeer("v4-1", 42101), tracker.None, 100, 1, 3, "127.0.0.1:42103")
	a4.scrape("over IPv4", udp.ScrapeInfohashResult{Seeders: 1, Leechers: 3})
	a6.scrape("over IPv6", udp.ScrapeInfohashResult{Seeders: 1, Leechers: 3})
}

// TestUDPAndHTTPShareSwarms: one swarm, whichever protocol its peers
// announce over. A peer that announced over UDP is in an HTTP announce's
// reply and the other way round, and scrapes agree over both.
func TestUDPAndHTTPShareSwarms(t *testing.T) {
	ctx := deadline(t, 30*time.Second)
	srv := startTracker(t, nil)
	ih := [20]byte{0: 0x77, 19: 0x15}
	httpCl, err := tracker.NewClient(announceURL(srv), tracker.NewClientOpts{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { httpCl.Close() })
	overUDP := announcer{t: t, ctx: ctx, ih: ih, cl: newUDPTrackerClient(t, udpAnnounceURL(srv), "127.0.0.1")}
	overHTTP := announcer{t: t, ctx: ctx, ih: ih, cl: httpCl}
	scrapesAgree := func(step string, want udp.ScrapeInfohashResult) {
		t.Helper()
		overUDP.scrape(step+" (UDP scrape)", want)
		overHTTP.scrape(step+" (HTTP scrape)", want)
	}
	a := newTrackerPeer("udp-a", 43001)
	b := newTrackerPeer("http-b", 43002)
	c := newTrackerPeer("udp-c", 43003)

	overUDP.check("A started over UDP", a, tracker.Started, 1000, 0, 1)
	overHTTP.check("B started over HTTP", b, tracker.Started, 1000, 0, 2, "127.0.0.1:43001")
	overUDP.check("C started over UDP as a seeder", c, tracker.Started, 0, 1, 2, "127.0.0.1:43001", "127.0.0.1:43002")
	scrapesAgree("three peers", udp.ScrapeInfohashResult{Seeders: 1, Leechers: 2})

	overUDP.check("A completed over UDP", a, tracker.Completed, 0, 2, 1, "127.0.0.1:43002")
	overHTTP.check("B regular over HTTP", b, tracker.None, 500, 2, 1, "127.0.0.1:43001", "127.0.0.1:43003")
	scrapesAgree("after A completed", udp.ScrapeInfohashResult{Seeders: 2, Leechers: 1, Completed: 1})

	overHTTP.check("B completed over HTTP", b, tracker.Completed, 0, 3, 0)
	overUDP.check("C stopped over UDP", c, tracker.Stopped, 0, 2, 0)
	scrapesAgree("after B completed and C stopped", udp.ScrapeInfohashResult{Seeders: 2, Completed: 2})
}

// TestAnacrolixSwarmUDP has one anacrolix client seed random data and
// another download it, with a udp:// announce URL as the only peer source.
func TestAnacrolixSwarmUDP(t *testing.T) {
	ctx := deadline(t, 90*time.Second)
	srv := startTracker(t, udpOnly)
	seedDir, leechDir := t.TempDir(), t.TempDir()
	tf := makeTorrent(t, seedDir, "anacrolix-udp.bin", 3<<20+4321, 256<<10, udpAnnounceURL(srv))
	runAnacrolixSwarm(ctx, t, srv, tf, udpAnnounceURL(srv), seedDir, leechDir)
}

// addLeechingTorrent adds mi to cl to download all of it, and lets cl
// announce it only once it wants data. anacrolix v1.59.1 sends its
// "started" announce as soon as a torrent is added, with numwant=0 unless
// it wants peers, which it does only once some piece is pending: after
// DownloadAll and after its first check of the (absent) data. Over
// loopback UDP trackd answered that announce with no peers in most runs,
// and the leecher then waited a minute to announce again. So the torrent
// is added without trackers, and given them when a piece is wanted.
func addLeechingTorrent(ctx context.Context, t *testing.T, cl *torrent.Client, mi *metainfo.MetaInfo) *torrent.Torrent {
	t.Helper()
	spec, err := torrent.TorrentSpecFromMetaInfoErr(mi)
	if err != nil {
		t.Fatal(err)
	}
	trackers := spec.Trackers
	spec.Trackers = nil
	lt, _, err := cl.AddTorrentSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	lt.DownloadAll()
	waitFor(ctx, t, "the leecher to want a piece", func() (bool, string) {
		runs := lt.PieceStateRuns()
		for _, r := range runs {
			if r.Priority != torrent.PiecePriorityNone && !r.Complete {
				return true, ""
			}
		}
		return false, fmt.Sprintf("piece states %+v", runs)
	})
	lt.AddTrackers(trackers)
	return lt
}

// aria2UDPArgs are aria2Args for a torrent whose tracker is udp://. aria2
// sends UDP tracker requests only through its DHT socket, so DHT must be
// on; it gets an empty routing table (an empty --dht-file-path) and no
// --dht-entry-point, so that DHT knows no node and finds no peer: the
// tracker stays the only peer source. The DHT socket is the UDP side of
// --dht-listen-port, which aria2Args sets to the peer port; with
// --interface=127.0.0.1 aria2 binds it to 127.0.0.1. (aria2 logs an ERROR
// that it cannot load the empty routing table, and goes on.)
func aria2UDPArgs(t *testing.T, dir string, port int) []string {
	args := aria2Args(dir, port)
	for i, a := range args {
		if a == "--enable-dht=false" {
			args[i] = "--enable-dht=true"
		}
	}
	dht := filepath.Join(t.TempDir(), "dht.dat")
	if err := os.WriteFile(dht, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return append(args, "--dht-file-path="+dht)
}

// TestAria2SeedsLibtorrentDownloadsUDP: aria2c seeds, libtorrent downloads,
// both announcing to a udp:// URL only.
func TestAria2SeedsLibtorrentDownloadsUDP(t *testing.T) {
	aria2SeedsLibtorrentDownloads(t, overUDP, "aria2-to-libtorrent-udp.bin", 4<<20+999)
}

// TestLibtorrentSeedsAria2DownloadsUDP: libtorrent seeds, aria2c downloads,
// both announcing to a udp:// URL only.
func TestLibtorrentSeedsAria2DownloadsUDP(t *testing.T) {
	libtorrentSeedsAria2Downloads(t, overUDP, "libtorrent-to-aria2-udp.bin", 4<<20+333)
}
