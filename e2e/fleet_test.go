package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/tracker"
	"github.com/anacrolix/torrent/tracker/udp"

	"trackd/bittorrent"
	"trackd/config"
	"trackd/internal/redistest"
	"trackd/server"
	core "trackd/tracker"
)

// Tests of a fleet: several in-process trackd instances with -sync, each
// answering from its own memory, their swarms kept in step through real
// redis-server processes on free loopback ports (one server, or a Cluster
// of three masters). They are skipped where redis-server is missing,
// unless TRACKD_REQUIRE_EXTERNAL=1.
//
// No test here is a timer: the times they measure (convergence, the
// return after an outage) are logged, and asserted only against generous
// bounds, for a loaded machine. The figures belong to the benchmarks
// (bench/).

// fleetWait bounds every wait for a change to reach the other instances:
// far above what sync takes (tens of milliseconds), for a loaded machine
// running -race.
const fleetWait = 20 * time.Second

// fleetLog is a slog.Handler that keeps every record (for the test to
// count lines) and passes them on to the test log.
type fleetLog struct {
	rec  *fleetRecords
	next slog.Handler
}

type fleetRecords struct {
	mu   sync.Mutex
	msgs []fleetRecord
}

type fleetRecord struct {
	at    time.Time
	level slog.Level
	msg   string
}

func newFleetLog(t *testing.T) *fleetLog {
	return &fleetLog{
		rec:  &fleetRecords{},
		next: slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelInfo}),
	}
}

func (h *fleetLog) Enabled(context.Context, slog.Level) bool { return true }

func (h *fleetLog) Handle(ctx context.Context, r slog.Record) error {
	h.rec.mu.Lock()
	h.rec.msgs = append(h.rec.msgs, fleetRecord{at: time.Now(), level: r.Level, msg: r.Message})
	h.rec.mu.Unlock()
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *fleetLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &fleetLog{rec: h.rec, next: h.next.WithAttrs(as)}
}

func (h *fleetLog) WithGroup(name string) slog.Handler {
	return &fleetLog{rec: h.rec, next: h.next.WithGroup(name)}
}

// count returns how many records since from have a message that starts
// with prefix, and of which levels.
func (h *fleetLog) count(from time.Time, prefix string) (n int, levels []slog.Level) {
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	for _, r := range h.rec.msgs {
		if !r.at.Before(from) && strings.HasPrefix(r.msg, prefix) {
			n++
			levels = append(levels, r.level)
		}
	}
	return n, levels
}

// first returns when the first record since from with a message that
// starts with prefix was written, or from if there is none.
func (h *fleetLog) first(from time.Time, prefix string) time.Time {
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	for _, r := range h.rec.msgs {
		if !r.at.Before(from) && strings.HasPrefix(r.msg, prefix) {
			return r.at
		}
	}
	return from
}

// fleetMember is one instance of a test's fleet.
type fleetMember struct {
	*server.Server
	log   *fleetLog
	base  string // http://host:port of its HTTP listener
	admin string // http://host:port of its admin listener
}

// startFleet starts n in-process trackd instances, each on ephemeral
// loopback ports (HTTP, UDP, admin) with the memory store kept in step
// through the Redis at syncURL; mutate, if not nil, may change the
// configuration of instance i. It returns once every instance takes
// part in the fleet: what one records, every other replays (fleetReady).
func startFleet(ctx context.Context, t *testing.T, syncURL string, n int, mutate func(i int, c *config.Config)) []*fleetMember {
	t.Helper()
	var fleet []*fleetMember
	for i := range n {
		cfg := config.Default()
		cfg.HTTP, cfg.UDP, cfg.Admin = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		cfg.UDPSockets = 2
		cfg.Sync = syncURL
		cfg.FullScrapeInterval = 0 // every full scrape starts a build
		if mutate != nil {
			mutate(i, &cfg)
		}
		log := newFleetLog(t)
		srv, err := server.New(cfg, slog.New(log))
		if err != nil {
			t.Fatalf("server.New (instance %d): %v", i, err)
		}
		if err := srv.Start(); err != nil {
			t.Fatalf("Start (instance %d): %v", i, err)
		}
		t.Cleanup(func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				t.Errorf("Shutdown (instance %d): %v", i, err)
			}
		})
		fleet = append(fleet, &fleetMember{Server: srv, log: log,
			base: "http://" + srv.HTTPAddr().String(), admin: "http://" + srv.AdminAddr().String()})
	}
	fleetReady(ctx, t, fleet)
	return fleet
}

// probeHashes are the torrents fleetReady announces on. The changes of a
// torrent go to the stream its info hash's bytes 12–19 choose (modulo the
// number of streams: 1 on one Redis, 16 on a Cluster), and these take the
// values 0 to 63 there, so they cover every stream of any Bus of up to 64.
var probeHashes = func() []bittorrent.InfoHash {
	var hs []bittorrent.InfoHash
	for k := range 64 {
		hs = append(hs, bittorrent.InfoHash{0: 'P', 1: 'R', 2: 'O', 3: 'B', 19: byte(k)})
	}
	return hs
}()

