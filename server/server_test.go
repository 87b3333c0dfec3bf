package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"trackd/config"
	"trackd/internal/testcert"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t *testing.T, cfg config.Config) (*Server, *syncBuffer) {
	t.Helper()
	var logs syncBuffer
	srv, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv, &logs
}

func loopbackConfig() config.Config {
	cfg := config.Default()
	cfg.HTTP = "127.0.0.1:0"
	cfg.UDP = "127.0.0.1:0"
	cfg.UDPSockets = 2
	cfg.Admin = "127.0.0.1:0"
	return cfg
}

const announceQuery = "/announce?info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=6881&left=0&compact=1"

func TestServesAndLogsListener(t *testing.T) {
	srv, logs := start(t, loopbackConfig())
	res, body := getAnnounce(t, http.DefaultClient, "http://"+srv.HTTPAddr().String())
	if res.ContentLength != int64(len(body)) || len(res.TransferEncoding) != 0 {
		t.Errorf("Content-Length %d, Transfer-Encoding %v for a %d-byte reply", res.ContentLength, res.TransferEncoding, len(body))
	}
	if !strings.Contains(logs.String(), "protocol=http addr="+srv.HTTPAddr().String()) {
		t.Errorf("no listener log line in %q", logs.String())
	}
}

// udpConn is a BEP 15 client socket for the tests.
type udpConn struct {
	t *testing.T
	c *net.UDPConn
}

func dialUDP(t *testing.T, addr net.Addr) *udpConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, addr.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &udpConn{t: t, c: c}
}

// exchange sends req and returns the reply, or nil if none came within d.
func (u *udpConn) exchange(req []byte, d time.Duration) []byte {
	u.t.Helper()
	if _, err := u.c.Write(req); err != nil {
		u.t.Fatal(err)
	}
	u.c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 2048)
	n, err := u.c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

const bep15Magic = 0x41727101980

// connect returns a connection id, failing the test if there is none.
func (u *udpConn) connect() uint64 {
	u.t.Helper()
	req := binary.BigEndian.AppendUint64(nil, bep15Magic)
	req = binary.BigEndian.AppendUint32(req, 0) // connect
	req = binary.BigEndian.AppendUint32(req, 0x1234)
	reply := u.exchange(req, 5*time.Second)
	if len(reply) != 16 || binary.BigEndian.Uint32(reply) != 0 || binary.BigEndian.Uint32(reply[4:]) != 0x1234 {
		u.t.Fatalf("connect reply %x", reply)
	}
	return binary.BigEndian.Uint64(reply[8:])
}

// announce sends a started announce of a seeder on port and returns the
// reply (nil if none).
func (u *udpConn) announce(id uint64, port uint16) []byte {
	u.t.Helper()
	req := binary.BigEndian.AppendUint64(nil, id)
	req = binary.BigEndian.AppendUint32(req, 1) // announce
	req = binary.BigEndian.AppendUint32(req, 0x5678)
	req = append(req, "aaaaaaaaaaaaaaaaaaaa"...) // info_hash
	req = append(req, "bbbbbbbbbbbbbbbbbbbb"...) // peer_id
	req = binary.BigEndian.AppendUint64(req, 0)  // downloaded
	req = binary.BigEndian.AppendUint64(req, 0)  // left
	req = binary.BigEndian.AppendUint64(req, 0)  // uploaded
	req = binary.BigEndian.AppendUint32(req, 2)  // started
	req = binary.BigEndian.AppendUint32(req, 0)  // ip
	req = binary.BigEndian.AppendUint32(req, 7)  // key
	req = binary.BigEndian.AppendUint32(req, 50) // num_want
	req = binary.BigEndian.AppendUint16(req, port)
	return u.exchange(req, 2*time.Second)
}

