package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/torrent/tracker"
	"github.com/anacrolix/torrent/tracker/udp"

	"trackd/bencode"
	"trackd/config"
	"trackd/internal/redistest"
	"trackd/server"
	redisstore "trackd/store/redis"
)

// go-redis logs every failed dial on its own, thousands of lines while
// Redis is down; trackd's logger reports the failures already.
func init() { redisstore.SetLibraryLogger(slog.New(slog.DiscardHandler), time.Second) }

// Tests of several trackd instances sharing swarms through one Redis, with
// a real redis-server on a free loopback port (skipped where redis-server
// is missing, unless TRACKD_REQUIRE_EXTERNAL=1).

func startRedisTracker(t *testing.T, redisURL string, mutate func(*config.Config)) *server.Server {
	t.Helper()
	return startTracker(t, func(c *config.Config) {
		c.Store = redisURL
		c.RedisTimeout = 300 * time.Millisecond
		c.FullScrapeInterval = 0 // every full scrape starts a build
		if mutate != nil {
			mutate(c)
		}
	})
}

// rawGet fetches url and returns the status and the body.
func rawGet(ctx context.Context, t *testing.T, hc *http.Client, u string) (int, []byte, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, err
}

// scrapeFiles scrapes base (an http://host:port) for the given hashes, or
// all with none, and returns the "files" dictionary.
func scrapeFiles(ctx context.Context, t *testing.T, hc *http.Client, base string, hashes ...[20]byte) map[string]any {
	t.Helper()
	q := ""
	for i, h := range hashes {
		if i > 0 {
			q += "&"
		}
		q += "info_hash=" + url.QueryEscape(string(h[:]))
	}
	reply := httpGet(ctx, t, hc, base+"/scrape?"+q)
	files, ok := reply["files"].(map[string]any)
	if !ok {
		t.Fatalf("scrape of %s: no files dictionary in %v", base, reply)
	}
	return files
}

