package loadgen

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"trackd/config"
	"trackd/internal/testcert"
	"trackd/server"
)

// HTTPS against an in-process trackd: every mode answers without error,
// and a session is resumed exactly when -tls-resume asks for it.
func TestHTTPSTrackd(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	testcert.Write(t, certFile, keyFile, 1)
	cfg := config.Default()
	cfg.HTTP, cfg.UDP, cfg.Admin = "", "", ""
	cfg.HTTPS, cfg.TLSCert, cfg.TLSKey = "127.0.0.1:0", certFile, keyFile
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
	url := "https://" + srv.HTTPSAddr().String() + "/announce"
	for _, tc := range []struct {
		name            string
		close, resume   bool
		curves, version string
		wantResumed     bool
	}{
		{name: "keep-alive"},
		{name: "close", close: true},
		{name: "close/resume", close: true, resume: true, wantResumed: true},
		{name: "close/resume/tls1.2", close: true, resume: true, version: "1.2", wantResumed: true},
		{name: "close/p256", close: true, curves: "p256"},
		{name: "close/x25519mlkem768", close: true, curves: "x25519mlkem768"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.HTTP = url
			c.Torrents, c.Peers = 50, 500
			c.Conns, c.Window = 2, 4
			c.HTTPClose, c.TLSResume = tc.close, tc.resume
			c.TLSCurves, c.TLSVersion = tc.curves, tc.version
			c.Warmup, c.Duration, c.Timeout = 100*time.Millisecond, 400*time.Millisecond, 5*time.Second
			res, err := Run(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			r := res[0]
			if r.Responses == 0 || r.Errors != 0 || r.Timeouts != 0 || r.TLS == "" {
				t.Fatalf("%d responses, %d errors, %d timeouts:\n%s", r.Responses, r.Errors, r.Timeouts, fmtResult(&r))
			}
			if tc.close && r.Connects < r.Responses/2 {
				t.Errorf("%d connections for %d responses: not a connection per request", r.Connects, r.Responses)
			}
			if got := r.Resumed > 0; got != tc.wantResumed || (tc.wantResumed && r.Resumed < r.Connects/2) {
				t.Errorf("%d of %d handshakes resumed, want resumption %v", r.Resumed, r.Connects, tc.wantResumed)
			}
		})
	}
}

func TestTLSConfigErrors(t *testing.T) {
	for _, tc := range []struct{ curves, version string }{
		{curves: "x25519,nope"},
		{version: "1.1"},
		{version: "3"},
	} {
		c := DefaultConfig()
		c.HTTP = "https://127.0.0.1:1/announce"
		c.TLSCurves, c.TLSVersion = tc.curves, tc.version
		if err := c.check(); err == nil {
			t.Errorf("curves %q version %q: no error", tc.curves, tc.version)
		}
	}
	c := DefaultConfig()
	c.HTTP = "https://127.0.0.1:1/announce"
	c.TLSCurves, c.TLSVersion = "X25519, p256", "1.2"
	if err := c.check(); err != nil {
		t.Error(err)
	}
}