// TestServesUDP: the default configuration (on loopback) serves UDP too,
// and logs both listeners.
func TestServesUDP(t *testing.T) {
	srv, logs := start(t, loopbackConfig())
	ua := srv.UDPAddr()
	if ua == nil {
		t.Fatal("no UDP listener")
	}
	if a := ua.(*net.UDPAddr); a.Port == 0 || !a.IP.IsLoopback() {
		t.Fatalf("UDP on %v", a)
	}
	u := dialUDP(t, ua)
	id := u.connect()
	reply := u.announce(id, 6881)
	if len(reply) < 20 || binary.BigEndian.Uint32(reply) != 1 {
		t.Fatalf("announce reply %x", reply)
	}
	if seeders := binary.BigEndian.Uint32(reply[16:]); seeders != 1 {
		t.Errorf("seeders %d after one seeder announced", seeders)
	}
	l := logs.String()
	for _, want := range []string{
		"protocol=http addr=" + srv.HTTPAddr().String(),
		"protocol=udp addr=" + ua.String() + " announce=udp://" + ua.String() + "/announce",
	} {
		if !strings.Contains(l, want) {
			t.Errorf("no %q in the log %q", want, l)
		}
	}
}

func TestUDPOff(t *testing.T) {
	cfg := loopbackConfig()
	cfg.UDP = ""
	srv, logs := start(t, cfg)
	if srv.UDPAddr() != nil {
		t.Errorf("UDP listener %v though turned off", srv.UDPAddr())
	}
	if strings.Contains(logs.String(), "protocol=udp") {
		t.Errorf("UDP listener logged though off: %q", logs.String())
	}
	if srv.HTTPAddr() == nil {
		t.Error("HTTP off too")
	}
}

// TestUDPPortTaken: Start fails when the UDP port is taken, and leaves no
// HTTP listener behind.
func TestUDPPortTaken(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := ln.Addr().String()
	ln.Close()
	cfg := loopbackConfig()
	cfg.HTTP = httpAddr
	cfg.UDP = pc.LocalAddr().String()
	srv, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	if err := srv.Start(); err == nil || !strings.Contains(err.Error(), "udp listener") {
		t.Fatalf("Start: %v, want a udp listener error", err)
	}
	if ln, err := net.Listen("tcp4", httpAddr); err != nil {
		t.Errorf("HTTP port still held after a failed Start: %v", err)
	} else {
		ln.Close()
	}
}

// TestUDPSecretShared: instances with one udp_secret accept each other's
// connection ids; with another secret they do not.
func TestUDPSecretShared(t *testing.T) {
	cfg := loopbackConfig()
	cfg.UDPSecret = "shared between instances"
	a, _ := start(t, cfg)
	b, _ := start(t, cfg)
	cfg.UDPSecret = "another secret"
	other, _ := start(t, cfg)

	// One client socket talks to all three, so its address is the same.
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send := func(srv *Server, req []byte, d time.Duration) []byte {
		t.Helper()
		if _, err := c.WriteTo(req, srv.UDPAddr()); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(d))
		buf := make([]byte, 2048)
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return nil
		}
		return buf[:n]
	}
	connReq := binary.BigEndian.AppendUint64(nil, bep15Magic)
	connReq = binary.BigEndian.AppendUint32(connReq, 0)
	connReq = binary.BigEndian.AppendUint32(connReq, 1)
	reply := send(a, connReq, 5*time.Second)
	if len(reply) != 16 {
		t.Fatalf("connect reply %x", reply)
	}
	id := binary.BigEndian.Uint64(reply[8:])
	scrape := binary.BigEndian.AppendUint64(nil, id)
	scrape = binary.BigEndian.AppendUint32(scrape, 2)
	scrape = binary.BigEndian.AppendUint32(scrape, 2)
	scrape = append(scrape, "aaaaaaaaaaaaaaaaaaaa"...)
	if r := send(b, scrape, 5*time.Second); len(r) != 8+12 || binary.BigEndian.Uint32(r) != 2 {
		t.Errorf("the other instance with the same secret: scrape reply %x, want a scrape", r)
	}
	if r := send(other, scrape, 500*time.Millisecond); len(r) >= 4 && binary.BigEndian.Uint32(r) == 2 {
		t.Errorf("an instance with another secret accepted the connection id: %x", r)
	}
}

func TestHTTPOff(t *testing.T) {
	cfg := loopbackConfig()
	cfg.HTTP = ""
	srv, _ := start(t, cfg)
	if srv.HTTPAddr() != nil {
		t.Errorf("HTTP listener %v though turned off", srv.HTTPAddr())
	}
}