// TestRedisTwoInstances: two trackd instances, separate listeners, one
// Redis. A peer that announced over UDP to A is returned by an HTTP
// announce to B, and the other way round; scrape and full scrape agree on
// both.
func TestRedisTwoInstances(t *testing.T) {
	rs := redistest.Start(t)
	ctx := deadline(t, 60*time.Second)
	a := startRedisTracker(t, rs.URL(), nil)
	b := startRedisTracker(t, rs.URL(), nil)
	hc := newLoopbackHTTPClient(t)
	httpA, httpB := "http://"+a.HTTPAddr().String(), "http://"+b.HTTPAddr().String()

	ih := [20]byte{0: 'R', 1: 'E', 2: 'D', 19: 0x20}
	ua := announcer{t: t, ctx: ctx, cl: newUDPTrackerClient(t, udpAnnounceURL(a), "127.0.0.1"), ih: ih}
	seeder := newTrackerPeer("seeder-udp", 42001)
	ua.check("seeder announces to A over UDP", seeder, tracker.Started, 0, 1, 0)

	// B, over HTTP, returns the peer A took in.
	reply := httpAnnounce{infoHash: ih, port: 42002, left: 100, compact: true}.do(ctx, t, hc, httpB)
	if got := compactPeers(t, reply, false); !slices.Equal(got, []string{"127.0.0.1:42001"}) {
		t.Fatalf("HTTP announce to B: peers %v, want the UDP peer of A", got)
	}
	if reply["complete"] != int64(1) || reply["incomplete"] != int64(1) {
		t.Errorf("HTTP announce to B: complete %v incomplete %v, want 1 and 1", reply["complete"], reply["incomplete"])
	}
	// And A, over UDP, hands the seeder the leecher B took in.
	ua.check("seeder again to A", seeder, tracker.None, 0, 1, 1, "127.0.0.1:42002")

	// completed through B counts once, for both
	done := httpAnnounce{infoHash: ih, port: 42002, left: 0, compact: true}
	q := httpB + "/announce?info_hash=" + url.QueryEscape(string(ih[:])) + "&peer_id=" + url.QueryEscape(fmt.Sprintf("-E2E6-%014d", done.port)) +
		"&port=42002&uploaded=0&downloaded=100&left=0&event=completed&compact=1"
	if r := httpGet(ctx, t, hc, q); r["failure reason"] != nil {
		t.Fatalf("completed: %v", r)
	}

	other := [20]byte{0: 'R', 19: 0xff}
	httpAnnounce{infoHash: other, port: 42003, left: 5, compact: true}.do(ctx, t, hc, httpA)

	sa := scrapeFiles(ctx, t, hc, httpA, ih, other)
	sb := scrapeFiles(ctx, t, hc, httpB, ih, other)
	if !reflect.DeepEqual(sa, sb) {
		t.Errorf("scrape: A says %v, B says %v", sa, sb)
	}
	want := map[string]any{"complete": int64(2), "incomplete": int64(0), "downloaded": int64(1)}
	if got := sa[string(ih[:])]; !reflect.DeepEqual(got, want) {
		t.Errorf("scrape of the swarm: %v, want %v", got, want)
	}
	ua.scrape("UDP scrape of A", udp.ScrapeInfohashResult{Seeders: 2, Completed: 1})
	ub := announcer{t: t, ctx: ctx, cl: newUDPTrackerClient(t, udpAnnounceURL(b), "127.0.0.1"), ih: ih}
	ub.scrape("UDP scrape of B", udp.ScrapeInfohashResult{Seeders: 2, Completed: 1})

	// The full scrape is built in the background: a request gets the last
	// build and starts a new one (full_scrape_interval is 0), so ask until
	// the build after the announces is served.
	// Before the first build is done, the reply is a failure with "retry
	// in", without files.
	var fa, fb map[string]any
	for range 250 {
		fa, _ = httpGet(ctx, t, hc, httpA+"/scrape")["files"].(map[string]any)
		fb, _ = httpGet(ctx, t, hc, httpB+"/scrape")["files"].(map[string]any)
		if len(fa) == 2 && reflect.DeepEqual(fa, fb) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(fa) != 2 || !reflect.DeepEqual(fa, fb) {
		t.Errorf("full scrape: A lists %d torrents %v, B %d %v; want the same 2", len(fa), fa, len(fb), fb)
	}
}

// TestRedisOutage: Redis is killed while announces run over HTTP and UDP.
// Every request still gets an answer within a bounded time: a failure
// reason (HTTP) or an error packet (UDP), nothing hangs, trackd stays up.
// When Redis is back on the same address, trackd serves again by itself.
func TestRedisOutage(t *testing.T) {
	rs := redistest.Start(t)
	ctx := deadline(t, 90*time.Second)
	srv := startRedisTracker(t, rs.URL(), nil)
	hc := newLoopbackHTTPClient(t)
	base := "http://" + srv.HTTPAddr().String()
	ih := [20]byte{0: 'O', 1: 'U', 2: 'T'}

	type outcome struct{ ok, failed atomic.Int64 }
	var httpRes, udpRes outcome
	var slowest atomic.Int64 // ns
	var mu sync.Mutex
	var messages []string
	note := func(m string) {
		mu.Lock()
		defer mu.Unlock()
		if len(messages) < 5 && !slices.Contains(messages, m) {
			messages = append(messages, m)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(2)
		go func() { // HTTP
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				port := 43000 + w*100 + i%100
				q := base + "/announce?info_hash=" + url.QueryEscape(string(ih[:])) + "&peer_id=" +
					url.QueryEscape(fmt.Sprintf("-E2EOUT-%012d", port)) + fmt.Sprintf("&port=%d&left=1&compact=1", port)
				start := time.Now()
				code, body, err := rawGet(ctx, t, hc, q)
				slowest.Store(max(slowest.Load(), int64(time.Since(start))))
				switch {
				case err != nil || code != 200:
					t.Errorf("HTTP announce during the outage: status %d, err %v: every request must get a bencoded reply", code, err)
					return
				case strings.Contains(string(body), "failure reason"):
					v, derr := bencode.Decode(body)
					if derr != nil {
						t.Errorf("failure reply %q is not bencode", body)
						return
					}
					note(fmt.Sprint(v.(map[string]any)["failure reason"]))
					httpRes.failed.Add(1)
				default:
					httpRes.ok.Add(1)
				}
			}
		}()
		go func() { // UDP, by hand: anacrolix's client retries on an error packet
			defer wg.Done()
			uc := dialUDP(t, srv)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				port := uint16(44000 + w*100 + i%100)
				start := time.Now()
				errMsg, err := uc.announce(ih, port)
				slowest.Store(max(slowest.Load(), int64(time.Since(start))))
				switch {
				case err != nil:
					t.Errorf("UDP announce during the outage: %v", err)
					return
				case errMsg != "":
					note("udp: " + errMsg)
					udpRes.failed.Add(1)
				default:
					udpRes.ok.Add(1)
				}
			}
		}()
	}
	phase := func(name string, d time.Duration) (httpOK, httpFail, udpOK, udpFail int64) {
		h0, hf0, u0, uf0 := httpRes.ok.Load(), httpRes.failed.Load(), udpRes.ok.Load(), udpRes.failed.Load()
		time.Sleep(d)
		httpOK, httpFail = httpRes.ok.Load()-h0, httpRes.failed.Load()-hf0
		udpOK, udpFail = udpRes.ok.Load()-u0, udpRes.failed.Load()-uf0
		t.Logf("%s: HTTP %d ok, %d failure replies; UDP %d ok, %d error packets", name, httpOK, httpFail, udpOK, udpFail)
		return
	}
	if h, _, u, _ := phase("Redis up", time.Second); h == 0 || u == 0 {
		t.Errorf("no successful announces before the outage")
	}
	rs.Stop()
	time.Sleep(500 * time.Millisecond) // requests in flight at the kill
	if h, hf, u, uf := phase("Redis down", 2*time.Second); h != 0 || u != 0 || hf == 0 || uf == 0 {
		t.Errorf("while Redis is down: want only failure replies and error packets")
	}
	rs.Restart()
	waitFor(ctx, t, "announces to succeed again", func() (bool, string) {
		h0, u0 := httpRes.ok.Load(), udpRes.ok.Load()
		time.Sleep(200 * time.Millisecond)
		return httpRes.ok.Load() > h0 && udpRes.ok.Load() > u0, "no successes yet"
	})
	if h, hf, u, uf := phase("Redis back", time.Second); h == 0 || u == 0 || hf != 0 || uf != 0 {
		t.Errorf("after Redis came back: want only successes")
	}
	close(stop)
	wg.Wait()
	t.Logf("slowest request: %v; messages: %q", time.Duration(slowest.Load()), messages)
	if d := time.Duration(slowest.Load()); d > 3*time.Second {
		t.Errorf("slowest request took %v, want well under 3 s with a 300 ms Redis timeout", d)
	}
}

