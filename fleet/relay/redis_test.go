package relay

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"trackd/bittorrent"
	"trackd/fleet/redisbus"
	"trackd/internal/redistest"
	"trackd/signaling"
)

func TestMain(m *testing.M) {
	// go-redis logs every failed dial on stderr; TestRedisRestart fails
	// dials on purpose.
	goredis.SetLogger(quietLogger{})
	os.Exit(m.Run())
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// redisFleet starts n Registries, each with a Bus of its own over the
// Redis at url (as n processes would), and waits until each knows the
// others.
func redisFleet(t *testing.T, url string, n int, opts Options) []*node {
	t.Helper()
	nodes := make([]*node, n)
	for i := range nodes {
		b, err := redisbus.Open(context.Background(), url, redisbus.Options{Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		nodes[i] = startNode(t, b, i, opts, nil)
	}
	eventually(t, "instances know each other", func() bool {
		for _, nd := range nodes {
			if nd.Stats().Instances != n-1 {
				return false
			}
		}
		return true
	})
	return nodes
}

// TestRedis: offers and answers across three instances over a real
// redis-server, single and a three-master cluster; a leave reaches every
// instance.
func TestRedis(t *testing.T) {
	for _, tt := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"server", func(t *testing.T) string { return redistest.Start(t).URL() }},
		{"cluster", func(t *testing.T) string { return redistest.StartCluster(t, 3).URL() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions()
			opts.FlushInterval, opts.Heartbeat = DefaultFlushInterval, 100*time.Millisecond
			nodes := redisFleet(t, tt.url(t), 3, opts)
			ih := bittorrent.InfoHash{0x21}
			conns := make([]*conn, len(nodes))
			for i, nd := range nodes {
				conns[i] = &conn{}
				announce(t, nd.Registry, ih, pid(i), conns[i], bittorrent.EventStarted, false, 0)
			}
			eventually(t, "every peer everywhere", func() bool {
				for _, nd := range nodes {
					if peers(nd.Registry, ih) != len(nodes) {
						return false
					}
				}
				return true
			})
			to := announce(t, nodes[0].Registry, ih, pid(0), conns[0], bittorrent.EventNone, false, 5)
			if len(to) != 2 {
				t.Fatalf("picked %d, want 2", len(to))
			}
			for i, s := range to {
				s.Send(fmt.Appendf(nil, "offer %d", i))
			}
			for i := 1; i < len(nodes); i++ {
				eventually(t, "offer delivered", func() bool { return len(conns[i].messages()) == 1 })
				back, err := nodes[i].Route(ih, pid(i), conns[i], pid(0))
				if err != nil {
					t.Fatal(err)
				}
				back.Send([]byte("answer to " + conns[i].messages()[0]))
			}
			eventually(t, "answers delivered", func() bool { return len(conns[0].messages()) == 2 })
			got := conns[0].messages()
			slices.Sort(got)
			if got[0] != "answer to offer 0" || got[1] != "answer to offer 1" {
				t.Errorf("answers %q", got)
			}
			nodes[1].Leave(ih, pid(1), conns[1])
			eventually(t, "leave everywhere", func() bool {
				return peers(nodes[0].Registry, ih) == 2 && peers(nodes[2].Registry, ih) == 2
			})
		})
	}
}

// TestRedisRestart: redis-server killed for longer than Timeout while
// peers join and leave, and started again: the instances converge, from
// the changes kept and the dumps, without the peers announcing again.
func TestRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	opts := testOptions()
	opts.FlushInterval, opts.Heartbeat, opts.Timeout = DefaultFlushInterval, 100*time.Millisecond, time.Second
	nodes := redisFleet(t, srv.URL(), 2, opts)
	a, b := nodes[0], nodes[1]
	ih := bittorrent.InfoHash{0x22}
	ca, cb := &conn{}, &conn{}
	announce(t, a.Registry, ih, pid(1), ca, bittorrent.EventStarted, false, 0)
	announce(t, b.Registry, ih, pid(2), cb, bittorrent.EventStarted, false, 0)
	eventually(t, "both peers on both", func() bool { return peers(a.Registry, ih) == 2 && peers(b.Registry, ih) == 2 })

	srv.Stop()
	announce(t, a.Registry, ih, pid(3), &conn{}, bittorrent.EventStarted, true, 0)
	b.Leave(ih, pid(2), cb)
	eventually(t, "instances dropped each other", func() bool {
		return a.Stats().InstancesGone > 0 && b.Stats().InstancesGone > 0
	})
	srv.Restart()
	start := time.Now()
	eventually(t, "converged", func() bool {
		for _, nd := range nodes {
			st := nd.Scrape([]bittorrent.InfoHash{ih}, nil)[0]
			if st.Leechers != 1 || st.Seeders != 1 {
				return false
			}
		}
		return true
	})
	t.Logf("converged %v after redis-server answered again", time.Since(start).Round(time.Millisecond))
	to := announce(t, b.Registry, ih, pid(4), cb, bittorrent.EventStarted, false, 5)
	if len(to) != 2 {
		t.Fatalf("picked %d after the restart, want 2", len(to))
	}
	for _, s := range to {
		s.Send([]byte("offer"))
	}
	eventually(t, "offer delivered after the restart", func() bool { return len(ca.messages()) == 1 })
}

