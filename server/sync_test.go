package server

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"trackd/bencode"
	"trackd/config"
	"trackd/internal/redistest"
	"trackd/store"
	redisstore "trackd/store/redis"
)

// go-redis logs every failed dial on its own, thousands of lines while
// Redis is down; the Node reports the outage already.
func init() { redisstore.SetLibraryLogger(slog.New(slog.DiscardHandler), time.Second) }

// syncConfig is loopbackConfig with the in-memory store kept in step
// through the Redis at url.
func syncConfig(url string) config.Config {
	cfg := loopbackConfig()
	cfg.Sync = url
	cfg.RedisTimeout = 300 * time.Millisecond
	return cfg
}

// httpAnnounce announces peer (a port, which tells sessions apart on
// 127.0.0.1) of the torrent hash to srv and returns the reply's
// complete and incomplete counts and how many peers it returned.
func httpAnnounce(t *testing.T, srv *Server, hash string, port int, left int) (complete, incomplete int64, peers int) {
	t.Helper()
	u := fmt.Sprintf("http://%s/announce?info_hash=%s&peer_id=-TD0001-%012d&port=%d&left=%d&compact=1&numwant=50",
		srv.HTTPAddr(), hash, port, port, left)
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	v, err := bencode.Decode(body)
	d, ok := v.(map[string]any)
	if err != nil || !ok || d["failure reason"] != nil {
		t.Fatalf("announce to %s: %q", srv.HTTPAddr(), body)
	}
	p, _ := d["peers"].(string)
	c, _ := d["complete"].(int64)
	i, _ := d["incomplete"].(int64)
	return c, i, len(p) / 6
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSync: two servers whose memory stores are kept in step through one
// real redis-server share their swarms; the wrapped store keeps every
// ability of the in-memory one; an outage of Redis fails no announce,
// leaves /readyz ready and shows in trackd_sync_connected, and the
// changes made during it arrive once Redis is back.
func TestSync(t *testing.T) {
	rs := redistest.Start(t)
	testSync(t, rs.URL(), rs.Stop, rs.Restart)
}

// TestSyncCluster is TestSync on a Redis Cluster of three masters (16
// streams, spread over them), without the outage.
func TestSyncCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	testSync(t, c.URL(), nil, nil)
}

// testSync runs TestSync on the Redis at url, stopped and restarted by
// stop and restart (nil: no outage).
func testSync(t *testing.T, url string, stop, restart func()) {
	a, _ := start(t, syncConfig(url))
	b, _ := start(t, syncConfig(url))
	// Each reads the stream from where it was when it started: what is
	// announced before that reaches it with the peer's next announce.
	for _, srv := range []*Server{a, b} {
		select {
		case <-srv.sync.node.Ready():
		case <-time.After(10 * time.Second):
			t.Fatal("the sync's Node is not reading after 10s")
		}
	}

	for _, ability := range []struct {
		name string
		ok   bool
	}{
		{"InProcess", func() bool { _, ok := a.store.(store.InProcess); return ok }()},
		{"MemoryBounded", func() bool { _, ok := a.store.(store.MemoryBounded); return ok }()},
		{"ExpiryCounter", func() bool { _, ok := a.store.(store.ExpiryCounter); return ok }()},
		{"Snapshotter", func() bool { _, ok := a.store.(store.Snapshotter); return ok }()},
		{"Prober", func() bool { _, ok := a.store.(store.Prober); return ok }()},
	} {
		if !ability.ok {
			t.Errorf("with sync, the store is not %s", ability.name)
		}
	}

	const hash = "ssssssssssssssssssss"
	httpAnnounce(t, a, hash, 1001, 100) // a leecher on A
	waitFor(t, "B returns the peer announced on A", func() bool {
		_, incomplete, peers := httpAnnounce(t, b, hash, 2001, 0) // a seeder on B
		return incomplete == 1 && peers == 1
	})
	waitFor(t, "A counts B's seeder", func() bool {
		complete, incomplete, _ := httpAnnounce(t, a, hash, 1001, 100)
		return complete == 1 && incomplete == 1
	})
	_, metrics := adminGet(t, a, "/metrics")
	if v := metricValue(metrics, "trackd_sync_connected"); v != 1 {
		t.Errorf("trackd_sync_connected = %v with Redis up", v)
	}
	if v := metricValue(metrics, "trackd_sync_changes_applied_total"); v < 1 {
		t.Errorf("trackd_sync_changes_applied_total = %v", v)
	}

	if stop == nil {
		return
	}
	stop()
	// Announces go on, from memory, on both.
	for port := 1100; port < 1120; port++ {
		httpAnnounce(t, a, hash, port, 100)
	}
	waitFor(t, "A shows the outage", func() bool {
		_, m := adminGet(t, a, "/metrics")
		return metricValue(m, "trackd_sync_connected") == 0
	})
	if code, body := adminGet(t, a, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz during the Redis outage: %d %q", code, body)
	}
	restart()
	waitFor(t, "B has the 20 peers announced on A during the outage", func() bool {
		_, incomplete, _ := httpAnnounce(t, b, hash, 2001, 0)
		return incomplete == 21
	})
	_, metrics = adminGet(t, a, "/metrics")
	if v := metricValue(metrics, "trackd_sync_connected"); v != 1 {
		t.Errorf("trackd_sync_connected = %v after Redis returned", v)
	}
	if v := metricValue(metrics, "trackd_sync_changes_dropped_total"); v != 0 {
		t.Errorf("trackd_sync_changes_dropped_total = %v", v)
	}
	if !strings.Contains(metrics, "trackd_errors_total{kind=\"sync\"}") {
		t.Error("no trackd_errors_total{kind=\"sync\"} series")
	}
}
