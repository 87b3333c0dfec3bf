package wsserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"trackd/httpserver"
	"trackd/internal/testcert"
)

// testHandler echoes each message (or calls onMessage) and reports each
// connection opened and closed.
type testHandler struct {
	opened    chan Conn
	closed    chan Conn
	onMessage func(c Conn, msg []byte)
}

func newTestHandler() *testHandler {
	return &testHandler{opened: make(chan Conn, 1000), closed: make(chan Conn, 1000)}
}

func (h *testHandler) Open(c Conn) Session {
	h.opened <- c
	return &testSession{h: h, c: c}
}

type testSession struct {
	h *testHandler
	c Conn

	mu     sync.Mutex
	done   bool
	closes int
}

func (s *testSession) Message(ctx context.Context, msg []byte) {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done {
		panic("Message after Closed")
	}
	if s.h.onMessage != nil {
		s.h.onMessage(s.c, msg)
		return
	}
	s.c.Send(msg)
}

func (s *testSession) Closed() {
	s.mu.Lock()
	s.closes++
	if s.closes > 1 {
		panic("Closed twice")
	}
	s.done = true
	s.mu.Unlock()
	s.h.closed <- s.c
}

// A setup serves a Server's upgrades on a listener of one kind.
type setup struct {
	name string
	// tls: the URL is wss:// and the dialer trusts the test certificate.
	tls bool
	// httpOpts and wsPortable choose httpserver's and wsserver's kinds.
	httpPortable, wsPortable bool
}

var setups = []setup{
	{name: "epoll"},
	{name: "portable", httpPortable: true, wsPortable: true},
	{name: "http-portable/ws-epoll", httpPortable: true},
	{name: "tls", tls: true},
}

// nextHandler answers every request that is not an upgrade with "next".
var nextHandler = httpserver.HandlerFunc(func(ctx context.Context, w *httpserver.Response, r *httpserver.Request) {
	w.Body = append(w.Body, "next"...)
})

// start serves h with opts on a listener of su's kind and returns the
// Server, the URL to dial and a dialer for it.
func (su setup) start(t testing.TB, h Handler, opts Options) (*Server, string, ws.Dialer) {
	t.Helper()
	opts.GoroutinePerConn = su.wsPortable
	s := New(h, opts)
	t.Cleanup(func() { s.Close() })
	hopts := httpserver.Options{GoroutinePerConn: su.httpPortable, Loops: 1, ReadHeaderTimeout: 5 * time.Second}
	scheme, d := "ws://", ws.Dialer{Timeout: 5 * time.Second}
	if su.tls {
		dir := t.TempDir()
		certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		cert := testcert.Write(t, certFile, keyFile, 1)
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		hopts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}}
		pool := x509.NewCertPool()
		pool.AddCert(cert)
		scheme, d.TLSConfig = "wss://", &tls.Config{RootCAs: pool}
	}
	hs, err := httpserver.Listen("127.0.0.1:0", s.Upgrade(nextHandler), hopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.Close() })
	return s, scheme + hs.Addr().String() + "/announce", d
}

// client is a test's WebSocket client, frame by frame.
type client struct {
	t  testing.TB
	nc net.Conn
	r  io.Reader
}

