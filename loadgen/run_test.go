package loadgen

import (
	"context"
	"errors"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"trackd/internal/race"
)

// startCanned starts a canned server on loopback ports picked by the
// kernel.
func startCanned(t *testing.T) *Canned {
	t.Helper()
	c, err := StartCanned("127.0.0.1:0", "127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func smallConfig() Config {
	cfg := DefaultConfig()
	cfg.Torrents = 1000
	cfg.Peers = 10_000
	cfg.Duration = time.Second
	cfg.Warmup = 0
	cfg.Sockets = 4
	cfg.Conns = 4
	cfg.Window = 16
	cfg.SourceAddrs = 4
	cfg.ScrapeShare = 0.05
	cfg.MaxTime = 20 * time.Second
	return cfg
}

func checkClean(t *testing.T, r *Result) {
	t.Helper()
	if r.Responses == 0 || r.Announces == 0 {
		t.Errorf("%s: no responses: %+v", r.Protocol, r)
	}
	if r.Errors != 0 || r.Timeouts != 0 || r.Late != 0 {
		t.Errorf("%s: %d errors, %d timeouts, %d late: %v", r.Protocol, r.Errors, r.Timeouts, r.Late, r.ErrorMessages)
	}
	if r.MeanPeers != 30 {
		t.Errorf("%s: %.2f peers per announce, want the canned 30", r.Protocol, r.MeanPeers)
	}
	if r.LatencyP50US <= 0 || r.LatencyP99US < r.LatencyP50US || r.LatencyMaxUS < r.LatencyP99US {
		t.Errorf("%s: latency p50 %v p99 %v max %v", r.Protocol, r.LatencyP50US, r.LatencyP99US, r.LatencyMaxUS)
	}
	var b strings.Builder
	r.Format(&b)
	if !strings.Contains(b.String(), "responses:") || !strings.HasPrefix(string(r.JSON()), `{"protocol":"`+r.Protocol) {
		t.Errorf("report:\n%s\n%s", b.String(), r.JSON())
	}
}

// A one-second run against the canned server, UDP and HTTP at once.
func TestRunAgainstCanned(t *testing.T) {
	c := startCanned(t)
	cfg := smallConfig()
	cfg.UDP = c.UDPAddr().String()
	cfg.HTTP = "http://" + c.HTTPAddr().String() + "/announce"
	start := time.Now()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a 1 s run took %v", d)
	}
	if len(res) != 2 || res[0].Protocol != "udp" || res[1].Protocol != "http" {
		t.Fatalf("results: %+v", res)
	}
	for i := range res {
		checkClean(t, &res[i])
		if res[i].Scrapes == 0 {
			t.Errorf("%s: no scrapes at a 5%% share", res[i].Protocol)
		}
		if res[i].SourceAddrs != 4 {
			t.Errorf("%s: %d source addresses", res[i].Protocol, res[i].SourceAddrs)
		}
	}
	if res[0].Connects != 4 {
		t.Errorf("udp: %d connects, want one per socket", res[0].Connects)
	}
}

func TestRunHTTPClose(t *testing.T) {
	c := startCanned(t)
	cfg := smallConfig()
	cfg.HTTP = c.HTTPAddr().String()
	cfg.HTTPClose = true
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, &res[0])
	if res[0].Connects < res[0].Responses {
		t.Errorf("%d connections for %d responses: not one per request", res[0].Connects, res[0].Responses)
	}
}

func TestRunWarmupNotCounted(t *testing.T) {
	c := startCanned(t)
	cfg := smallConfig()
	cfg.UDP = c.UDPAddr().String()
	cfg.Duration = 300 * time.Millisecond
	cfg.Warmup = 300 * time.Millisecond
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	checkClean(t, &r)
	if r.Connects != 0 {
		t.Errorf("the connects of the warm-up were counted: %d", r.Connects)
	}
	if r.Seconds < 0.29 || r.Seconds > 0.31 {
		t.Errorf("measured %.3f s, want 0.3", r.Seconds)
	}
}

