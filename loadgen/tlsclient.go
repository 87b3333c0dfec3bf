package loadgen

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"
)

// HTTPS: an https:// HTTP target is spoken over TLS. The certificate is
// not verified (the generator measures the server's cost, on loopback, of
// a server it was pointed at); the server still proves it holds the key
// (the handshake's signature is checked). Each connection (worker, and
// instance of a fleet) has its own session cache of one entry, so with
// TLSResume a worker resumes its previous connection's session as one
// client would, and without it every handshake is a full one.

// tlsCurves maps the names -tls-curves takes to key exchanges.
var tlsCurves = map[string]tls.CurveID{
	"x25519":         tls.X25519,
	"p256":           tls.CurveP256,
	"p384":           tls.CurveP384,
	"x25519mlkem768": tls.X25519MLKEM768,
}

// parseTLSCurves parses a comma-separated list of tlsCurves names.
func parseTLSCurves(s string) ([]tls.CurveID, error) {
	if s == "" {
		return nil, nil
	}
	var ids []tls.CurveID
	for _, n := range strings.Split(s, ",") {
		id, ok := tlsCurves[strings.ToLower(strings.TrimSpace(n))]
		if !ok {
			return nil, fmt.Errorf("-tls-curves: unknown %q (x25519, p256, p384, x25519mlkem768)", n)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// parseTLSVersion parses "", "1.2" or "1.3" into a tls.Config.MaxVersion.
func parseTLSVersion(s string) (uint16, error) {
	switch s {
	case "":
		return 0, nil
	case "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("-tls-version %q: give 1.2 or 1.3", s)
}

// checkTLS validates the TLS settings.
func (c *Config) checkTLS() error {
	if _, err := parseTLSCurves(c.TLSCurves); err != nil {
		return err
	}
	_, err := parseTLSVersion(c.TLSVersion)
	return err
}

// newClientTLS returns the tls.Config of one connection to t, or nil when
// t is plain HTTP. Config.check has validated the settings.
func newClientTLS(cfg *Config, t target) *tls.Config {
	if !t.tls {
		return nil
	}
	curves, _ := parseTLSCurves(cfg.TLSCurves)
	maxv, _ := parseTLSVersion(cfg.TLSVersion)
	c := &tls.Config{
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS12,
		MaxVersion:         maxv,
		CurvePreferences:   curves,
		NextProtos:         []string{"http/1.1"},
	}
	if cfg.TLSResume {
		c.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	}
	return c
}

// handshake runs the TLS handshake over conn, bounded by timeout.
func handshake(conn net.Conn, c *tls.Config, timeout time.Duration) (*tls.Conn, error) {
	tc := tls.Client(conn, c)
	conn.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return tc, nil
}

// tlsDesc describes the TLS settings of an HTTPS run, "" for others.
func (r *runner) tlsDesc() string {
	if r.tgt.proto != "http" || !r.tgt.tls {
		return ""
	}
	mode := "keep-alive"
	switch {
	case r.cfg.HTTPClose && r.cfg.TLSResume:
		mode = "new connection per request, sessions resumed"
	case r.cfg.HTTPClose:
		mode = "new connection per request, full handshakes"
	case r.cfg.TLSResume:
		mode = "keep-alive, sessions resumed"
	}
	curves := r.cfg.TLSCurves
	if curves == "" {
		curves = "Go default"
	}
	v := r.cfg.TLSVersion
	if v == "" {
		v = "1.3"
	}
	return fmt.Sprintf("%s; TLS up to %s; key exchanges offered: %s", mode, v, curves)
}
