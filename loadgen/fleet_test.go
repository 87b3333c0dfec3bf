package loadgen

import (
	"context"
	"strings"
	"testing"
	"time"
)

// fleetConfig is a short, light run over a fleet's instances.
func fleetConfig(proto, list string) Config {
	cfg := DefaultConfig()
	cfg.Torrents = 30
	cfg.Peers = 300
	cfg.Duration = 500 * time.Millisecond
	cfg.Warmup = 0
	cfg.Sockets, cfg.Conns = 6, 6
	cfg.Window = 4
	cfg.SourceAddrs = 3
	cfg.ScrapeShare = 0.02
	cfg.MaxTime = 20 * time.Second
	if proto == "udp" {
		cfg.UDP = list
	} else {
		cfg.HTTP = list
	}
	return cfg
}

// A load spread over three instances: every instance answers, every
// reply is checked, the per-instance counts add up; sticking, each peer
// announces to one instance only; roaming, each to all of them (over UDP
// with each instance's own connection id).
func TestFleetLoad(t *testing.T) {
	for _, tc := range []struct {
		proto string
		roam  bool
	}{
		{"udp", false}, {"udp", true}, {"http", false}, {"http", true},
	} {
		name := tc.proto + map[bool]string{false: "/sticky", true: "/roam"}[tc.roam]
		t.Run(name, func(t *testing.T) {
			f := startFakeFleet(t, 3, 0)
			cfg := fleetConfig(tc.proto, f.list(tc.proto))
			cfg.Roam = tc.roam
			cfg.Peers = 90 // 15 a worker: a roaming one goes round them 3 times in a few ms
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			r := res[0]
			if r.Responses == 0 || r.Errors != 0 || r.Timeouts != 0 {
				t.Fatalf("%d responses, %d errors, %d timeouts:\n%s", r.Responses, r.Errors, r.Timeouts, fmtResult(&r))
			}
			if len(r.TargetResponses) != 3 || r.Roam != tc.roam || strings.Count(r.Target, ",") != 2 {
				t.Fatalf("result: target %q, roam %v, per instance %v", r.Target, r.Roam, r.TargetResponses)
			}
			var sum uint64
			for i, n := range r.TargetResponses {
				if n == 0 {
					t.Errorf("instance %d answered nothing: %v", i, r.TargetResponses)
				}
				sum += n
			}
			if sum != r.Responses {
				t.Errorf("per-instance responses %v add up to %d, not %d", r.TargetResponses, sum, r.Responses)
			}
			if n := f.wrongIDs(); n != 0 {
				t.Errorf("%d UDP requests with another instance's connection id", n)
			}
			on := f.peersOn()
			if len(on) != cfg.Peers {
				t.Errorf("%d distinct peers announced, want %d", len(on), cfg.Peers)
			}
			hist := map[int]int{}
			for _, n := range on {
				hist[n]++
			}
			if !tc.roam && hist[1] != len(on) {
				t.Errorf("sticky: peers by the number of instances they announced to: %v", hist)
			}
			if tc.roam && hist[3] < len(on)*9/10 {
				t.Errorf("roaming: peers by the number of instances they announced to: %v", hist)
			}
			text := fmtResult(&r)
			if !strings.Contains(text, "instances:   3") {
				t.Errorf("report:\n%s", text)
			}
		})
	}
}