func dial(t testing.TB, url string, d ws.Dialer) *client {
	t.Helper()
	nc, br, _, err := d.Dial(context.Background(), url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c := &client{t: t, nc: nc, r: nc}
	if br != nil {
		c.r = br
	}
	t.Cleanup(func() { nc.Close() })
	return c
}

// frame writes a masked frame with header h (Masked, Mask and Length
// are set here) and payload p.
func (c *client) frame(h ws.Header, p []byte) {
	c.t.Helper()
	h.Masked = true
	h.Mask = ws.NewMask()
	h.Length = int64(len(p))
	q := append([]byte(nil), p...)
	ws.Cipher(q, h.Mask, 0)
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := ws.WriteHeader(c.nc, h); err != nil {
		c.t.Fatalf("writing a frame: %v", err)
	}
	if _, err := c.nc.Write(q); err != nil {
		c.t.Fatalf("writing a frame: %v", err)
	}
}

func (c *client) text(s string) {
	c.t.Helper()
	c.frame(ws.Header{Fin: true, OpCode: ws.OpText}, []byte(s))
}

// read reads the next frame from the server, within 5 s.
func (c *client) read() (ws.Frame, error) {
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := readFrame(c.r)
	if err == nil && f.Header.Masked {
		return f, errors.New("server frame is masked")
	}
	return f, err
}

// expectText reads a text frame with payload want.
func (c *client) expectText(want string) {
	c.t.Helper()
	f, err := c.read()
	if err != nil {
		c.t.Fatalf("reading %.20q: %v", want, err)
	}
	if f.Header.OpCode != ws.OpText || !f.Header.Fin || string(f.Payload) != want {
		c.t.Fatalf("got op %v fin %v %.40q (%d bytes), want text %.40q (%d bytes)",
			f.Header.OpCode, f.Header.Fin, f.Payload, len(f.Payload), want, len(want))
	}
}

// expectClose reads a close frame with status code, then the end of
// stream.
func (c *client) expectClose(code ws.StatusCode) {
	c.t.Helper()
	f, err := c.read()
	if err != nil {
		c.t.Fatalf("reading close %d: %v", code, err)
	}
	if f.Header.OpCode != ws.OpClose {
		c.t.Fatalf("got op %v %.40q, want close %d", f.Header.OpCode, f.Payload, code)
	}
	if got, reason := ws.ParseCloseFrameData(f.Payload); got != code {
		c.t.Fatalf("close code %d (%q), want %d", got, reason, code)
	}
	c.expectEOF()
	c.nc.Close() // the client's end of the close handshake
}

// expectEOF reads the end of stream (the server closes after its close
// frame), skipping pings.
func (c *client) expectEOF() {
	c.t.Helper()
	for {
		f, err := c.read()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "reset") {
				return
			}
			c.t.Fatalf("want end of stream, got %v", err)
		}
		if f.Header.OpCode != ws.OpPing {
			c.t.Fatalf("want end of stream, got op %v %.40q", f.Header.OpCode, f.Payload)
		}
	}
}

// waitConn receives from ch within 5 s.
func waitConn(t *testing.T, ch chan Conn, what string) Conn {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(5 * time.Second):
		t.Fatalf("no connection %s", what)
		return nil
	}
}

// TestEcho: messages of several sizes go both ways, through every kind
// of listener; closing the client closes the connection (Closed once).
func TestEcho(t *testing.T) {
	for _, su := range setups {
		t.Run(su.name, func(t *testing.T) {
			h := newTestHandler()
			s, url, d := su.start(t, h, Options{})
			c := dial(t, url, d)
			conn := waitConn(t, h.opened, "opened")
			if _, ok := conn.(*pconn); ok != (su.wsPortable || su.tls || runtime.GOOS != "linux") {
				t.Errorf("connection served by %T", conn)
			}
			if !conn.RemoteAddr().Addr().IsLoopback() {
				t.Errorf("RemoteAddr %v", conn.RemoteAddr())
			}
			for _, n := range []int{0, 1, 125, 126, 200, 4096, 65535, 65536, DefaultMaxMessageBytes} {
				msg := strings.Repeat("é", n/2) + strings.Repeat("x", n%2)
				c.text(msg)
				c.expectText(msg)
			}
			if n := s.OpenConns(); n != 1 {
				t.Errorf("OpenConns %d, want 1", n)
			}
			c.nc.Close()
			if got := waitConn(t, h.closed, "closed"); got != conn {
				t.Errorf("closed %v, want %v", got, conn)
			}
			for deadline := time.Now().Add(5 * time.Second); s.OpenConns() != 0 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			if n := s.OpenConns(); n != 0 {
				t.Errorf("OpenConns %d after close, want 0", n)
			}
		})
	}
}

