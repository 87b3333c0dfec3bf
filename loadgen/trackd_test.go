package loadgen

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"trackd/config"
	"trackd/server"
)

// startTrackd starts an in-process trackd on the in-memory store, UDP and
// HTTP on ephemeral loopback ports.
func startTrackd(t *testing.T) *server.Server {
	t.Helper()
	cfg := config.Default()
	cfg.HTTP, cfg.UDP, cfg.Admin = "127.0.0.1:0", "127.0.0.1:0", ""
	cfg.UDPSockets = 2
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv
}

// The probe against trackd itself, under load: one trackd listed twice
// (A and B the same swarms: a peer is there at once), and two trackds
// that share nothing (a peer never joins the other), over UDP and HTTP.
// Every reply of trackd passes the probe's checks (whole swarms, the
// poller left out of its own reply).
func TestConvergeTrackd(t *testing.T) {
	a, b := startTrackd(t), startTrackd(t)
	list := func(proto string, srvs ...*server.Server) string {
		s := ""
		for i, srv := range srvs {
			if i > 0 {
				s += ","
			}
			if proto == "udp" {
				s += srv.UDPAddr().String()
			} else {
				s += "http://" + srv.HTTPAddr().String() + "/announce"
			}
		}
		return s
	}
	for _, tc := range []struct {
		name   string
		proto  string
		shared bool
	}{
		{"udp/one-trackd-twice", "udp", true},
		{"udp/two-trackds", "udp", false},
		{"http/one-trackd-twice", "http", true},
		{"http/two-trackds", "http", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := list(tc.proto, a, b)
			if tc.shared {
				l = list(tc.proto, a, a)
			}
			cfg := fleetConfig(tc.proto, l)
			cfg.Sockets, cfg.Conns, cfg.Window = 2, 2, 4
			cfg.Warmup = 200 * time.Millisecond
			cfg.Duration = 1500 * time.Millisecond
			cfg.Converge = 4
			cfg.ConvergeWithin = 200 * time.Millisecond
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			r := res[0]
			if r.Responses == 0 || r.Errors != 0 || r.Timeouts != 0 {
				t.Fatalf("load: %d responses, %d errors, %d timeouts:\n%s", r.Responses, r.Errors, r.Timeouts, fmtResult(&r))
			}
			c := r.Converge
			if c == nil || c.Probes < 2 || c.Errors != 0 {
				t.Fatalf("%s", fmtResult(&r))
			}
			if tc.shared && (c.JoinNever != 0 || c.LeaveNever != 0 || c.JoinMaxUS == 0 || c.LeaveMaxUS == 0) {
				t.Errorf("one trackd: every peer should join and leave at once:\n%s", fmtResult(&r))
			}
			if !tc.shared && (c.JoinNever != c.Probes || c.JoinMaxUS != 0) {
				t.Errorf("two trackds: no peer should join the other:\n%s", fmtResult(&r))
			}
		})
	}
}

// The sweep's workload knobs against trackd, over UDP and HTTP (keep-alive
// and a new connection per request): Zipf popularity, 20 % scrapes of 1..10
// hashes, numwant 200, stopped and completed events. Every reply passes the
// generator's checks, and the shares of scrapes come out as asked.
func TestWorkloadKnobsAgainstTrackd(t *testing.T) {
	srv := startTrackd(t)
	for _, tc := range []struct {
		name  string
		http  bool
		close bool
	}{{"udp", false, false}, {"http", true, false}, {"http-close", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Torrents, cfg.Peers, cfg.Zipf = 1000, 20_000, 1.2
			cfg.ScrapeShare, cfg.ScrapeMaxHashes, cfg.NumWant = 0.2, 10, 200
			cfg.Stopped, cfg.Completed, cfg.Seeders = 0.05, 0.05, 0.5
			cfg.Sockets, cfg.Conns, cfg.Window, cfg.SourceAddrs = 2, 2, 8, 2
			cfg.Warmup, cfg.Duration, cfg.MaxTime = 200*time.Millisecond, time.Second, 20*time.Second
			if tc.http {
				cfg.HTTP, cfg.HTTPClose = srv.HTTPAddr().String(), tc.close
			} else {
				cfg.UDP = srv.UDPAddr().String()
			}
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			r := res[0]
			if r.Responses < 100 || r.Errors != 0 || r.Timeouts != 0 {
				t.Fatalf("%d responses, %d errors, %d timeouts:\n%s", r.Responses, r.Errors, r.Timeouts, fmtResult(&r))
			}
			if share := float64(r.Scrapes) / float64(r.Responses); share < 0.1 || share > 0.3 {
				t.Errorf("scrapes are %.3f of the responses, want about 0.2:\n%s", share, fmtResult(&r))
			}
			if r.MeanPeers <= 30 {
				t.Errorf("%.1f peers per announce with numwant 200 and swarms of hundreds:\n%s", r.MeanPeers, fmtResult(&r))
			}
		})
	}
}