// fleetReady waits until every instance replays what every other one
// records, on every stream: an instance's sync reads each stream from its
// end as it found it at start, so what is announced before that reaches
// the others only with the peer's next announce. Each instance announces
// a probe peer on every probe hash, again, until every instance counts
// them all; then the probes stop, and it waits until they are gone
// everywhere.
func fleetReady(ctx context.Context, t *testing.T, fleet []*fleetMember) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, fleetWait)
	defer cancel()
	probe := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(39000+i))
	}
	announceAll := func(ev bittorrent.Event) {
		for i, m := range fleet {
			for _, h := range probeHashes {
				if _, err := coreAnnounce(wctx, m.Server, h, probe(i), 1, ev, 0); err != nil {
					t.Fatalf("probe announce to instance %d: %v", i, err)
				}
			}
		}
	}
	counts := func(want uint32) (bool, string) {
		for i, m := range fleet {
			for k, s := range coreScrape(wctx, t, m.Server, probeHashes...) {
				if s.Leechers != want {
					return false, fmt.Sprintf("instance %d counts %d probes on probe torrent %d, want %d", i, s.Leechers, k, want)
				}
			}
		}
		return true, ""
	}
	start := time.Now()
	waitFor(wctx, t, "every instance to replay the others' probes on every stream", func() (bool, string) {
		announceAll(bittorrent.EventNone)
		time.Sleep(100 * time.Millisecond)
		return counts(uint32(len(fleet)))
	})
	announceAll(bittorrent.EventStopped)
	waitFor(wctx, t, "the probes to be gone everywhere", func() (bool, string) { return counts(0) })
	t.Logf("fleet of %d instances in step after %v", len(fleet), time.Since(start).Round(time.Millisecond))
}

// coreAnnounce announces addr in ih straight to srv's core tracker, as a
// frontend would, wanting numWant peers.
func coreAnnounce(ctx context.Context, srv *server.Server, ih bittorrent.InfoHash, addr netip.AddrPort, left uint64, ev bittorrent.Event, numWant int) (core.AnnounceResponse, error) {
	var id bittorrent.PeerID
	copy(id[:], fmt.Sprintf("-E2EFLT-%012d", addr.Port()))
	var resp core.AnnounceResponse
	err := srv.Tracker().Announce(ctx, &core.AnnounceRequest{
		// Not compact: the peers come back in resp.Peers (a compact
		// request to the memory store gets them in resp.Compact4).
		InfoHash: ih, PeerID: id, Addr: addr, Left: left, Event: ev, NumWant: numWant,
	}, &resp)
	return resp, err
}

// coreScrape returns srv's counts of the hashes, from its core tracker.
func coreScrape(ctx context.Context, t *testing.T, srv *server.Server, hs ...bittorrent.InfoHash) []bittorrent.Stats {
	t.Helper()
	var out []bittorrent.Stats
	for len(hs) > 0 {
		n := min(len(hs), 32)
		var resp core.ScrapeResponse
		if err := srv.Tracker().Scrape(ctx, hs[:n], &resp); err != nil {
			t.Fatalf("Tracker().Scrape: %v", err)
		}
		out = append(out, resp.Files...)
		hs = hs[n:]
	}
	return out
}

// fleetMetric returns the value of an unlabelled series on m's /metrics,
// or -1 if it is not there.
func fleetMetric(ctx context.Context, t *testing.T, hc *http.Client, m *fleetMember, series string) float64 {
	t.Helper()
	return fleetMetrics(ctx, t, hc, m, series)[0]
}