// TestHandshake: requests that are not upgrades go to the next handler;
// bad upgrades get 400, another version 426 with the version the server
// speaks.
func TestHandshake(t *testing.T) {
	tests := []struct {
		name    string
		header  map[string]string
		status  int
		version string
	}{
		{"no upgrade", map[string]string{}, 200, ""},
		{"other upgrade", map[string]string{"Upgrade": "h2c", "Connection": "Upgrade"}, 200, ""},
		{"no connection", map[string]string{"Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}, 400, ""},
		{"no key", map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}, 400, ""},
		{"short key", map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZQ=="}, 400, ""},
		{"bad key", map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "!GhlIHNhbXBsZSBub25jZQ=="}, 400, ""},
		{"version 8", map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "8", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}, 426, "13"},
		{"valid", map[string]string{"Upgrade": "WebSocket", "Connection": "keep-alive, Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}, 101, ""},
	}
	for _, su := range setups {
		t.Run(su.name, func(t *testing.T) {
			_, url, d := su.start(t, newTestHandler(), Options{})
			addr := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(url, "ws://"), "wss://"), "/announce")
			addr = strings.TrimSuffix(addr, "/")
			for _, tt := range tests {
				var nc net.Conn
				var err error
				if su.tls {
					nc, err = tls.Dial("tcp", addr, d.TLSConfig)
				} else {
					nc, err = net.Dial("tcp", addr)
				}
				if err != nil {
					t.Fatal(err)
				}
				req := "GET /x HTTP/1.1\r\nHost: " + addr + "\r\n"
				for k, v := range tt.header {
					req += k + ": " + v + "\r\n"
				}
				io.WriteString(nc, req+"\r\n")
				nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
				nc.Close()
				if err != nil {
					t.Fatalf("%s: %v", tt.name, err)
				}
				if resp.StatusCode != tt.status {
					t.Errorf("%s: status %d, want %d", tt.name, resp.StatusCode, tt.status)
				}
				if v := resp.Header.Get("Sec-WebSocket-Version"); v != tt.version {
					t.Errorf("%s: Sec-WebSocket-Version %q, want %q", tt.name, v, tt.version)
				}
				if tt.status == 101 && resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
					t.Errorf("%s: Sec-WebSocket-Accept %q", tt.name, resp.Header.Get("Sec-WebSocket-Accept"))
				}
			}
		})
	}
}

// TestPipelined: a frame sent in the same packet as the upgrade request,
// before the 101, is read as the connection's first.
func TestPipelined(t *testing.T) {
	for _, su := range setups {
		if su.tls {
			continue
		}
		t.Run(su.name, func(t *testing.T) {
			_, url, _ := su.start(t, newTestHandler(), Options{})
			addr := strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/announce")
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			f := ws.MaskFrame(ws.NewTextFrame([]byte("first")))
			frame, _ := ws.CompileFrame(f)
			g := ws.MaskFrame(ws.NewTextFrame([]byte("second")))
			frame2, _ := ws.CompileFrame(g)
			req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
			// The second frame split in two: the rest comes later.
			nc.Write(append(append([]byte(req), frame...), frame2[:4]...))
			br := bufio.NewReader(nc)
			nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 101 {
				t.Fatalf("upgrade: %v %v", resp, err)
			}
			c := &client{t: t, nc: nc, r: br}
			c.expectText("first")
			nc.Write(frame2[4:])
			c.expectText("second")
		})
	}
}

// TestFragmented: a message in fragments, with a ping between them, is
// reassembled; the ping is answered at once.
func TestFragmented(t *testing.T) {
	for _, su := range setups {
		t.Run(su.name, func(t *testing.T) {
			_, url, d := su.start(t, newTestHandler(), Options{})
			c := dial(t, url, d)
			c.frame(ws.Header{OpCode: ws.OpText}, []byte("hel"))
			c.frame(ws.Header{Fin: true, OpCode: ws.OpPing}, []byte("p1"))
			f, err := c.read()
			if err != nil || f.Header.OpCode != ws.OpPong || string(f.Payload) != "p1" {
				t.Fatalf("pong: %v %q %v", f.Header.OpCode, f.Payload, err)
			}
			c.frame(ws.Header{OpCode: ws.OpContinuation}, []byte("lo, "))
			c.frame(ws.Header{Fin: true, OpCode: ws.OpContinuation}, []byte("world"))
			c.expectText("hello, world")
			// A pong resets nothing visible, and is not answered.
			c.frame(ws.Header{Fin: true, OpCode: ws.OpPong}, nil)
			c.text("after")
			c.expectText("after")
		})
	}
}