// udpClient is a minimal BEP 15 client: one connect, then announces, each
// answered (or not) within 2 s.
type udpClient struct {
	t   *testing.T
	c   *net.UDPConn
	id  uint64
	tx  uint32
	buf [2048]byte
}

func dialUDP(t *testing.T, srv *server.Server) *udpClient {
	t.Helper()
	c, err := net.DialUDP("udp", nil, srv.UDPAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	u := &udpClient{t: t, c: c}
	var pkt [16]byte
	binary.BigEndian.PutUint64(pkt[0:], 0x41727101980)
	binary.BigEndian.PutUint32(pkt[12:], 7)
	reply, err := u.roundTrip(pkt[:])
	if err != nil || len(reply) < 16 || binary.BigEndian.Uint32(reply) != 0 {
		t.Fatalf("UDP connect: %x %v", reply, err)
	}
	u.id = binary.BigEndian.Uint64(reply[8:])
	return u
}

func (u *udpClient) roundTrip(pkt []byte) ([]byte, error) {
	if _, err := u.c.Write(pkt); err != nil {
		return nil, err
	}
	u.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := u.c.Read(u.buf[:])
	if err != nil {
		return nil, fmt.Errorf("no reply in 2 s: %w", err)
	}
	return u.buf[:n], nil
}

// announce announces port in ih and returns the error packet's message, if
// the reply was one.
func (u *udpClient) announce(ih [20]byte, port uint16) (string, error) {
	u.tx++
	pkt := make([]byte, 98)
	be := binary.BigEndian
	be.PutUint64(pkt[0:], u.id)
	be.PutUint32(pkt[8:], 1)
	be.PutUint32(pkt[12:], u.tx)
	copy(pkt[16:], ih[:])
	copy(pkt[36:], fmt.Sprintf("-E2EUDP-%012d", port))
	be.PutUint64(pkt[64:], 1) // left: one byte to go, a leecher
	be.PutUint32(pkt[92:], 0xffffffff)
	be.PutUint16(pkt[96:], port)
	reply, err := u.roundTrip(pkt)
	if err != nil {
		return "", err
	}
	if len(reply) < 8 || be.Uint32(reply[4:]) != u.tx {
		return "", fmt.Errorf("reply %x does not match transaction %d", reply, u.tx)
	}
	switch be.Uint32(reply) {
	case 1:
		return "", nil
	case 3:
		return string(reply[8:]), nil
	}
	return "", fmt.Errorf("reply with action %d", be.Uint32(reply))
}

// TestRedisDownAtStart: with Redis down, server.Open logs why and keeps
// trying instead of failing; once Redis is up it returns a working trackd.
func TestRedisDownAtStart(t *testing.T) {
	rs := redistest.Start(t)
	rs.Stop()
	cfg := config.Default()
	cfg.HTTP, cfg.UDP, cfg.Admin = "127.0.0.1:0", "127.0.0.1:0", ""
	cfg.Store = rs.URL()
	cfg.RedisTimeout = 300 * time.Millisecond
	logs := &syncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type opened struct {
		srv *server.Server
		err error
	}
	done := make(chan opened, 1)
	go func() {
		srv, err := server.Open(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil)))
		done <- opened{srv, err}
	}()
	time.Sleep(3 * time.Second)
	select {
	case o := <-done:
		t.Fatalf("Open returned with Redis down: %v", o.err)
	default:
	}
	if !strings.Contains(logs.String(), "cannot open the store; retrying") {
		t.Errorf("no retry log line: %q", logs.String())
	}
	rs.Restart()
	var o opened
	select {
	case o = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("Open did not return within 15 s of Redis coming up")
	}
	if o.err != nil {
		t.Fatal(o.err)
	}
	if err := o.srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer o.srv.Shutdown(context.Background())
	ih := [20]byte{0: 'U', 1: 'P'}
	reply := httpAnnounce{infoHash: ih, port: 46001, left: 0, compact: true}.do(ctx, t, newLoopbackHTTPClient(t), "http://"+o.srv.HTTPAddr().String())
	if reply["complete"] != int64(1) {
		t.Errorf("announce after the late start: %v", reply)
	}
}