// fleetMetrics returns the values of unlabelled series on m's /metrics,
// read at once; -1 for one that is not there.
func fleetMetrics(ctx context.Context, t *testing.T, hc *http.Client, m *fleetMember, series ...string) []float64 {
	t.Helper()
	v, err := readFleetMetrics(ctx, t, hc, m, series...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// readFleetMetrics is fleetMetrics that returns its error, for a
// goroutine other than the test's.
func readFleetMetrics(ctx context.Context, t *testing.T, hc *http.Client, m *fleetMember, series ...string) ([]float64, error) {
	code, body, err := rawGet(ctx, t, hc, m.admin+"/metrics")
	if err != nil || code != 200 {
		return nil, fmt.Errorf("%s/metrics: %d %v", m.admin, code, err)
	}
	out := make([]float64, len(series))
	for i, s := range series {
		out[i] = -1
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(s) + ` (\S+)$`)
		if sm := re.FindSubmatch(body); sm != nil {
			out[i], _ = strconv.ParseFloat(string(sm[1]), 64)
		}
	}
	return out, nil
}

// ipv6Loopback reports whether ::1 can be bound here.
func ipv6Loopback() bool {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// nonCompactPeers returns a non-compact reply's peers as sorted
// "host:port" strings.
func nonCompactPeers(t *testing.T, reply map[string]any) []string {
	t.Helper()
	list, ok := reply["peers"].([]any)
	if !ok {
		t.Fatalf("non-compact peers is a %T, want a list", reply["peers"])
	}
	var got []string
	for _, e := range list {
		d, _ := e.(map[string]any)
		ip, _ := d["ip"].(string)
		port, _ := d["port"].(int64)
		got = append(got, net.JoinHostPort(ip, strconv.FormatInt(port, 10)))
	}
	slices.Sort(got)
	return got
}

// TestFleetShare: two and three instances, on one Redis and on a Cluster
// of three masters, share their swarms across HTTP and UDP. A seeder that
// announced over UDP to A is returned by HTTP announces to B (compact) and
// C (non-compact, over IPv6 where ::1 can be bound), A hands its seeder
// the leechers B and C took in, every instance's scrape (HTTP and UDP) and
// full scrape agree, and the seeder's stopped removes it everywhere.
func TestFleetShare(t *testing.T) {
	for _, tc := range []struct {
		name    string
		n       int
		cluster bool
	}{
		{"redis/2", 2, false},
		{"redis/3", 3, false},
		{"cluster/3", 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var url string
			if tc.cluster {
				url = redistest.StartCluster(t, 3).URL()
			} else {
				url = redistest.Start(t).URL()
			}
			ctx := deadline(t, 90*time.Second)
			v6 := tc.n == 3 && ipv6Loopback()
			fleet := startFleet(ctx, t, url, tc.n, func(i int, c *config.Config) {
				if v6 && i == 2 {
					c.HTTP = "[::1]:0"
				}
			})
			fleetShare(ctx, t, fleet, v6)
		})
	}
}

func fleetShare(ctx context.Context, t *testing.T, fleet []*fleetMember, v6 bool) {
	hc := newLoopbackHTTPClient(t)
	n := len(fleet)
	a, b := fleet[0], fleet[1]
	ih := [20]byte{0: 'F', 1: 'S', 2: byte('0' + n), 12: 0x5a, 19: 0x33}
	wctx, cancel := context.WithTimeout(ctx, fleetWait)
	defer cancel()

	ua := announcer{t: t, ctx: ctx, cl: newUDPTrackerClient(t, udpAnnounceURL(a.Server), "127.0.0.1"), ih: ih}
	seeder := newTrackerPeer("fleet-seeder", 42001)
	ua.check("seeder announces to A over UDP", seeder, tracker.Started, 0, 1, 0)

	// B, over HTTP (compact), returns A's UDP seeder.
	leechB := httpAnnounce{infoHash: ih, port: 42002, left: 100, compact: true}
	waitFor(wctx, t, "B to return the seeder announced over UDP to A", func() (bool, string) {
		r := leechB.do(ctx, t, hc, b.base)
		got := compactPeers(t, r, false)
		return slices.Equal(got, []string{"127.0.0.1:42001"}) && r["complete"] == int64(1),
			fmt.Sprintf("peers %v, complete %v incomplete %v", got, r["complete"], r["incomplete"])
	})
	leechers := []string{"127.0.0.1:42002"}
	v4Leechers := []string{"127.0.0.1:42002"}
	if n == 3 {
		// C, over HTTP (non-compact, IPv6 if it can), returns both.
		c := fleet[2]
		leechC := httpAnnounce{infoHash: ih, port: 42003, left: 100}
		want := []string{"127.0.0.1:42001", "127.0.0.1:42002"}
		waitFor(wctx, t, "C to return A's seeder and B's leecher", func() (bool, string) {
			r := leechC.do(ctx, t, hc, c.base)
			got := nonCompactPeers(t, r)
			return slices.Equal(got, want) && r["complete"] == int64(1) && r["incomplete"] == int64(2),
				fmt.Sprintf("peers %v, complete %v incomplete %v", got, r["complete"], r["incomplete"])
		})
		if v6 {
			leechers = append(leechers, "[::1]:42003")
		} else {
			leechers = append(leechers, "127.0.0.1:42003")
			v4Leechers = append(v4Leechers, "127.0.0.1:42003")
		}
	}
	// A hands its UDP seeder the leechers of the others (a UDP reply
	// carries the peers of the request's family only).
	waitFor(wctx, t, "A to hand its seeder the others' leechers", func() (bool, string) {
		r := ua.announce(seeder, tracker.None, 0)
		got := peerStrings(r.Peers)
		return slices.Equal(got, v4Leechers) && r.Seeders == 1 && r.Leechers == int32(n-1),
			fmt.Sprintf("peers %v, seeders %d leechers %d", got, r.Seeders, r.Leechers)
	})
	if v6 {
		// And B's leecher gets C's IPv6 leecher in peers6 (BEP 7).
		waitFor(wctx, t, "B to return C's IPv6 leecher in peers6", func() (bool, string) {
			r := leechB.do(ctx, t, hc, b.base)
			p4, p6 := compactPeers(t, r, false), compactPeers(t, r, true)
			return slices.Equal(p4, []string{"127.0.0.1:42001"}) && slices.Equal(p6, []string{"[::1]:42003"}),
				fmt.Sprintf("peers %v peers6 %v", p4, p6)
		})
	}

	// Every instance's scrape agrees, over HTTP and UDP.
	wantFile := map[string]any{"complete": int64(1), "incomplete": int64(n - 1), "downloaded": int64(0)}
	for i, m := range fleet {
		waitFor(wctx, t, fmt.Sprintf("instance %d's scrape", i), func() (bool, string) {
			got := scrapeFiles(ctx, t, hc, m.base, ih)[string(ih[:])]
			return reflect.DeepEqual(got, wantFile), fmt.Sprintf("%v, want %v", got, wantFile)
		})
		u := announcer{t: t, ctx: ctx, cl: newUDPTrackerClient(t, udpAnnounceURL(m.Server), "127.0.0.1"), ih: ih}
		u.scrape(fmt.Sprintf("UDP scrape of instance %d", i), udp.ScrapeInfohashResult{Seeders: 1, Leechers: int32(n - 1)})
	}
	// The full scrape, built in the background, agrees too: ask until a
	// build after the announces is served everywhere.
	waitFor(wctx, t, "the full scrapes to agree", func() (bool, string) {
		var first map[string]any
		for i, m := range fleet {
			files, _ := httpGet(ctx, t, hc, m.base+"/scrape")["files"].(map[string]any)
			if !reflect.DeepEqual(files[string(ih[:])], wantFile) {
				return false, fmt.Sprintf("instance %d lists the swarm as %v", i, files[string(ih[:])])
			}
			if i == 0 {
				first = files
			} else if !reflect.DeepEqual(files, first) {
				return false, fmt.Sprintf("instance %d lists %d torrents, instance 0 %d", i, len(files), len(first))
			}
		}
		return true, ""
	})

	// The seeder's stopped, to A over UDP, removes it everywhere.
	ua.announce(seeder, tracker.Stopped, 0)
	gone := map[string]any{"complete": int64(0), "incomplete": int64(n - 1), "downloaded": int64(0)}
	for i, m := range fleet {
		waitFor(wctx, t, fmt.Sprintf("instance %d to forget the stopped seeder", i), func() (bool, string) {
			got := scrapeFiles(ctx, t, hc, m.base, ih)[string(ih[:])]
			return reflect.DeepEqual(got, gone), fmt.Sprintf("%v, want %v", got, gone)
		})
	}
	r := leechB.do(ctx, t, hc, b.base)
	if got := compactPeers(t, r, false); slices.Contains(got, "127.0.0.1:42001") {
		t.Errorf("B still returns the stopped seeder: %v", got)
	}
	t.Logf("%d instances agree on the swarm (leechers %v) and on the full scrape; the stopped seeder is gone everywhere", n, leechers)
}

// percentile returns the p-th percentile (0 < p ≤ 100) of ds, sorted.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// udpLoad announces over UDP to each instance of fleet from workers
// goroutines each, on a few torrents, until stop is closed or each has
// sent maxEach. It returns a wait function that returns the announces
// made and those that failed.
func udpLoad(t *testing.T, fleet []*fleetMember, workers, maxEach int, stop <-chan struct{}) func() (ok, failed int64) {
	var okN, failedN atomic.Int64
	var wg sync.WaitGroup
	for i, m := range fleet {
		for w := range workers {
			uc := dialUDP(t, m.Server)
			wg.Go(func() {
				for k := range maxEach {
					select {
					case <-stop:
						return
					default:
					}
					ih := [20]byte{0: 'L', 1: 'O', 2: 'A', 3: 'D', 19: byte(k % 16)}
					errMsg, err := uc.announce(ih, uint16(20000+i*2000+w*200+k%200))
					if err != nil || errMsg != "" {
						if failedN.Add(1) <= 3 {
							t.Errorf("UDP announce to instance %d under load: %v %q", i, err, errMsg)
						}
						if err != nil {
							return
						}
						continue
					}
					okN.Add(1)
				}
			})
		}
	}
	return func() (int64, int64) {
		wg.Wait()
		return okN.Load(), failedN.Load()
	}
}

// TestFleetConvergence: under a bounded load (UDP announces to both
// instances), how long a peer announced over HTTP to A takes to be
// returned by B, and its stopped to take it away from B. Asserted only
// against a generous bound; the figures are logged (bench/ measures them).
func TestFleetConvergence(t *testing.T) {
	rs := redistest.Start(t)
	ctx := deadline(t, 120*time.Second)
	fleet := startFleet(ctx, t, rs.URL(), 2, nil)
	a, b := fleet[0], fleet[1]
	hc := newLoopbackHTTPClient(t)

	const (
		samples = 100
		bound   = 5 * time.Second // not a timer: the aim is 1 s p99
		poll    = 5 * time.Millisecond
	)
	stop := make(chan struct{})
	wait := udpLoad(t, fleet, 2, 200_000, stop)
	loadStart := time.Now()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			wait()
		}
	}()
	time.Sleep(500 * time.Millisecond) // the load under way

	poller := netip.MustParseAddrPort("127.0.0.2:9")
	var join, leave []time.Duration
	for k := range samples {
		ih := bittorrent.InfoHash{0: 'C', 1: 'V', 2: 'G', 18: byte(k), 19: byte(k * 7)}
		port := 45000 + k
		httpAnnounce{infoHash: ih, port: port, left: 100, compact: true}.do(ctx, t, hc, a.base)
		start := time.Now()
		want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
		for {
			resp, err := coreAnnounce(ctx, b.Server, ih, poller, 100, bittorrent.EventNone, 50)
			if err != nil {
				t.Fatalf("poll of B: %v", err)
			}
			if slices.ContainsFunc(resp.Peers, func(p bittorrent.Peer) bool { return p.Addr == want }) {
				break
			}
			if d := time.Since(start); d > bound {
				t.Fatalf("sample %d: B has not returned the peer announced to A after %v", k, d)
			}
			time.Sleep(poll)
		}
		join = append(join, time.Since(start))
		// Its stopped, to A, takes it away from B.
		q := a.base + "/announce?info_hash=" + url.QueryEscape(string(ih[:])) + "&peer_id=" +
			url.QueryEscape(fmt.Sprintf("-E2E6-%014d", port)) + fmt.Sprintf("&port=%d&left=100&event=stopped&compact=1", port)
		if r := httpGet(ctx, t, hc, q); r["failure reason"] != nil {
			t.Fatalf("stopped: %v", r)
		}
		start = time.Now()
		for {
			s := coreScrape(ctx, t, b.Server, ih)[0]
			if s.Leechers == 1 { // the poller alone
				break
			}
			if d := time.Since(start); d > bound {
				t.Fatalf("sample %d: B still counts the stopped peer after %v (%+v)", k, d, s)
			}
			time.Sleep(poll)
		}
		leave = append(leave, time.Since(start))
	}
	close(stop)
	ok, failed := wait()
	elapsed := time.Since(loadStart)
	t.Logf("under load of %d UDP announces in %v (%.0f/s, %d failed), %d samples polled every %v:",
		ok, elapsed.Round(time.Millisecond), float64(ok)/elapsed.Seconds(), failed, samples, poll)
	t.Logf("  peer announced to A returned by B: p50 %v, p99 %v, max %v",
		percentile(join, 50).Round(time.Millisecond), percentile(join, 99).Round(time.Millisecond), slices.Max(join).Round(time.Millisecond))
	t.Logf("  its stopped to A gone from B:      p50 %v, p99 %v, max %v",
		percentile(leave, 50).Round(time.Millisecond), percentile(leave, 99).Round(time.Millisecond), slices.Max(leave).Round(time.Millisecond))
	if failed != 0 {
		t.Errorf("%d announces of the load failed", failed)
	}
}

