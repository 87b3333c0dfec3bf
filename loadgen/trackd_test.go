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