func TestKeepAlive(t *testing.T) {
	srv, _ := start(t, loopbackConfig())
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	reused := 0
	for range 3 {
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			if i.Reused {
				reused++
			}
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", "http://"+srv.HTTPAddr().String()+announceQuery, nil)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	if reused != 2 {
		t.Errorf("connection reused %d times over 3 requests, want 2", reused)
	}
}

func TestDualStack(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	ln.Close()
	cfg := loopbackConfig()
	cfg.HTTP = ":0"
	cfg.UDP = ":0"
	srv, _ := start(t, cfg)
	port := srv.HTTPAddr().(*net.TCPAddr).Port
	udpPort := srv.UDPAddr().(*net.UDPAddr).Port
	for _, host := range []string{"127.0.0.1", "[::1]"} {
		res, err := http.Get(fmt.Sprintf("http://%s:%d%s", host, port, announceQuery))
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("%s: status %d", host, res.StatusCode)
		}
		ua, err := net.ResolveUDPAddr("udp", fmt.Sprintf("%s:%d", host, udpPort))
		if err != nil {
			t.Fatal(err)
		}
		dialUDP(t, ua).connect()
	}
}

func TestMaxHeaderBytes(t *testing.T) {
	cfg := loopbackConfig()
	cfg.MaxQueryBytes = 1000
	cfg.MaxHeaderBytes = 2000
	srv, _ := start(t, cfg)
	req, _ := http.NewRequest("GET", "http://"+srv.HTTPAddr().String()+announceQuery, nil)
	req.Header.Set("X-Junk", strings.Repeat("j", 10000))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %d, want 431", res.StatusCode)
	}
	// A query just over max_query_bytes, but within the header limit,
	// gets a failure reason.
	res, err = http.Get("http://" + srv.HTTPAddr().String() + announceQuery + "&pad=" + strings.Repeat("p", 1000))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), "query too long") {
		t.Errorf("oversize query: %d %q", res.StatusCode, body)
	}
}

func TestSlowHeadersAreCut(t *testing.T) {
	cfg := loopbackConfig()
	cfg.ReadHeaderTimeout = 200 * time.Millisecond
	srv, _ := start(t, cfg)
	c, err := net.Dial("tcp", srv.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "GET /announce HTTP/1.1\r\nHost: x\r\n") // never finished
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	startAt := time.Now()
	_, err = io.ReadAll(c)
	if err != nil {
		t.Fatalf("connection not closed by the server: %v", err)
	}
	if d := time.Since(startAt); d > 3*time.Second {
		t.Errorf("slow client held the connection for %v", d)
	}
}

func TestMaxConns(t *testing.T) {
	cfg := loopbackConfig()
	cfg.MaxConns = 2
	srv, _ := start(t, cfg)
	addr := srv.HTTPAddr().String()
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	// Make sure both are accepted: a request on each gets an answer.
	for _, c := range held {
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", announceQuery)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		// Busy with a second request: not an idle connection to evict.
		io.WriteString(c, "GET /ann")
	}
	third, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	fmt.Fprintf(third, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", announceQuery)
	third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	br := bufio.NewReader(third)
	if _, err := br.Peek(1); err == nil {
		t.Fatal("third connection served while the cap of 2 was reached")
	}
	held[0].Close()
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("third connection not served after one closed: %v", err)
	}
	res.Body.Close()
}