// TestPing: a connection quiet for PingInterval is pinged; one that
// answers stays open; one quiet for IdleTimeout is closed.
func TestPing(t *testing.T) {
	for _, su := range setups {
		t.Run(su.name, func(t *testing.T) {
			h := newTestHandler()
			const idle = time.Second
			_, url, d := su.start(t, h, Options{PingInterval: 50 * time.Millisecond, IdleTimeout: idle})
			c := dial(t, url, d)
			// Answer the pings for longer than IdleTimeout: the connection
			// stays open.
			for start := time.Now(); time.Since(start) < idle+idle/2; {
				f, err := c.read()
				if err != nil || f.Header.OpCode != ws.OpPing {
					t.Fatalf("want a ping: %v %v", f.Header.OpCode, err)
				}
				c.frame(ws.Header{Fin: true, OpCode: ws.OpPong}, f.Payload)
				time.Sleep(100 * time.Millisecond)
			}
			c.text("alive")
			for {
				f, err := c.read()
				if err != nil {
					t.Fatal(err)
				}
				if f.Header.OpCode == ws.OpText {
					break
				}
			}
			// Now quiet: closed after IdleTimeout.
			select {
			case <-h.closed:
			case <-time.After(5 * time.Second):
				t.Fatal("not closed after IdleTimeout")
			}
			c.expectEOF()
		})
	}
}

// TestCloseCodes: what breaks the protocol or a bound is answered with a
// close frame and its status code, then the end of stream.
func TestCloseCodes(t *testing.T) {
	tests := []struct {
		name   string
		frames []ws.Header
		data   [][]byte
		code   ws.StatusCode
	}{
		{"too big", []ws.Header{{Fin: true, OpCode: ws.OpText}}, [][]byte{make([]byte, 1025)}, 1009},
		{"too big fragmented", []ws.Header{{OpCode: ws.OpText}, {Fin: true, OpCode: ws.OpContinuation}}, [][]byte{make([]byte, 600), make([]byte, 600)}, 1009},
		{"binary", []ws.Header{{Fin: true, OpCode: ws.OpBinary}}, [][]byte{[]byte("x")}, 1003},
		{"not utf-8", []ws.Header{{Fin: true, OpCode: ws.OpText}}, [][]byte{{0xff, 0xfe}}, 1007},
		{"rsv1", []ws.Header{{Fin: true, Rsv: ws.Rsv(true, false, false), OpCode: ws.OpText}}, [][]byte{[]byte("x")}, 1002},
		{"opcode 3", []ws.Header{{Fin: true, OpCode: 3}}, [][]byte{[]byte("x")}, 1002},
		{"lone continuation", []ws.Header{{Fin: true, OpCode: ws.OpContinuation}}, [][]byte{[]byte("x")}, 1002},
		{"text inside fragmented", []ws.Header{{OpCode: ws.OpText}, {Fin: true, OpCode: ws.OpText}}, [][]byte{[]byte("x"), []byte("y")}, 1002},
		{"fragmented ping", []ws.Header{{OpCode: ws.OpPing}}, [][]byte{[]byte("x")}, 1002},
		{"client close", []ws.Header{{Fin: true, OpCode: ws.OpClose}}, [][]byte{ws.NewCloseFrameBody(4000, "bye")}, 4000},
		{"client close 1000", []ws.Header{{Fin: true, OpCode: ws.OpClose}}, [][]byte{ws.NewCloseFrameBody(1000, "")}, 1000},
		{"bad close code", []ws.Header{{Fin: true, OpCode: ws.OpClose}}, [][]byte{ws.NewCloseFrameBody(1005, "")}, 1002},
	}
	for _, su := range setups {
		t.Run(su.name, func(t *testing.T) {
			h := newTestHandler()
			_, url, d := su.start(t, h, Options{MaxMessageBytes: 1024})
			for _, tt := range tests {
				c := dial(t, url, d)
				for i := range tt.frames {
					c.frame(tt.frames[i], tt.data[i])
				}
				c.expectClose(tt.code)
				waitConn(t, h.closed, tt.name)
			}
			// Unmasked, written by hand.
			c := dial(t, url, d)
			ws.WriteFrame(c.nc, ws.NewTextFrame([]byte("x")))
			c.expectClose(1002)
		})
	}
}