func TestFill(t *testing.T) {
	c := startCanned(t)
	for _, proto := range []string{"udp", "http"} {
		cfg := smallConfig()
		cfg.Fill = true
		cfg.Peers = 3000
		if proto == "udp" {
			cfg.UDP = c.UDPAddr().String()
		} else {
			cfg.HTTP = c.HTTPAddr().String()
		}
		res, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		r := res[0]
		if r.Mode != "fill" || r.Announces != 3000 || r.Errors != 0 || r.Timeouts != 0 || r.Scrapes != 0 {
			t.Errorf("%s fill: %+v", proto, r)
		}
		if !strings.Contains(fmtResult(&r), "3000 of 3000 peers announced") {
			t.Errorf("%s fill report:\n%s", proto, fmtResult(&r))
		}
	}
}

func fmtResult(r *Result) string {
	var b strings.Builder
	r.Format(&b)
	return b.String()
}

// A tracker that never answers: timeouts (HTTP) and a UDP socket that
// gives up after three unanswered connects, all within the time bounds.
func TestRunSilentTracker(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // read nothing, answer nothing
		}
	}()
	cfg := smallConfig()
	cfg.UDP = pc.LocalAddr().String()
	cfg.HTTP = ln.Addr().String()
	cfg.Timeout = 200 * time.Millisecond
	cfg.Sockets, cfg.Conns = 2, 2
	start := time.Now()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("run took %v", d)
	}
	udp, http := res[0], res[1]
	if udp.Responses != 0 || udp.Timeouts == 0 || udp.ErrorMessages["no reply to 3 connect requests: giving up on this socket"] != 2 {
		t.Errorf("udp: %+v", udp)
	}
	if http.Responses != 0 || http.Timeouts == 0 {
		t.Errorf("http: %+v", http)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	c := startCanned(t)
	cfg := smallConfig()
	cfg.UDP = c.UDPAddr().String()
	cfg.HTTP = c.HTTPAddr().String()
	cfg.Duration = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("cancelled run took %v", d)
	}
	for _, r := range res {
		if r.Responses == 0 || r.Seconds > 1 {
			t.Errorf("%s: %d responses in %.2f s", r.Protocol, r.Responses, r.Seconds)
		}
	}
}

func TestRefuseRemote(t *testing.T) {
	for _, tgt := range []struct{ udp, http string }{
		{udp: "192.0.2.1:6969"},
		{http: "http://198.51.100.7:80/announce"},
		{udp: "tracker.example.org:6969"},
		{http: "10.0.0.1:6969"},
	} {
		cfg := smallConfig()
		cfg.UDP, cfg.HTTP = tgt.udp, tgt.http
		_, err := Run(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), "-allow-remote") {
			t.Errorf("%+v: err = %v, want a refusal naming -allow-remote", tgt, err)
		}
		if strings.Contains(tgt.udp+tgt.http, ".0.") && !errors.Is(err, ErrNotLoopback) {
			t.Errorf("%+v: err = %v, want ErrNotLoopback", tgt, err)
		}
	}
	if _, err := StartCanned("192.0.2.1:7000", "", false); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("canned on a public address: %v", err)
	}
}

func TestResolveTarget(t *testing.T) {
	for _, tc := range []struct {
		proto, in         string
		addr, path, spath string
		bind              bool
		wantErr           bool
	}{
		{proto: "udp", in: "127.0.0.1:6969", addr: "127.0.0.1:6969", path: "/announce", spath: "/scrape", bind: true},
		{proto: "udp", in: "udp://localhost:6969/announce", addr: "127.0.0.1:6969", path: "/announce", spath: "/scrape", bind: true},
		{proto: "udp", in: "[::1]:6969", addr: "[::1]:6969", path: "/announce", spath: "/scrape"},
		{proto: "http", in: "http://127.0.0.5:80/x/announce.php", addr: "127.0.0.5:80", path: "/x/announce.php", spath: "/x/scrape.php", bind: true},
		{proto: "http", in: "http://127.0.0.1:80/tracker", wantErr: true},
		{proto: "http", in: "udp://127.0.0.1:80/announce", wantErr: true},
		{proto: "udp", in: "127.0.0.1", wantErr: true},
		{proto: "udp", in: "127.0.0.1:99999", wantErr: true},
	} {
		got, err := resolveTarget(tc.proto, tc.in, false)
		if tc.wantErr {
			if err == nil {
				t.Errorf("%s: no error", tc.in)
			}
			continue
		}
		if err != nil || got.addr.String() != tc.addr || got.path != tc.path || got.spath != tc.spath || got.bind != tc.bind {
			t.Errorf("%s: %+v %v", tc.in, got, err)
		}
	}
}