// BenchmarkRedisLatency measures, over a loopback redis-server, with the
// default FlushInterval, how long a new peer announced to one instance
// takes to be known by another (join_p50/p99_ms), and an offer Sent to
// a peer of another instance to reach its connection there
// (offer_p50/p99_ms). Each op is one of each, one at a time (no load).
func BenchmarkRedisLatency(b *testing.B) {
	srv := redistest.Start(b)
	opts := Options{Heartbeat: 100 * time.Millisecond, Timeout: time.Hour, Logger: testOptions().Logger}
	var nodes [2]*Registry
	for i := range nodes {
		bus, err := redisbus.Open(context.Background(), srv.URL(), redisbus.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer bus.Close()
		opts.Self = instanceID(i)
		nodes[i] = New(bus, opts)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { nodes[i].Run(ctx); close(done) }()
		defer func() { cancel(); <-done }()
	}
	for nodes[0].Stats().Instances != 1 || nodes[1].Stats().Instances != 1 {
		time.Sleep(time.Millisecond)
	}
	ih := bittorrent.InfoHash{0x23}
	recv := &conn{}
	announce := func(r *Registry, id bittorrent.PeerID, via *conn) {
		if _, _, err := r.Announce(&signaling.Announce{InfoHash: ih, PeerID: id, Via: via}, nil); err != nil {
			b.Fatal(err)
		}
	}
	announce(nodes[1], pid(0), recv)
	for {
		if _, ok := nodes[0].mem.Lookup(ih, pid(0)); ok {
			break
		}
		time.Sleep(time.Millisecond)
	}
	target, _ := nodes[0].mem.Lookup(ih, pid(0))
	join := make([]time.Duration, 0, b.N)
	offer := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		announce(nodes[0], pid(1+i), &conn{})
		for {
			if _, ok := nodes[1].mem.Lookup(ih, pid(1+i)); ok {
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
		join = append(join, time.Since(start))

		start = time.Now()
		target.Send([]byte("offer"))
		for len(recv.messages()) <= i {
			time.Sleep(100 * time.Microsecond)
		}
		offer = append(offer, time.Since(start))
	}
	b.StopTimer()
	pct := func(d []time.Duration, p float64) float64 {
		slices.Sort(d)
		return float64(d[min(int(float64(len(d))*p), len(d)-1)]) / 1e6
	}
	b.ReportMetric(pct(join, 0.5), "join_p50_ms")
	b.ReportMetric(pct(join, 0.99), "join_p99_ms")
	b.ReportMetric(pct(offer, 0.5), "offer_p50_ms")
	b.ReportMetric(pct(offer, 0.99), "offer_p99_ms")
}