// TestSlowReader: a client that does not read has its queue fill and is
// closed; Send never blocks, and another connection's round trips go on.
func TestSlowReader(t *testing.T) {
	for _, su := range setups {
		t.Run(su.name, func(t *testing.T) {
			h := newTestHandler()
			_, url, d := su.start(t, h, Options{MaxQueueBytes: 64 << 10})
			slow := dial(t, url, d)
			slowConn := waitConn(t, h.opened, "slow")
			fast := dial(t, url, d)
			waitConn(t, h.opened, "fast")
			msg := make([]byte, 4096)
			for i := range msg {
				msg[i] = 'a' + byte(i%26)
			}
			var worst time.Duration
			sent := 0
			for ; sent < 20000; sent++ {
				t0 := time.Now()
				ok := slowConn.Send(msg)
				worst = max(worst, time.Since(t0))
				if !ok {
					break
				}
				if sent%100 == 0 {
					// The other connection's round trip, meanwhile.
					t1 := time.Now()
					fast.text("ping")
					fast.expectText("ping")
					if rt := time.Since(t1); rt > 2*time.Second {
						t.Errorf("round trip %v beside a full queue", rt)
					}
				}
			}
			t.Logf("%s: %d sends of 4 KiB before the queue was full; slowest Send %v", su.name, sent, worst)
			if sent == 20000 {
				t.Fatal("the queue never filled")
			}
			if worst > 500*time.Millisecond {
				t.Errorf("a Send took %v", worst)
			}
			if got := waitConn(t, h.closed, "slow closed"); got != slowConn {
				t.Errorf("closed %v, want the slow one", got)
			}
			if slowConn.Send(msg) {
				t.Error("Send on a closed connection reported true")
			}
			fast.text("still")
			fast.expectText("still")
			_ = slow
		})
	}
}

// from dials from another loopback address.
func from(d ws.Dialer, ip net.IP) ws.Dialer {
	d.NetDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
		return nd.DialContext(ctx, network, addr)
	}
	return d
}

// echo sends msg and reads it back: a message, in eviction's sense.
func (c *client) echo(msg string) {
	c.t.Helper()
	c.text(msg)
	c.expectText(msg)
}

// pingPong sends a ping and reads its pong: a sign of life, not a
// message.
func (c *client) pingPong() {
	c.t.Helper()
	c.frame(ws.Header{OpCode: ws.OpPing, Fin: true}, []byte("p"))
	f, err := c.read()
	if err != nil || f.Header.OpCode != ws.OpPong {
		c.t.Fatalf("want pong, got op %v, %v", f.Header.OpCode, err)
	}
}