func TestConfigCheck(t *testing.T) {
	for _, mod := range []func(*Config){
		func(c *Config) { c.UDP, c.HTTP = "", "" },
		func(c *Config) { c.Fill, c.HTTP = true, "127.0.0.1:1" },
		func(c *Config) { c.Window = 0 },
		func(c *Config) { c.Window = 5000 },
		func(c *Config) { c.Seeders = 1.5 },
		func(c *Config) { c.ScrapeMaxHashes = 0 },
		func(c *Config) { c.ScrapeMaxHashes = 75 },
		func(c *Config) { c.Duration = 0 },
		func(c *Config) { c.ConnIDRenew = 2 * time.Minute },
		func(c *Config) { c.Peers = 0 },
		func(c *Config) { c.Zipf = -1 },
		func(c *Config) { c.Zipf = MaxZipf + 1 },
		func(c *Config) { c.Zipf = math.NaN() },
		func(c *Config) { c.Stopped = 1.5 },
		func(c *Config) { c.Completed = -0.1 },
		func(c *Config) { c.Completed = math.NaN() },
		func(c *Config) { c.Stopped, c.Completed = 0.6, 0.6 },
	} {
		cfg := smallConfig()
		cfg.UDP = "127.0.0.1:1"
		mod(&cfg)
		if err := cfg.check(); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}

func TestConfigCheckAcceptsWorkloadKnobs(t *testing.T) {
	cfg := smallConfig()
	cfg.UDP = "127.0.0.1:1"
	cfg.Zipf, cfg.Stopped, cfg.Completed, cfg.ScrapeShare, cfg.NumWant = 1.2, 0.02, 0.05, 0.2, 200
	if err := cfg.check(); err != nil {
		t.Fatal(err)
	}
}

// In the steady state a UDP socket's send–receive cycle allocates nothing,
// connected to one tracker or roaming over two.
func TestUDPSteadyStateDoesNotAllocate(t *testing.T) {
	for _, roam := range []bool{false, true} {
		cfg := smallConfig()
		cfg.UDP = startCanned(t).UDPAddr().String()
		if roam {
			cfg.UDP += "," + startCanned(t).UDPAddr().String()
			cfg.Roam = true
		}
		cfg.Duration = time.Hour
		tgts, err := resolveTargets("udp", cfg.UDP, false, cfg.Roam)
		if err != nil {
			t.Fatal(err)
		}
		wl, _ := NewWorkload(cfg.Torrents, cfg.Peers, 1, 1, 0.75)
		r := &runner{cfg: &cfg, wl: wl, tgt: tgts[0], tgts: tgts}
		r.end = nanotime() + int64(time.Hour)
		w, err := newUDPWorker(r, 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer w.close()
		for range 200 { // connect, fill the window, warm the pools
			w.step()
		}
		if w.meas.Announces == 0 || roam && (w.meas.PerTarget[0] == 0 || w.meas.PerTarget[1] == 0) {
			t.Fatalf("roam %v: no announces: %+v", roam, w.meas)
		}
		allocs := testing.AllocsPerRun(500, func() { w.step() })
		if allocs != 0 && !race.Enabled {
			t.Errorf("roam %v: a step allocates %v times", roam, allocs)
		}
		if w.meas.Errors != 0 || w.meas.Timeouts != 0 {
			t.Errorf("roam %v: errors: %+v", roam, w.meas)
		}
	}
}
