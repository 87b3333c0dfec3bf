package udp

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/metrics"
	"trackd/store"
	"trackd/tracker"
)

// counter reads trackd_requests_total{protocol="udp",action,result}.
func counter(t *testing.T, m *metrics.Metrics, action, result string) float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "trackd_requests_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range s.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["protocol"] == "udp" && l["action"] == action && l["result"] == result {
				return s.GetCounter().GetValue()
			}
		}
	}
	return -1
}

// TestMetrics: a scripted sequence of packets is counted by action and
// result; packets the handler drops unanswered are not counted.
func TestMetrics(t *testing.T) {
	m := metrics.New(metrics.Options{})
	f := newFixture(t, tracker.Config{}, Options{Metrics: m})
	from := ap("192.0.2.1:4000")
	id := f.connect(t, from)
	f.connect(t, from)
	a := announce{id: id, tid: 2, ih: hash20("x"), pid: hash20("p"), left: 1, numWant: -1, port: 6881}
	f.do(from, a.bytes())
	f.do(from, a.bytes())
	bad := a
	bad.port = 0
	f.do(from, bad.bytes())                                // client error: port 0
	f.do(from, scrapePkt(id, 3, hash20("x")))              // ok
	f.do(from, scrapePkt(id+1, 3, hash20("x")))            // client error: invalid connection id
	f.do(from, []byte("short"))                            // dropped: not counted
	f.do(from, connectPkt(9)[:15])                         // dropped
	f.do(ap("192.0.2.9:1"), scrapePkt(id, 4, hash20("x"))) // id of another sender

	for _, tc := range []struct {
		action, result string
		want           float64
	}{
		{"connect", "ok", 2},
		{"announce", "ok", 2},
		{"announce", "client_error", 1},
		{"scrape", "ok", 1},
		{"scrape", "client_error", 2},
		{"announce", "server_error", 0},
	} {
		if got := counter(t, m, tc.action, tc.result); got != tc.want {
			t.Errorf("%s %s: %v, want %v", tc.action, tc.result, got, tc.want)
		}
	}
	if got := m.Requests(metrics.UDP); got != 8 {
		t.Errorf("UDP requests %d, want 8", got)
	}
}

func TestMetricsServerError(t *testing.T) {
	m := metrics.New(metrics.Options{})
	h := NewHandler(tracker.New(tracker.Config{}, failingStore{}), Options{Secret: testSecret, Metrics: m})
	from := ap("192.0.2.1:4000")
	reply := h.Handle(context.Background(), from, connectPkt(1), nil)
	id := binary.BigEndian.Uint64(reply[8:])
	a := announce{id: id, tid: 2, ih: hash20("x"), pid: hash20("p"), left: 1, numWant: -1, port: 6881}
	h.Handle(context.Background(), from, a.bytes(), nil)
	if got := counter(t, m, "announce", "server_error"); got != 1 {
		t.Errorf("server errors %v, want 1", got)
	}
}

// slowHandler answers after a pause, so that a burst overflows the
// socket's receive buffer.
type slowHandler struct{}

func (slowHandler) Handle(ctx context.Context, from netip.AddrPort, req, out []byte) []byte {
	time.Sleep(time.Millisecond)
	return out[:0]
}

// TestDropped: datagrams the kernel drops at a full receive buffer show in
// Server.Dropped.
func TestDropped(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", slowHandler{}, ServeOptions{Sockets: 1, ReadBuffer: 4096})
	if s.Dropped() != 0 {
		t.Fatalf("dropped %d before any traffic", s.Dropped())
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(s.Addr().String())))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pkt := []byte(strings.Repeat("x", 512))
	deadline := time.Now().Add(5 * time.Second)
	for s.Dropped() == 0 && time.Now().Before(deadline) {
		for range 500 {
			c.Write(pkt)
		}
	}
	if s.Dropped() == 0 {
		if reusePortBalances { // Linux: SO_MEMINFO tells
			t.Fatal("no drops counted after a burst into a 4 KiB buffer")
		}
		t.Skip("this system does not report socket drops")
	}
}

// blockedStore holds announces until release is closed.
type blockedStore struct {
	failingStore
	entered chan struct{}
	release chan struct{}
}

func (b *blockedStore) Announce(context.Context, store.Announce, []bittorrent.Peer) ([]bittorrent.Peer, bittorrent.Stats, error) {
	b.entered <- struct{}{}
	<-b.release
	return nil, bittorrent.Stats{}, nil
}

func (b *blockedStore) Totals(context.Context) (store.Totals, error) { return store.Totals{}, nil }

// TestOverloadErrorPacket: a request refused for overload gets an error
// packet saying so and to retry later, and is logged once (rate-limited,
// kind=overload).
func TestOverloadErrorPacket(t *testing.T) {
	var logBuf bytes.Buffer
	bs := &blockedStore{entered: make(chan struct{}, 1), release: make(chan struct{})}
	h := NewHandler(tracker.New(tracker.Config{MaxPending: 1, RetryIn: 3 * time.Minute}, bs),
		Options{Secret: testSecret, Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	from := ap("192.0.2.1:4000")
	reply := h.Handle(context.Background(), from, connectPkt(1), nil)
	id := binary.BigEndian.Uint64(reply[8:])
	a := announce{id: id, tid: 2, ih: hash20("x"), pid: hash20("p"), left: 1, numWant: -1, port: 6881}
	first := make(chan struct{})
	go func() { defer close(first); h.Handle(context.Background(), from, a.bytes(), nil) }()
	<-bs.entered
	if got := errorText(t, h.Handle(context.Background(), from, a.bytes(), nil), 2); got != "tracker overloaded: retry in 3 minutes" {
		t.Errorf("error %q", got)
	}
	close(bs.release)
	<-first
	if n := strings.Count(logBuf.String(), "kind=overload"); n != 1 {
		t.Errorf("overload logged %d times: %q", n, logBuf.String())
	}
}