// TestEvictMaxConns: at MaxConns a new connection is served, and the
// connection longest without a message is closed with 1013: one that
// never sent a message first (the oldest of them), even if it answers
// pings, then the one whose last message is oldest. OpenConns stays at
// MaxConns.
func TestEvictMaxConns(t *testing.T) {
	for _, su := range setups {
		t.Run(su.name, func(t *testing.T) {
			h := newTestHandler()
			s, url, d := su.start(t, h, Options{MaxConns: 3})
			open := func(what string) (*client, Conn) {
				t.Helper()
				c := dial(t, url, d)
				return c, waitConn(t, h.opened, what)
			}
			a, ac := open("a")
			b, _ := open("b")
			c, cc := open("c")
			// Three silent connections: the fourth evicts the oldest.
			dc, _ := open("d")
			a.expectClose(1013)
			if got := waitConn(t, h.closed, "a closed"); got != ac {
				t.Fatalf("closed %v, want a", got.RemoteAddr())
			}
			dc.echo("d")
			if n := s.OpenConns(); n != 3 {
				t.Errorf("OpenConns %d, want 3", n)
			}
			// b sends a message; c only pings, later: c goes first.
			b.echo("b1")
			c.pingPong()
			c.pingPong()
			e, _ := open("e")
			c.expectClose(1013)
			if got := waitConn(t, h.closed, "c closed"); got != cc {
				t.Fatalf("closed %v, want c", got.RemoteAddr())
			}
			e.echo("e")
			// b, d and e have sent messages, b's and then d's the
			// oldest; b's newer message makes d the victim.
			b.echo("b2")
			f, _ := open("f")
			dc.expectClose(1013)
			waitConn(t, h.closed, "d closed")
			for _, x := range []*client{b, e, f} {
				x.echo("still")
			}
			if n := s.OpenConns(); n != 3 {
				t.Errorf("OpenConns %d, want 3", n)
			}
			for _, x := range []*client{b, e, f} {
				x.nc.Close()
			}
			for range 3 {
				waitConn(t, h.closed, "closed")
			}
			deadline := time.Now().Add(5 * time.Second)
			for s.OpenConns() != 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := s.OpenConns(); n != 0 {
				t.Errorf("OpenConns %d after every connection closed, want 0", n)
			}
		})
	}
}

// TestMaxConnsPerIP: at an address's bound, the address's own connection
// longest without a message is closed with 1013 for the new one, not
// another address's older one; another address is counted apart.
func TestMaxConnsPerIP(t *testing.T) {
	for _, su := range setups {
		t.Run(su.name, func(t *testing.T) {
			h := newTestHandler()
			s, url, d := su.start(t, h, Options{MaxConnsPerIP: 2, MaxConns: 4})
			d2 := from(d, net.IPv4(127, 0, 0, 2))
			x := dial(t, url, d2) // silent, and the oldest
			waitConn(t, h.opened, "x")
			a := dial(t, url, d)
			ac := waitConn(t, h.opened, "a")
			b := dial(t, url, d)
			waitConn(t, h.opened, "b")
			a.echo("a")
			b.echo("b")
			over := dial(t, url, d)
			waitConn(t, h.opened, "over")
			a.expectClose(1013)
			if got := waitConn(t, h.closed, "a closed"); got != ac {
				t.Fatalf("closed %v, want a", got.RemoteAddr())
			}
			for _, c := range []*client{x, b, over} {
				c.echo("still")
			}
			if n := s.OpenConns(); n != 3 {
				t.Errorf("OpenConns %d, want 3", n)
			}
			// 127.0.0.2 has room: a second connection evicts nobody.
			y := dial(t, url, d2)
			waitConn(t, h.opened, "y")
			y.echo("y")
			x.echo("x")
			if n := s.OpenConns(); n != 4 {
				t.Errorf("OpenConns %d, want 4", n)
			}
		})
	}
}