// The probe's join and leave times on a fake fleet that propagates changes
// after a known delay, or never. The load runs on the same two CPUs as
// the fake and the probe: the bounds on the times are loose.
func TestConverge(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proto string
		delay time.Duration
	}{
		{"udp/at-once", "udp", 0},
		{"udp/150ms", "udp", 150 * time.Millisecond},
		{"udp/never", "udp", -1},
		{"http/at-once", "http", 0},
		{"http/150ms", "http", 150 * time.Millisecond},
		{"http/never", "http", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFakeFleet(t, 2, tc.delay)
			cfg := fleetConfig(tc.proto, f.list(tc.proto))
			cfg.Sockets, cfg.Conns, cfg.Window = 2, 2, 1
			cfg.Duration = 2 * time.Second
			cfg.Converge = 3
			cfg.ConvergeWithin = time.Second
			if tc.delay < 0 {
				cfg.ConvergeWithin = 300 * time.Millisecond
			}
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			c := res[0].Converge
			if c == nil {
				t.Fatal("no convergence result")
			}
			if c.Probes < 2 || c.Errors != 0 || c.Instances != 2 || c.Polls == 0 {
				t.Fatalf("%+v", *c)
			}
			join, leave := time.Duration(c.JoinP50US*1e3), time.Duration(c.LeaveP50US*1e3)
			switch {
			case tc.delay < 0:
				if c.JoinNever != c.Probes || c.LeaveNever != 0 || c.JoinMaxUS != 0 || c.LeaveMaxUS != 0 {
					t.Errorf("never: %+v", *c)
				}
			case tc.delay == 0:
				if c.JoinNever != 0 || c.LeaveNever != 0 || join > 300*time.Millisecond || leave > 300*time.Millisecond {
					t.Errorf("at once: join %v, leave %v: %+v", join, leave, *c)
				}
			default:
				if c.JoinNever != 0 || c.LeaveNever != 0 || join < tc.delay || leave < tc.delay || join > tc.delay+500*time.Millisecond || leave > tc.delay+500*time.Millisecond {
					t.Errorf("delay %v: join %v, leave %v: %+v", tc.delay, join, leave, *c)
				}
			}
			if c.JoinP99US < c.JoinP50US || c.JoinMaxUS < c.JoinP99US {
				t.Errorf("join quantiles out of order: %+v", *c)
			}
			var b strings.Builder
			res[0].Format(&b)
			if !strings.Contains(b.String(), "probes over 2 instance(s)") || !strings.Contains(string(res[0].JSON()), `"converge":{"probes":`) {
				t.Errorf("report:\n%s\n%s", b.String(), res[0].JSON())
			}
		})
	}
}

// The probe is bounded: a run that ends stops it mid-probe, and the probe
// that did not finish is not counted.
func TestConvergeStopsWithTheRun(t *testing.T) {
	f := startFakeFleet(t, 2, -1)
	cfg := fleetConfig("udp", f.list("udp"))
	cfg.Duration = 300 * time.Millisecond
	cfg.Converge = 100
	cfg.ConvergeWithin = 5 * time.Second
	start := time.Now()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the run took %v", d)
	}
	if c := res[0].Converge; c == nil || c.Probes != 0 || c.JoinNever != 0 {
		t.Errorf("%+v", c)
	}
}

func TestFleetConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"too many", func(c *Config) { c.UDP = strings.Repeat("127.0.0.1:1,", MaxTargets) + "127.0.0.1:1" }, "at most 16"},
		{"port 0", func(c *Config) { c.UDP = "127.0.0.1:1,127.0.0.1:0" }, "port 0"},
		{"remote", func(c *Config) { c.HTTP = "127.0.0.1:1,192.0.2.1:1" }, "-allow-remote"},
		{"mixed families roaming", func(c *Config) { c.UDP, c.Roam = "127.0.0.1:1,[::1]:1", true }, "IPv4 or all IPv6"},
		{"ws list", func(c *Config) { c.UDP, c.WS = "", "127.0.0.1:1,127.0.0.1:2" }, "-ws takes one target"},
		{"fewer sockets than instances", func(c *Config) { c.UDP, c.Sockets = "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", 2 }, "a worker of its own"},
		{"converge with fill", func(c *Config) { c.Converge, c.Fill = 1, true }, "-converge"},
		{"converge too many", func(c *Config) { c.Converge = MaxConverge + 1 }, "-converge"},
		{"converge within", func(c *Config) { c.Converge, c.ConvergeWithin = 1, 0 }, "-converge-within"},
		{"converge poll", func(c *Config) { c.Converge, c.ConvergePoll = 1, 0 }, "-converge-poll"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fleetConfig("udp", "127.0.0.1:1")
			tc.mod(&cfg)
			_, err := Run(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
	// A mixed list is fine when each peer sticks to one instance.
	tgts, err := resolveTargets("udp", "127.0.0.1:1, [::1]:2", false, false)
	if err != nil || len(tgts) != 2 || tgts[0].bind || tgts[1].bind {
		t.Errorf("%+v %v: want two targets, neither binding a source address", tgts, err)
	}
}
