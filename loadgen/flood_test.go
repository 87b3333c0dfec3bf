package loadgen

import (
	"context"
	"strings"
	"testing"
	"time"

	udpfrontend "trackd/frontend/udp"
	"trackd/store"
	"trackd/store/memory"
	"trackd/tracker"
)

// TestFlood floods a real tracker (the in-memory store behind the UDP
// frontend) for a short while: every announce is taken until the store is
// put at its memory bound, then refused with the reason and the torrents
// taken evicted, while the well-behaved client's announces to its swarm
// keep working.
func TestFlood(t *testing.T) {
	st := memory.New(store.Options{PeerLifetime: time.Hour})
	defer st.Close()
	h := udpfrontend.NewHandler(tracker.New(tracker.Config{}, st), udpfrontend.Options{})
	srv, err := udpfrontend.Listen("127.0.0.1:0", h, udpfrontend.ServeOptions{Sockets: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		time.Sleep(700 * time.Millisecond)
		st.SetMemoryLimit(1)
	}()
	var progress strings.Builder
	cfg := FloodConfig{UDP: srv.Addr().String(), Rate: 2000, Duration: 1500 * time.Millisecond, Sockets: 2, Seed: 3,
		Probe: 100 * time.Millisecond, Timeout: 2 * time.Second, Progress: &progress}
	r, err := Flood(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	r.Format(&out)
	t.Log(out.String())
	refused := r.Refused[tracker.MsgNoNewTorrents]
	if r.Sent < 1000 || r.Taken < 500 || refused == 0 || r.Taken+refused > r.Sent {
		t.Errorf("sent %d, taken %d, refused %v: want about 3000 sent, some taken, then refused as %q", r.Sent, r.Taken, r.Refused, tracker.MsgNoNewTorrents)
	}
	// At a bound of one byte the sweeper evicts every torrent of one peer
	// it took, and keeps the well-behaved swarm of two.
	for deadline := time.Now().Add(5 * time.Second); st.MemoryUsage().Evicted < r.Taken && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if tot, _ := st.Totals(context.Background()); tot.Torrents != 1 || tot.Peers() != 2 || st.MemoryUsage().Evicted != r.Taken {
		t.Errorf("the store has %d torrents, %d peers, evicted %d; want the well-behaved swarm of 2 only, %d evicted",
			tot.Torrents, tot.Peers(), st.MemoryUsage().Evicted, r.Taken)
	}
	if r.Probes < 10 || r.ProbeFailures != 0 {
		t.Errorf("well-behaved client: %d announces, %d failed (%v)", r.Probes, r.ProbeFailures, r.ProbeErrors)
	}
	if !strings.Contains(progress.String(), "t=1s sent=") {
		t.Errorf("no progress line: %q", progress.String())
	}
	if !strings.Contains(out.String(), "tracker is full") || !strings.HasPrefix(string(r.JSON()), `{"target":`) {
		t.Errorf("report %s / %s", out.String(), r.JSON())
	}
}

func TestFloodConfigCheck(t *testing.T) {
	good := DefaultFloodConfig()
	good.UDP = "127.0.0.1:6969"
	for _, tc := range []struct {
		name string
		mod  func(*FloodConfig)
	}{
		{"no target", func(c *FloodConfig) { c.UDP = "" }},
		{"rate 0", func(c *FloodConfig) { c.Rate = 0 }},
		{"no duration", func(c *FloodConfig) { c.Duration = 0 }},
		{"too long", func(c *FloodConfig) { c.Duration = time.Hour }},
		{"no sockets", func(c *FloodConfig) { c.Sockets = 0 }},
		{"no timeout", func(c *FloodConfig) { c.Timeout = 0 }},
	} {
		c := good
		tc.mod(&c)
		if _, err := Flood(context.Background(), c); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	c := good
	c.UDP = "192.0.2.1:6969"
	if _, err := Flood(context.Background(), c); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("remote target: %v", err)
	}
}