// TestShutdown: Shutdown sends every connection a close frame 1001 and
// returns once they are closed; Close closes at once.
func TestShutdown(t *testing.T) {
	for _, su := range setups {
		t.Run(su.name, func(t *testing.T) {
			h := newTestHandler()
			s, url, d := su.start(t, h, Options{})
			var cs []*client
			for i := range 3 {
				cs = append(cs, dial(t, url, d))
				waitConn(t, h.opened, "opened")
				cs[i].text("x")
				cs[i].expectText("x")
			}
			done := make(chan error, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			go func() { done <- s.Shutdown(ctx) }()
			for _, c := range cs {
				c.expectClose(1001)
			}
			if err := <-done; err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			for range cs {
				waitConn(t, h.closed, "closed")
			}
			if n := s.OpenConns(); n != 0 {
				t.Errorf("OpenConns %d after Shutdown", n)
			}
		})
		t.Run(su.name+"/close", func(t *testing.T) {
			h := newTestHandler()
			s, url, d := su.start(t, h, Options{})
			c := dial(t, url, d)
			waitConn(t, h.opened, "opened")
			s.Close()
			waitConn(t, h.closed, "closed")
			c.expectEOF()
			// After Close, an upgrade is refused.
			if nc, _, _, err := d.Dial(context.Background(), url); err == nil {
				nc.Close()
				t.Error("upgrade after Close succeeded")
			}
		})
	}
}

// TestClientAddr: a trusted proxy's X-Real-IP or X-Forwarded-For names
// the client; anyone else's are ignored.
func TestClientAddr(t *testing.T) {
	s := New(newTestHandler(), Options{GoroutinePerConn: true, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	defer s.Close()
	proxy := netip.MustParseAddrPort("10.1.2.3:5000")
	other := netip.MustParseAddrPort("192.0.2.1:5000")
	tests := []struct {
		peer   netip.AddrPort
		realIP string
		xff    []string
		want   string
	}{
		{other, "198.51.100.1", nil, "192.0.2.1:5000"},
		{proxy, "198.51.100.1", nil, "198.51.100.1:0"},
		{proxy, "", []string{"198.51.100.7, 10.9.9.9"}, "198.51.100.7:0"},
		{proxy, "", []string{"203.0.113.5", "198.51.100.7"}, "198.51.100.7:0"},
		{proxy, "", []string{"junk"}, "10.1.2.3:5000"},
		{proxy, "", nil, "10.1.2.3:5000"},
	}
	for _, tt := range tests {
		if got := s.clientAddr(tt.peer, tt.realIP, tt.xff); got.String() != tt.want {
			t.Errorf("clientAddr(%v, %q, %q) = %v, want %s", tt.peer, tt.realIP, tt.xff, got, tt.want)
		}
	}
}

// BenchmarkSend: Conn.Send of a 200-byte message to a client that reads
// everything, from the benchmark's goroutine (as a relay from another
// connection's Session): on an event loop a write system call per Send;
// on a goroutine of its own, a copy into the queue its writer empties.
func BenchmarkSend(b *testing.B) {
	for _, su := range setups {
		if su.name == "http-portable/ws-epoll" {
			continue
		}
		b.Run(su.name, func(b *testing.B) {
			h := newTestHandler()
			_, url, d := su.start(b, h, Options{MaxQueueBytes: 16 << 20})
			c := dial(b, url, d)
			conn := <-h.opened
			go io.Copy(io.Discard, c.r)
			msg := []byte(strings.Repeat("m", 200))
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			pc, _ := conn.(*pconn)
			i := 0
			for b.Loop() {
				if !conn.Send(msg) {
					b.Fatal("Send failed")
				}
				// A goroutine's writer is outpaced by a loop of Sends
				// (its queue would overflow): wait for it now and then.
				if i++; pc != nil && i%64 == 0 {
					for {
						pc.mu.Lock()
						n := len(pc.out)
						pc.mu.Unlock()
						if n < 1<<20 {
							break
						}
						runtime.Gosched()
					}
				}
			}
		})
	}
}

// TestMessageTimeout: a frame, or a fragmented message, that is not
// whole within MessageTimeout closes the connection with 1008, however
// its bytes trickle in; whole messages meanwhile do not count.
func TestMessageTimeout(t *testing.T) {
	for _, su := range setups {
		t.Run(su.name, func(t *testing.T) {
			h := newTestHandler()
			const timeout = 400 * time.Millisecond
			_, url, d := su.start(t, h, Options{MessageTimeout: timeout})
			// Whole messages, one every 100 ms for longer than the timeout.
			c := dial(t, url, d)
			for range 6 {
				c.text("x")
				c.expectText("x")
				time.Sleep(100 * time.Millisecond)
			}
			// Half a frame, then a byte every 100 ms.
			f := clientFrame(true, ws.OpText, strings.Repeat("y", 100))
			start := time.Now()
			c.nc.Write(f[:10])
			go func(nc net.Conn) {
				for i := 10; i < 20; i++ {
					time.Sleep(100 * time.Millisecond)
					if _, err := nc.Write(f[i : i+1]); err != nil {
						return
					}
				}
			}(c.nc)
			c.expectClose(1008)
			if e := time.Since(start); e < timeout {
				t.Errorf("closed after %v, before MessageTimeout", e)
			}
			waitConn(t, h.closed, "trickled frame")
			// Fragments, each a whole frame, one every 100 ms.
			c = dial(t, url, d)
			c.frame(ws.Header{OpCode: ws.OpText}, []byte("a"))
			start = time.Now()
			go func(nc net.Conn) {
				for range 10 {
					time.Sleep(100 * time.Millisecond)
					h := ws.Header{OpCode: ws.OpContinuation, Masked: true, Length: 1}
					if err := ws.WriteHeader(nc, h); err != nil {
						return
					}
					if _, err := nc.Write([]byte{'b'}); err != nil {
						return
					}
				}
			}(c.nc)
			c.expectClose(1008)
			if e := time.Since(start); e < timeout-50*time.Millisecond {
				t.Errorf("closed after %v, before MessageTimeout", e)
			}
		})
	}
}

// TestEvictConcurrent: connections from two addresses dial, send and
// close at once, evicting each other at MaxConns 4 and MaxConnsPerIP 3:
// OpenConns never passes MaxConns, and once every connection is closed
// it is 0 and no address is counted.
func TestEvictConcurrent(t *testing.T) {
	for _, su := range setups {
		t.Run(su.name, func(t *testing.T) {
			h := newTestHandler()
			h.opened = make(chan Conn, 10000)
			h.closed = make(chan Conn, 10000)
			var m countMetrics
			s, url, d := su.start(t, h, Options{MaxConns: 4, MaxConnsPerIP: 3, Metrics: &m})
			dialers := []ws.Dialer{d, from(d, net.IPv4(127, 0, 0, 2))}
			stop := make(chan struct{})
			worst := make(chan int, 1)
			go func() {
				w := 0
				for {
					select {
					case <-stop:
						worst <- w
						return
					default:
					}
					w = max(w, s.OpenConns())
					time.Sleep(100 * time.Microsecond)
				}
			}()
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 10 {
						nc, br, _, err := dialers[(g+i)%2].Dial(context.Background(), url)
						if err != nil {
							t.Errorf("dial: %v", err)
							return
						}
						if i%3 != 0 {
							ws.WriteFrame(nc, ws.MaskFrame(ws.NewTextFrame([]byte("hi"))))
						}
						if br != nil {
							ws.PutReader(br)
						}
						if i%2 == 0 {
							nc.Close()
						} else {
							defer nc.Close()
						}
					}
				}()
			}
			wg.Wait()
			close(stop)
			w := <-worst
			t.Logf("%s: OpenConns at most %d; evicted %d at max_conns, %d per_ip", su.name, w, m.n[BoundMaxConns].Load(), m.n[BoundPerIP].Load())
			if w > 4 {
				t.Errorf("OpenConns reached %d, over MaxConns 4", w)
			}
			if m.n[BoundMaxConns].Load()+m.n[BoundPerIP].Load() == 0 {
				t.Error("no eviction")
			}
			// Close what is left: the deferred closes have run.
			// A connection evicted at MaxConns keeps its address's
			// count until it has closed (closeLinger at most).
			addrs := func() int {
				s.peers.mu.Lock()
				defer s.peers.mu.Unlock()
				return len(s.peers.m)
			}
			deadline := time.Now().Add(10 * time.Second)
			for (s.OpenConns() != 0 || addrs() != 0) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n, addrs := s.OpenConns(), addrs(); n != 0 || addrs != 0 {
				t.Errorf("after every connection closed: OpenConns %d, %d addresses counted; want 0, 0", n, addrs)
			}
		})
	}
}

// countMetrics counts evictions by bound.
type countMetrics struct{ n [2]atomic.Int64 }

func (m *countMetrics) ConnEvicted(b Bound) { m.n[b].Add(1) }