// TestMaxConnsPerIP: max_conns_per_ip reaches the HTTP server: a second
// connection from an address at a bound of 1, whose first connection is
// busy, is closed at once; with the address a trusted proxy, it is served.
func TestMaxConnsPerIP(t *testing.T) {
	for _, trusted := range []bool{false, true} {
		cfg := loopbackConfig()
		cfg.MaxConnsPerIP = 1
		if trusted {
			cfg.TrustedProxies = []string{"127.0.0.1/32"}
		}
		srv, _ := start(t, cfg)
		addr := srv.HTTPAddr().String()
		first, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		io.WriteString(first, "GET /ann")
		time.Sleep(100 * time.Millisecond)
		second, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer second.Close()
		fmt.Fprintf(second, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", announceQuery)
		second.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = http.ReadResponse(bufio.NewReader(second), nil)
		if served := err == nil; served != trusted {
			t.Errorf("trusted %v: second connection served %v (%v)", trusted, served, err)
		}
	}
}

func TestGracefulShutdown(t *testing.T) {
	var logs syncBuffer
	srv, err := New(loopbackConfig(), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("server did not start")
	}
	addr := srv.HTTPAddr().String()
	udpAddr := srv.UDPAddr().String()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("listener still open after shutdown")
	}
	if pc, err := net.ListenPacket("udp", udpAddr); err != nil {
		t.Errorf("UDP port still held after shutdown: %v", err)
	} else {
		pc.Close()
	}
}

// withHTTPS turns the HTTPS listener on in cfg, with a fresh certificate,
// and returns a client that trusts it.
func withHTTPS(t *testing.T, cfg *config.Config) *http.Client {
	t.Helper()
	dir := t.TempDir()
	cfg.HTTPS = "127.0.0.1:0"
	cfg.TLSCert = filepath.Join(dir, "cert.pem")
	cfg.TLSKey = filepath.Join(dir, "key.pem")
	pool := x509.NewCertPool()
	pool.AddCert(testcert.Write(t, cfg.TLSCert, cfg.TLSKey, 1))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	t.Cleanup(client.CloseIdleConnections)
	return client
}

// getAnnounce gets announceQuery from base ("http://host:port") with
// client and fails the test unless the reply is an announce's.
func getAnnounce(t *testing.T, client *http.Client, base string) (*http.Response, []byte) {
	t.Helper()
	res, err := client.Get(base + announceQuery)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !bytes.HasPrefix(body, []byte("d8:complete")) {
		t.Errorf("reply %q", body)
	}
	return res, body
}

// TestHTTPSOnly: with the plain HTTP listener off and HTTPS on, the Server
// starts, serves announces over TLS, and has no HTTP address.
func TestHTTPSOnly(t *testing.T) {
	cfg := loopbackConfig()
	cfg.HTTP = ""
	client := withHTTPS(t, &cfg)
	srv, _ := start(t, cfg)
	if srv.HTTPAddr() != nil {
		t.Errorf("HTTP listener %v though turned off", srv.HTTPAddr())
	}
	getAnnounce(t, client, "https://"+srv.HTTPSAddr().String())
}

// TestHTTPSBesideHTTP: with both listeners on, HTTPS serves announces
// over TLS and keeps a connection open between requests, and /metrics
// counts each listener's open connections on its own.
func TestHTTPSBesideHTTP(t *testing.T) {
	cfg := loopbackConfig()
	client := withHTTPS(t, &cfg)
	srv, _ := start(t, cfg)
	for range 2 {
		getAnnounce(t, client, "https://"+srv.HTTPSAddr().String())
	}
	_, page := adminGet(t, srv, "/metrics")
	for series, want := range map[string]float64{
		`trackd_http_connections_open{listener="https"}`: 1, // the client's, kept alive
		`trackd_http_connections_open{listener="http"}`:  0,
	} {
		if got := metricValue(page, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

// builders counts the goroutines building a full scrape.
func builders() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("http.(*fullScrape).run("))
}

// TestShutdownStopsFullScrapeBuilder: the HTTP handler's full scrape
// builder runs from New until Shutdown, and is gone after it.
func TestShutdownStopsFullScrapeBuilder(t *testing.T) {
	before := builders()
	srv, err := New(loopbackConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	// The builder's goroutine shows as run once it has been scheduled
	// (before that, as the go statement's wrapper).
	n := builders()
	for deadline := time.Now().Add(5 * time.Second); n != before+1 && time.Now().Before(deadline); n = builders() {
		time.Sleep(time.Millisecond)
	}
	if n != before+1 {
		t.Errorf("%d full scrape builders while serving, %d before", n, before)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := builders(); n != before {
		t.Errorf("%d full scrape builders after Shutdown, %d before", n, before)
	}
}
