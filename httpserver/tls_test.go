package httpserver_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"trackd/httpserver"
	"trackd/httpserver/httpservertest"
	"trackd/internal/testcert"
)

// tlsServer starts an HTTPS Server for h whose certificate is served by
// GetCertificate from cur, which holds the certificate of serial 1; it
// returns the client configuration that trusts it and cur, to swap in
// another certificate.
func tlsServer(t *testing.T, h httpserver.Handler, opts httpserver.Options) (*httpserver.Server, *tls.Config, *atomic.Pointer[tls.Certificate]) {
	t.Helper()
	pool := x509.NewCertPool()
	cur := new(atomic.Pointer[tls.Certificate])
	cur.Store(newCert(t, pool, 1))
	opts.TLSConfig = &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cur.Load(), nil },
		NextProtos:     []string{"http/1.1"},
	}
	s := httpservertest.Start(t, httpserver.Listen, h, opts)
	return s, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, cur
}

// newCert makes a certificate for 127.0.0.1 with serial and adds it to
// pool.
func newCert(t *testing.T, pool *x509.CertPool, serial int64) *tls.Certificate {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool.AddCert(testcert.Write(t, certFile, keyFile, serial))
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// dialTLS makes a TLS connection to s with cfg, its handshake done.
func dialTLS(t *testing.T, s *httpserver.Server, cfg *tls.Config) *tls.Conn {
	t.Helper()
	c := tls.Client(httpservertest.Dial(t, s.Addr()), cfg)
	if err := c.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return c
}

// TestServerTLS: over TLS the Server answers requests as over plain TCP,
// keep-alive and pipelined ones and a last one with "Connection: close",
// after which it closes the connection with a close_notify alert; it
// agrees on no protocol but HTTP/1.1 by ALPN; and a certificate that
// GetCertificate starts handing out is the one new connections get.
func TestServerTLS(t *testing.T) {
	s, cfg, cur := tlsServer(t, httpserver.EchoHandler, httpserver.Options{})

	h2 := cfg.Clone()
	h2.NextProtos = []string{"h2", "http/1.1"}
	c := dialTLS(t, s, h2)
	if p := c.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Errorf("ALPN agreed on %q, want http/1.1", p)
	}
	br := bufio.NewReader(c)
	for i := range 2 {
		if err := announceOnce(t, c, br); err != nil {
			t.Fatalf("keep-alive request %d: %v", i, err)
		}
	}
	// Two pipelined requests, the second closing the connection.
	io.WriteString(c, httpservertest.Get(testAnnounce)+httpservertest.Get(testAnnounce, "Connection: close\r\n"))
	for i := range 2 {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("pipelined reply %d: %v", i, err)
		}
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "/announce") {
			t.Errorf("pipelined reply %d: %d %q", i, res.StatusCode, body)
		}
	}
	// io.EOF, not io.ErrUnexpectedEOF: the server sent close_notify.
	if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("after Connection: close: %d bytes, %v; want io.EOF", n, err)
	}

	pool := cfg.RootCAs
	cur.Store(newCert(t, pool, 2))
	c = dialTLS(t, s, cfg)
	if serial := c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); serial != 2 {
		t.Errorf("certificate serial %d after the swap, want 2", serial)
	}
	if err := announceOnce(t, c, bufio.NewReader(c)); err != nil {
		t.Fatal(err)
	}
}

// TestServerTLSHandshakeTimeout: the handshake counts as part of the first
// request's head: a client that connects and sends only part of a
// ClientHello is closed once ReadHeaderTimeout has passed, and one that
// sends nothing once the kernel hands it over (TCP_DEFER_ACCEPT: after
// about a second) and ReadHeaderTimeout has passed; another client is
// served meanwhile.
func TestServerTLSHandshakeTimeout(t *testing.T) {
	const rht = 300 * time.Millisecond
	s, cfg, _ := tlsServer(t, httpserver.EchoHandler, httpserver.Options{ReadHeaderTimeout: rht})
	for _, tt := range []struct {
		name string
		send []byte
	}{
		{"nothing", nil},
		{"part of a ClientHello", partialHello},
	} {
		t.Run(tt.name, func(t *testing.T) {
			raw := httpservertest.Dial(t, s.Addr())
			raw.Write(tt.send)
			c := dialTLS(t, s, cfg)
			if err := announceOnce(t, c, bufio.NewReader(c)); err != nil {
				t.Errorf("another client while one stalls: %v", err)
			}
			closed, after := closedWithin(raw, 5*time.Second)
			if !closed || after < rht/2 {
				t.Errorf("stalled handshake: closed %v after %v; want closed after about %v", closed, after, rht)
			}
		})
	}
}