// fleetOutage is how long Redis stays down in TestFleetRedisOutage. The
// issue asks for 30 s; a test takes a shorter outage, under the rate
// limit of the log (ratelog.DefaultInterval), so that it says the outage
// is logged once. Nothing in the instances depends on its length but the
// pending changes (bounded by fleet.StoreConfig.MaxPending).
const fleetOutage = 5 * time.Second

// TestFleetRedisOutage: two instances under a continuous load of HTTP and
// UDP announces; Redis is killed for fleetOutage and restarted on the same
// port. No announce fails, /readyz stays 200 throughout, and
// trackd_sync_connected goes 1, 0, 1 on both; each logs the outage once
// and its end once; and the changes made on each during the outage reach
// the other after the restart (they waited in the pending buffer): none
// dropped.
func TestFleetRedisOutage(t *testing.T) {
	rs := redistest.Start(t)
	ctx := deadline(t, 120*time.Second)
	fleet := startFleet(ctx, t, rs.URL(), 2, nil)
	a, b := fleet[0], fleet[1]
	hc := newLoopbackHTTPClient(t)
	testStart := time.Now()

	// The load: HTTP and UDP announces to both, each bounded in count.
	var httpOK, httpFailed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, m := range fleet {
		wg.Go(func() {
			for k := range 100_000 {
				select {
				case <-stop:
					return
				default:
				}
				port := 21000 + i*1000 + k%500
				ih := [20]byte{0: 'O', 1: 'L', 2: 'D', 19: byte(k % 8)}
				q := m.base + "/announce?info_hash=" + url.QueryEscape(string(ih[:])) + "&peer_id=" +
					url.QueryEscape(fmt.Sprintf("-E2EOLD-%012d", port)) + fmt.Sprintf("&port=%d&left=1&compact=1", port)
				code, body, err := rawGet(ctx, t, hc, q)
				if err != nil || code != 200 || strings.Contains(string(body), "failure reason") {
					if httpFailed.Add(1) <= 3 {
						t.Errorf("HTTP announce to instance %d: %d %q %v", i, code, body, err)
					}
					continue
				}
				httpOK.Add(1)
			}
		})
	}
	udpWait := udpLoad(t, fleet, 1, 200_000, stop)

	// The watchers: /readyz and trackd_sync_connected of both, every
	// 100 ms.
	var readyBad atomic.Int64
	var connMu sync.Mutex
	conn := make([][]float64, len(fleet)) // each instance's values, as they changed
	watchStop := make(chan struct{})
	var watchers sync.WaitGroup
	for i, m := range fleet {
		watchers.Go(func() {
			for range 2000 { // 200 s at most
				select {
				case <-watchStop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				code, body, err := rawGet(ctx, t, hc, m.admin+"/readyz")
				if err != nil || code != 200 {
					if readyBad.Add(1) <= 3 {
						t.Errorf("instance %d: /readyz %d %q %v", i, code, body, err)
					}
				}
				vs, err := readFleetMetrics(ctx, t, hc, m, "trackd_sync_connected")
				if err != nil {
					t.Errorf("instance %d: %v", i, err)
					return
				}
				v := vs[0]
				connMu.Lock()
				if k := len(conn[i]); k == 0 || conn[i][k-1] != v {
					conn[i] = append(conn[i], v)
				}
				connMu.Unlock()
			}
		})
	}
	var udpOK, udpFailed int64
	stopAll := func() {
		select {
		case <-stop:
			return
		default:
		}
		close(stop)
		wg.Wait()
		udpOK, udpFailed = udpWait()
		close(watchStop)
		watchers.Wait()
	}
	defer stopAll()
	connected := func(i int) float64 {
		connMu.Lock()
		defer connMu.Unlock()
		if k := len(conn[i]); k > 0 {
			return conn[i][k-1]
		}
		return -1
	}
	waitConnected := func(want float64) {
		wctx, cancel := context.WithTimeout(ctx, fleetWait)
		defer cancel()
		waitFor(wctx, t, fmt.Sprintf("trackd_sync_connected %v on both", want), func() (bool, string) {
			return connected(0) == want && connected(1) == want, fmt.Sprintf("A %v, B %v", connected(0), connected(1))
		})
	}

	waitConnected(1)
	time.Sleep(time.Second)
	before := httpOK.Load()
	downAt := time.Now()
	rs.Stop()
	t.Logf("redis-server killed; down for %v (the issue's 30 s, shortened for a test)", fleetOutage)
	waitConnected(0)

	// During the outage: 20 new peers of one torrent on A over HTTP, 20
	// of another on B over UDP.
	onA := [20]byte{0: 'O', 1: 'N', 2: 'A', 12: 1, 19: 9}
	onB := [20]byte{0: 'O', 1: 'N', 2: 'B', 12: 2, 19: 10}
	ub := dialUDP(t, b.Server)
	for k := range 20 {
		httpAnnounce{infoHash: onA, port: 46000 + k, left: 100, compact: true}.do(ctx, t, hc, a.base)
		if msg, err := ub.announce(onB, uint16(46100+k)); err != nil || msg != "" {
			t.Fatalf("UDP announce to B during the outage: %q %v", msg, err)
		}
	}
	if s := coreScrape(ctx, t, b.Server, onA)[0]; s.Seeders+s.Leechers != 0 {
		t.Errorf("B counts peers announced to A while Redis is down: %+v", s)
	}
	if s := coreScrape(ctx, t, a.Server, onB)[0]; s.Seeders+s.Leechers != 0 {
		t.Errorf("A counts peers announced to B while Redis is down: %+v", s)
	}
	if p := fleetMetric(ctx, t, hc, a, "trackd_sync_pending_bytes"); p <= 0 {
		t.Errorf("A: trackd_sync_pending_bytes %v during the outage, want the changes waiting", p)
	}
	time.Sleep(time.Until(downAt.Add(fleetOutage)))
	during := httpOK.Load() - before
	rs.Restart()
	upAt := time.Now()
	t.Logf("redis-server restarted on %s after %v; %d HTTP announces answered during the outage", rs.Addr, upAt.Sub(downAt).Round(time.Millisecond), during)

	wctx, cancel := context.WithTimeout(ctx, fleetWait)
	defer cancel()
	var atB, atA time.Duration // when B had A's changes, A B's
	waitFor(wctx, t, "the changes of the outage to reach the other instance", func() (bool, string) {
		sb, sa := coreScrape(ctx, t, b.Server, onA)[0], coreScrape(ctx, t, a.Server, onB)[0]
		// (udpClient's peers are seeders: it sends left 0.)
		nb, na := sb.Seeders+sb.Leechers, sa.Seeders+sa.Leechers
		if nb == 20 && atB == 0 {
			atB = time.Since(upAt)
		}
		if na == 20 && atA == 0 {
			atA = time.Since(upAt)
		}
		why := fmt.Sprintf("B counts %d of A's 20, A %d of B's 20", nb, na)
		if d, _ := wctx.Deadline(); time.Until(d) < time.Second { // for the message
			why += fmt.Sprintf("; A %v, B %v", syncState(ctx, t, hc, a), syncState(ctx, t, hc, b))
		}
		return nb == 20 && na == 20, why
	})
	reconverged := max(atA, atB)
	t.Logf("after the restart: A's sync reached Redis again at %v, B's at %v; B had A's changes of the outage at %v, A B's at %v",
		a.log.first(upAt, "sync: the bus is reachable again").Sub(upAt).Round(time.Millisecond),
		b.log.first(upAt, "sync: the bus is reachable again").Sub(upAt).Round(time.Millisecond),
		atB.Round(time.Millisecond), atA.Round(time.Millisecond))
	waitConnected(1)
	time.Sleep(time.Second) // load after the return
	stopAll()
	t.Logf("re-converged %v after Redis returned; load: HTTP %d ok %d failed, UDP %d ok %d failed",
		reconverged.Round(time.Millisecond), httpOK.Load(), httpFailed.Load(), udpOK, udpFailed)

	if httpFailed.Load() != 0 || udpFailed != 0 {
		t.Errorf("%d HTTP and %d UDP announces failed, want none", httpFailed.Load(), udpFailed)
	}
	if during == 0 {
		t.Errorf("no HTTP announce answered during the outage")
	}
	if readyBad.Load() != 0 {
		t.Errorf("/readyz was not 200 %d times", readyBad.Load())
	}
	for i, m := range fleet {
		connMu.Lock()
		seq := slices.Clone(conn[i])
		connMu.Unlock()
		if !slices.Equal(seq, []float64{1, 0, 1}) {
			t.Errorf("instance %d: trackd_sync_connected went %v, want [1 0 1]", i, seq)
		}
		down, levels := m.log.count(testStart, "sync: the bus is unreachable")
		up, _ := m.log.count(testStart, "sync: the bus is reachable again")
		if down != 1 || levels[0] != slog.LevelWarn || up != 1 {
			t.Errorf("instance %d: %d outage lines (%v), %d lines of its end; want one each", i, down, levels, up)
		}
		// A gap is possible, and no fault: the batches the other
		// published just before the kill and this one had not read yet
		// went with Redis (it keeps no data here). Their peers come back
		// with their next announce.
		v := fleetMetrics(ctx, t, hc, m, "trackd_sync_changes_dropped_total", "trackd_sync_gaps_total", "trackd_sync_changes_lost_total")
		if v[0] != 0 {
			t.Errorf("instance %d: trackd_sync_changes_dropped_total %v, want 0: the pending bound is far", i, v[0])
		}
		t.Logf("instance %d: trackd_sync_connected %v; %d outage line, %d end line; %v changes dropped; %v gaps (%v changes lost with the killed Redis)",
			i, seq, down, up, v[0], v[1], v[2])
	}
}

// TestFleetCounters: completed events of different sessions of one
// torrent, some to A (HTTP), some to B (UDP), some sent twice (to the same
// instance, and to the other one): every instance's scrape counts each
// distinct session once. A session that stops and starts again is a new
// one, and counts again. On one Redis with two instances, and on a
// Cluster with three (the third only reads).
func TestFleetCounters(t *testing.T) {
	t.Run("redis/2", func(t *testing.T) {
		rs := redistest.Start(t)
		ctx := deadline(t, 90*time.Second)
		fleetCounters(ctx, t, startFleet(ctx, t, rs.URL(), 2, nil))
	})
	t.Run("cluster/3", func(t *testing.T) {
		c := redistest.StartCluster(t, 3)
		ctx := deadline(t, 90*time.Second)
		fleetCounters(ctx, t, startFleet(ctx, t, c.URL(), 3, nil))
	})
}

// fleetCounters is TestFleetCounters on fleet: the events go to its
// first two instances, every instance must count them.
func fleetCounters(ctx context.Context, t *testing.T, fleet []*fleetMember) {
	a, b := fleet[0], fleet[1]
	hc := newLoopbackHTTPClient(t)
	ih := [20]byte{0: 'C', 1: 'N', 2: 'T', 12: 7, 19: 0x42}
	wctx, cancel := context.WithTimeout(ctx, fleetWait)
	defer cancel()

	httpEvent := func(m *fleetMember, port int, left int, event string) {
		t.Helper()
		q := m.base + "/announce?info_hash=" + url.QueryEscape(string(ih[:])) + "&peer_id=" +
			url.QueryEscape(fmt.Sprintf("-E2E6-%014d", port)) + fmt.Sprintf("&port=%d&left=%d&event=%s&compact=1", port, left, event)
		if r := httpGet(ctx, t, hc, q); r["failure reason"] != nil {
			t.Fatalf("%s of port %d: %v", event, port, r)
		}
	}
	ua := announcer{t: t, ctx: ctx, cl: newUDPTrackerClient(t, udpAnnounceURL(a.Server), "127.0.0.1"), ih: ih}
	ub := announcer{t: t, ctx: ctx, cl: newUDPTrackerClient(t, udpAnnounceURL(b.Server), "127.0.0.1"), ih: ih}
	downloaded := func(want int64, what string) {
		t.Helper()
		for i, m := range fleet {
			waitFor(wctx, t, fmt.Sprintf("instance %d: %s", i, what), func() (bool, string) {
				got, _ := scrapeFiles(ctx, t, hc, m.base, ih)[string(ih[:])].(map[string]any)
				return got["downloaded"] == want, fmt.Sprintf("%v, want downloaded %d", got, want)
			})
		}
	}

	// Three sessions complete on A over HTTP, two on B over UDP.
	for port := 41001; port <= 41003; port++ {
		httpEvent(a, port, 100, "started")
		httpEvent(a, port, 0, "completed")
	}
	udpPeers := []trackerPeer{newTrackerPeer("counter-4", 41004), newTrackerPeer("counter-5", 41005)}
	for _, p := range udpPeers {
		ub.announce(p, tracker.Started, 100)
		ub.announce(p, tracker.Completed, 0)
	}
	downloaded(5, "5 distinct completed sessions")

	// Duplicates: completed again, to the same instance and to the other,
	// at once; and the same session's completed twice to B right away.
	httpEvent(a, 41001, 0, "completed")
	httpEvent(b, 41001, 0, "completed")
	httpEvent(b, 41002, 0, "completed")
	httpEvent(b, 41002, 0, "completed")
	ua.announce(udpPeers[0], tracker.Completed, 0)
	ub.announce(udpPeers[1], tracker.Completed, 0)
	// Long enough for the duplicates to be replayed everywhere (many
	// flush intervals): the counts stay.
	for range 10 {
		time.Sleep(200 * time.Millisecond)
		for i, m := range fleet {
			got, _ := scrapeFiles(ctx, t, hc, m.base, ih)[string(ih[:])].(map[string]any)
			if got["downloaded"] != int64(5) {
				t.Fatalf("instance %d: after duplicated completed events, scrape %v, want downloaded 5", i, got)
			}
		}
	}

	// A session that stops (on A) and, once that is known everywhere,
	// starts again and completes (on B) is a new one.
	httpEvent(a, 41003, 0, "stopped")
	for i, m := range fleet {
		waitFor(wctx, t, fmt.Sprintf("instance %d to forget the stopped session", i), func() (bool, string) {
			s := coreScrape(ctx, t, m.Server, ih)[0]
			return s.Seeders == 4, fmt.Sprintf("%+v, want 4 seeders", s)
		})
	}
	httpEvent(b, 41003, 100, "started")
	httpEvent(b, 41003, 0, "completed")
	downloaded(6, "6 completed sessions (one restarted)")
	want := map[string]any{"complete": int64(5), "incomplete": int64(0), "downloaded": int64(6)}
	for i, m := range fleet {
		if got := scrapeFiles(ctx, t, hc, m.base, ih)[string(ih[:])]; !reflect.DeepEqual(got, want) {
			t.Errorf("instance %d: scrape %v, want %v", i, got, want)
		}
	}
	for i, m := range fleet {
		u := announcer{t: t, ctx: ctx, cl: newUDPTrackerClient(t, udpAnnounceURL(m.Server), "127.0.0.1"), ih: ih}
		u.scrape(fmt.Sprintf("UDP scrape of instance %d", i), udp.ScrapeInfohashResult{Seeders: 5, Completed: 6})
	}
}

// TestFleetMemoryBound: a flood of bogus torrents (one peer each) into A,
// which has no memory bound, reaches B, whose max_memory is the smallest
// there is: B's own bound evicts and refuses them, so that B stays under
// it, while A holds them all; a real swarm of two peers, made before the
// flood, stays on B.
func TestFleetMemoryBound(t *testing.T) {
	rs := redistest.Start(t)
	ctx := deadline(t, 300*time.Second)
	const bound = 32 << 20 // config's minimum max_memory
	fleet := startFleet(ctx, t, rs.URL(), 2, func(i int, c *config.Config) {
		c.MaxMemory = 0
		if i == 1 {
			c.MaxMemory = bound
		}
	})
	a, b := fleet[0], fleet[1]
	hc := newLoopbackHTTPClient(t)

	// A real swarm: a seeder on A, a leecher on B.
	swarm := [20]byte{0: 'S', 1: 'W', 2: 'M', 19: 0x21}
	httpAnnounce{infoHash: swarm, port: 47001, left: 0, compact: true}.do(ctx, t, hc, a.base)
	httpAnnounce{infoHash: swarm, port: 47002, left: 100, compact: true}.do(ctx, t, hc, b.base)
	wctx, cancel := context.WithTimeout(ctx, fleetWait)
	defer cancel()
	for i, m := range fleet {
		waitFor(wctx, t, fmt.Sprintf("instance %d to count the swarm", i), func() (bool, string) {
			s := coreScrape(ctx, t, m.Server, swarm)[0]
			return s.Seeders == 1 && s.Leechers == 1, fmt.Sprintf("%+v", s)
		})
	}
	applied0 := fleetMetrics(ctx, t, hc, b, "trackd_sync_changes_applied_total", "trackd_sync_changes_refused_total")

	// B's memory, every 500 ms (a scrape of /metrics may walk the whole
	// store, which costs under -race), until the flood is replayed.
	var peak atomic.Int64
	var samples atomic.Int64
	watchStop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for range 1000 {
			select {
			case <-watchStop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			v, err := readFleetMetrics(ctx, t, hc, b, "trackd_store_memory_bytes")
			if err != nil {
				t.Errorf("B: %v", err)
				return
			}
			samples.Add(1)
			if int64(v[0]) > peak.Load() {
				peak.Store(int64(v[0]))
			}
		}
	}()

	// The flood: new torrents of one peer each, into A's core tracker
	// (the path its frontends take, without the wire, for speed).
	const flood, workers = 480_000, 4
	start := time.Now()
	var fwg sync.WaitGroup
	for w := range workers {
		fwg.Go(func() {
			addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 1, byte(w)}), 6881)
			for k := w; k < flood; k += workers {
				ih := bittorrent.InfoHash{0: 'B', 1: 'O', 2: 'G', 3: 'U', 4: 'S', 8: byte(k >> 24), 9: byte(k >> 16), 10: byte(k >> 8), 11: byte(k), 19: byte(k)}
				if _, err := coreAnnounce(ctx, a.Server, ih, addr, 1, bittorrent.EventStarted, 0); err != nil {
					t.Errorf("flood announce %d to A: %v", k, err)
					return
				}
			}
		})
	}
	fwg.Wait()
	floodTime := time.Since(start)
	// B has read it all when it has applied or refused every change.
	for replayed := false; !replayed; {
		v := fleetMetrics(ctx, t, hc, b, "trackd_sync_changes_applied_total", "trackd_sync_changes_refused_total")
		done := v[0] - applied0[0] + v[1] - applied0[1]
		if replayed = done >= flood; !replayed {
			select {
			case <-ctx.Done():
				t.Fatalf("B has replayed %.0f of the %d changes of the flood: %v", done, flood, ctx.Err())
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	replayTime := time.Since(start)
	time.Sleep(2 * time.Second) // a sweep or two of B's bound
	close(watchStop)
	<-watched

	va := fleetMetrics(ctx, t, hc, a, "trackd_torrents", "trackd_store_memory_bytes")
	vb := fleetMetrics(ctx, t, hc, b, "trackd_torrents", "trackd_store_memory_bytes", "trackd_store_memory_limit_bytes",
		"trackd_store_evicted_torrents_total", "trackd_store_refused_announces_total", "trackd_sync_changes_refused_total",
		"trackd_sync_changes_applied_total", "trackd_sync_gaps_total")
	t.Logf("flood of %d torrents into A in %v, replayed by B after %v", flood, floodTime.Round(time.Millisecond), replayTime.Round(time.Millisecond))
	t.Logf("A: %.0f torrents, %.1f MiB", va[0], va[1]/(1<<20))
	t.Logf("B: %.0f torrents, %.1f MiB (peak %.1f MiB in %d samples) of a %.0f MiB bound; %.0f torrents evicted, %.0f announces refused by the store, %.0f changes refused (%.0f applied), %.0f gaps",
		vb[0], vb[1]/(1<<20), float64(peak.Load())/(1<<20), samples.Load(), vb[2]/(1<<20), vb[3], vb[4], vb[5], vb[6], vb[7])
	if va[0] < flood {
		t.Errorf("A holds %.0f torrents, want all %d of the flood (it has no bound)", va[0], flood)
	}
	if vb[2] != bound {
		t.Errorf("B's bound %v, want %d", vb[2], bound)
	}
	if peak.Load() > bound || vb[1] > bound {
		t.Errorf("B's store used %d bytes at its peak, %.0f at the end: above its bound %d", peak.Load(), vb[1], bound)
	}
	if vb[3]+vb[5] == 0 {
		t.Errorf("B neither evicted nor refused any of the flood")
	}
	if vb[0] >= flood {
		t.Errorf("B holds %.0f torrents: the whole flood", vb[0])
	}
	if s := coreScrape(ctx, t, b.Server, swarm)[0]; s.Seeders != 1 || s.Leechers != 1 {
		t.Errorf("B lost the real swarm in the flood: %+v", s)
	}
}

// syncState is a member's trackd_sync_* series, for messages.
func syncState(ctx context.Context, t *testing.T, hc *http.Client, m *fleetMember) string {
	names := []string{"connected", "changes_published_total", "batches_published_total", "changes_applied_total", "changes_refused_total",
		"changes_dropped_total", "gaps_total", "changes_lost_total", "batches_duplicate_total", "batches_garbage_total", "pending_batches"}
	series := make([]string, len(names))
	for i, n := range names {
		series[i] = "trackd_sync_" + n
	}
	v := fleetMetrics(ctx, t, hc, m, series...)
	var b strings.Builder
	for i, n := range names {
		fmt.Fprintf(&b, " %s=%v", n, v[i])
	}
	return "{" + b.String()[1:] + "}"
}

// TestFleetAnacrolix: real clients on two instances. An anacrolix client
// seeds with only A's UDP announce URL; another downloads with only B's
// HTTP one: B is how the downloader finds the seeder, from what A took in.
func TestFleetAnacrolix(t *testing.T) {
	rs := redistest.Start(t)
	ctx := deadline(t, 90*time.Second)
	fleet := startFleet(ctx, t, rs.URL(), 2, nil)
	a, b := fleet[0], fleet[1]
	seedDir, leechDir := t.TempDir(), t.TempDir()
	tf := makeTorrent(t, seedDir, "fleet.bin", 2<<20+4321, 256<<10, udpAnnounceURL(a.Server))
	mi, err := metainfo.LoadFromFile(tf.Path)
	if err != nil {
		t.Fatal(err)
	}

	seeder, _ := startSeeder(ctx, t, seedDir, mi)
	waitForSeeder(ctx, t, b.Server, tf.InfoHash) // on B, announced to A
	seederAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(seeder.LocalPort()))

	// The same torrent, announced to B only.
	mi.Announce = announceURL(b.Server)
	mi.AnnounceList = metainfo.AnnounceList{{announceURL(b.Server)}}
	leecher := newAnacrolixClient(t, leechDir, false)
	lt := addLeechingTorrent(ctx, t, leecher, mi)
	waitForAnacrolixDownload(ctx, t, lt, func() string {
		return fmt.Sprintf("A counts %+v, B %+v", swarmStats(context.Background(), t, a.Server, tf.InfoHash),
			swarmStats(context.Background(), t, b.Server, tf.InfoHash))
	})
	if sources := peerSources(lt); !slices.Contains(sources, fmt.Sprintf("%s from %s", seederAddr, torrent.PeerSourceTracker)) {
		t.Errorf("leecher's peers %v: none is the seeder %s found through the tracker", sources, seederAddr)
	}
	// A counts the leecher that announced to B.
	wctx, cancel := context.WithTimeout(ctx, fleetWait)
	defer cancel()
	waitFor(wctx, t, "A to count B's leecher", func() (bool, string) {
		s := swarmStats(ctx, t, a.Server, tf.InfoHash)
		return s.Seeders+s.Leechers == 2, fmt.Sprintf("%+v", s)
	})
	leecher.Close()
	checkDownloaded(t, filepath.Join(leechDir, tf.Name), tf)
}