// TestServerTLSPlainHTTP: a plain HTTP request to the HTTPS port (http://
// where https:// was meant) gets 400 and why, in plain HTTP, and the
// connection closes; anything else that is not TLS is closed without a
// reply; TLS clients are served meanwhile.
func TestServerTLSPlainHTTP(t *testing.T) {
	s, cfg, _ := tlsServer(t, httpserver.EchoHandler, httpserver.Options{})
	for _, tt := range []struct {
		name, send string
		reply      bool
	}{
		{"GET", httpservertest.Get(testAnnounce), true},
		{"HEAD", "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", true},
		{"garbage", "hello there, not TLS\r\n\r\n", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			raw := httpservertest.Dial(t, s.Addr())
			io.WriteString(raw, tt.send)
			raw.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(raw)
			if err != nil {
				t.Fatalf("reading: %v (got %q)", err, got)
			}
			if !tt.reply {
				if len(got) != 0 && got[0] != 0x15 { // nothing, or a TLS alert
					t.Errorf("reply %q to bytes that are not TLS", got)
				}
				return
			}
			res, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(got))), nil)
			if err != nil {
				t.Fatalf("%v in %q", err, got)
			}
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != http.StatusBadRequest || !res.Close || !strings.Contains(string(body), "HTTP request to an HTTPS server") {
				t.Errorf("%d (close %v) %q", res.StatusCode, res.Close, body)
			}
			c := dialTLS(t, s, cfg)
			if err := announceOnce(t, c, bufio.NewReader(c)); err != nil {
				t.Errorf("a TLS client after it: %v", err)
			}
		})
	}
}

// partialHello is the start of a TLS record holding a ClientHello: a
// handshake begun and never finished.
var partialHello = []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}

// TestServerTLSBounds: connections still in their handshake count under
// MaxConns, and one that has sent no request yet is closed to admit a new
// client; at MaxConnsPerIP an address's keep-alive TLS connection makes
// room for its new one.
func TestServerTLSBounds(t *testing.T) {
	t.Run("MaxConns", func(t *testing.T) {
		s, cfg, _ := tlsServer(t, httpserver.EchoHandler, httpserver.Options{MaxConns: 2})
		stalled := []net.Conn{httpservertest.Dial(t, s.Addr()), httpservertest.Dial(t, s.Addr())}
		for _, raw := range stalled {
			raw.Write(partialHello) // accepted (TCP_DEFER_ACCEPT waits for data)
		}
		waitOpen(t, s, 2)
		c := dialTLS(t, s, cfg)
		if err := announceOnce(t, c, bufio.NewReader(c)); err != nil {
			t.Fatalf("new client at MaxConns: %v", err)
		}
		evicted := 0
		for _, raw := range stalled {
			if closed, _ := closedWithin(raw, 200*time.Millisecond); closed {
				evicted++
			}
		}
		if evicted != 1 {
			t.Errorf("%d stalled connections closed, want 1", evicted)
		}
	})
	t.Run("MaxConnsPerIP", func(t *testing.T) {
		s, cfg, _ := tlsServer(t, httpserver.EchoHandler, httpserver.Options{MaxConnsPerIP: 1})
		first := dialTLS(t, s, cfg)
		if err := announceOnce(t, first, bufio.NewReader(first)); err != nil {
			t.Fatal(err)
		}
		// The first counts as idle once its goroutine waits for the next
		// request, a moment after the reply; until then the address's new
		// connection is refused (closed at once), so try again briefly.
		var second *tls.Conn
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			second = tls.Client(httpservertest.Dial(t, s.Addr()), cfg)
			if err := second.Handshake(); err == nil {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("second connection of the address: %v", err)
			}
		}
		if err := announceOnce(t, second, bufio.NewReader(second)); err != nil {
			t.Fatalf("second connection of the address: %v", err)
		}
		first.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := first.Read(make([]byte, 1)); err == nil {
			t.Error("the address's idle connection still open")
		}
	})
}

// waitOpen waits (up to 5 s) until s counts n open connections.
func waitOpen(t *testing.T, s *httpserver.Server, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); s.OpenConns() != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d open connections, want %d", s.OpenConns(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestServerTLSTakeover: a connection over TLS is taken over after its
// 101 reply; the taker reads and writes through TLS, starting with the
// bytes sent right after the request head.
func TestServerTLSTakeover(t *testing.T) {
	taken := make(chan net.Conn, 1)
	s, cfg, _ := tlsServer(t, upgradeHandler(taken), httpserver.Options{})
	c := dialTLS(t, s, cfg)
	io.WriteString(c, httpservertest.Get("/", "Connection: Upgrade\r\nUpgrade: echo\r\n")+"early")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v, %v", res, err)
	}
	if tc := <-taken; tc == nil {
		t.Fatal("no connection taken")
	}
	readEcho(t, c, br, "early")
	echoed(t, c, br, "after the upgrade")
	waitOpen(t, s, 0) // no longer counted: the taker holds it
}
