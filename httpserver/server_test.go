package httpserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type listenFunc func(string, Handler, Options) (*Server, error)

// backends are the Server's two implementations, as Listen chooses them:
// event loops (Linux), and a goroutine per connection.
func backends() []struct {
	name   string
	listen listenFunc
} {
	b := []struct {
		name   string
		listen listenFunc
	}{{"goroutine per connection", func(a string, h Handler, o Options) (*Server, error) {
		o.GoroutinePerConn = true
		return Listen(a, h, o)
	}}}
	if runtime.GOOS == "linux" {
		b = append(b, struct {
			name   string
			listen listenFunc
		}{"epoll", Listen})
	}
	return b
}

// forEachBackend runs test as a subtest per backend.
func forEachBackend(t *testing.T, test func(t *testing.T, listen listenFunc)) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) { test(t, b.listen) })
	}
}

var notFound = []byte("404 page not found\n")

// echoHandler answers a request with its path and query ("/announce?a=1"),
// so that a reply says which request it answers; /stream with a short
// streamed body; /index.html and /nope with 404.
var echoHandler = HandlerFunc(func(ctx context.Context, w *Response, r *Request) {
	switch r.Path {
	case "/stream":
		w.Stream, w.StreamLen = io.NopCloser(strings.NewReader("streamed")), 8
	case "/index.html", "/nope":
		w.Status, w.Body, w.Shared = http.StatusNotFound, notFound, true
	default:
		w.Body = append(append(append(w.Body, r.Path...), '?'), r.RawQuery...)
	}
})

// testHandler is the Handler most tests serve: echoHandler.
func testHandler() Handler { return echoHandler }

// startServer starts a Server on 127.0.0.1 and closes it when the test
// ends.
func startServer(t testing.TB, listen listenFunc, h Handler, opts Options) *Server {
	t.Helper()
	if opts.ReadHeaderTimeout == 0 {
		opts.ReadHeaderTimeout = 10 * time.Second
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = 10 * time.Second
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	s, err := listen("127.0.0.1:0", h, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func dial(t testing.TB, s *Server) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

const testAnnounce = "/announce?info_hash=%01%02server+test&peer_id=peer&port=6881&uploaded=0&downloaded=0&left=0&compact=1"

func get(target string, extra ...string) string {
	return "GET " + target + " HTTP/1.1\r\nHost: tracker\r\n" + strings.Join(extra, "") + "\r\n"
}

// readAll reads replies until the server closes the connection or the
// deadline passes; eof reports that it closed.
func readAll(t *testing.T, c net.Conn, d time.Duration) (replies []*http.Response, bodies []string, eof bool) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	br := bufio.NewReader(c)
	for {
		res, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return replies, bodies, false
			}
			// EOF, or a reset after the server closed.
			return replies, bodies, true
		}
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("reading a body: %v", err)
		}
		replies = append(replies, res)
		bodies = append(bodies, string(body))
	}
}

// TestServerConformance sends requests over a real connection and checks
// the replies and whether the connection stays open.
func TestServerConformance(t *testing.T) {
	bigHeader := "X-Junk: " + strings.Repeat("j", 3000) + "\r\n"
	tests := []struct {
		name   string
		send   []string // written one after the other, 20 ms apart
		status []int    // the replies, in order
		close  bool     // the server closes the connection after them
		check  func(t *testing.T, res []*http.Response, bodies []string)
	}{
		{name: "keep-alive", send: []string{get(testAnnounce)}, status: []int{200}, check: func(t *testing.T, res []*http.Response, bodies []string) {
			r := res[0]
			if r.ContentLength != int64(len(bodies[0])) || r.Header.Get("Content-Type") != "text/plain" || r.Header.Get("Date") == "" || r.Close {
				t.Errorf("reply header %v, length %d", r.Header, r.ContentLength)
			}
			if bodies[0] != testAnnounce {
				t.Errorf("body %q", bodies[0])
			}
		}},
		{name: "two in turn", send: []string{get(testAnnounce), get("/scrape?info_hash=x")}, status: []int{200, 200}},
		{name: "pipelined, in order", send: []string{get(testAnnounce) + get("/nope") + get("/scrape?info_hash=x")}, status: []int{200, 404, 200},
			check: func(t *testing.T, res []*http.Response, bodies []string) {
				if bodies[0] != testAnnounce || bodies[1] != string(notFound) || bodies[2] != "/scrape?info_hash=x" {
					t.Errorf("bodies out of order: %q", bodies)
				}
			}},
		{name: "connection close", send: []string{get(testAnnounce, "Connection: close\r\n")}, status: []int{200}, close: true,
			check: func(t *testing.T, res []*http.Response, _ []string) {
				if !res[0].Close {
					t.Error("no Connection: close in the reply")
				}
			}},
		{name: "close token among others", send: []string{get(testAnnounce, "Connection: TE, Close\r\n")}, status: []int{200}, close: true},
		{name: "pipelined after close not answered", send: []string{get(testAnnounce, "Connection: close\r\n") + get(testAnnounce)}, status: []int{200}, close: true},
		{name: "HTTP/1.0 closes", send: []string{"GET " + testAnnounce + " HTTP/1.0\r\n\r\n"}, status: []int{200}, close: true},
		{name: "HTTP/1.0 keep-alive", send: []string{"GET " + testAnnounce + " HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"}, status: []int{200},
			check: func(t *testing.T, res []*http.Response, _ []string) {
				if res[0].Close || !strings.EqualFold(res[0].Header.Get("Connection"), "keep-alive") {
					t.Errorf("Connection %q", res[0].Header.Get("Connection"))
				}
			}},
		{name: "in pieces", send: splitEvery(get(testAnnounce), 7), status: []int{200}},
		{name: "CR and LF split", send: []string{"GET " + testAnnounce + " HTTP/1.1\r\nHost: x\r", "\n\r", "\n"}, status: []int{200}},
		{name: "bare LF", send: []string{"GET " + testAnnounce + " HTTP/1.1\nHost: x\n\n"}, status: []int{200}},
		{name: "empty lines before", send: []string{"\r\n\r\n" + get(testAnnounce)}, status: []int{200}},
		{name: "eight empty lines before", send: []string{strings.Repeat("\r\n", 7) + "\n" + get(testAnnounce)}, status: []int{200}},
		{name: "nine empty lines", send: []string{strings.Repeat("\r\n", 9)}, status: []int{400}, close: true},
		{name: "empty lines in pieces", send: []string{"\r\n\r", "\n", get(testAnnounce)}, status: []int{200}},
		{name: "empty line after a request, then another", send: []string{get(testAnnounce) + "\r\n", get(testAnnounce)}, status: []int{200, 200}},
		{name: "absolute form", send: []string{"GET http://tracker:6969" + testAnnounce + " HTTP/1.1\r\nHost: tracker:6969\r\n\r\n"}, status: []int{200}},
		{name: "escaped path", send: []string{get(strings.Replace(testAnnounce, "/announce", "/%61nnounce", 1))}, status: []int{200},
			check: func(t *testing.T, _ []*http.Response, bodies []string) {
				if bodies[0] != testAnnounce {
					t.Errorf("body %q: path not decoded", bodies[0])
				}
			}},
		{name: "later minor version", send: []string{"GET " + testAnnounce + " HTTP/1.7\r\nHost: x\r\n\r\n"}, status: []int{200}},
		{name: "not found", send: []string{get("/index.html")}, status: []int{404}},
		{name: "long query reaches the handler", send: []string{get(testAnnounce + "&pad=" + strings.Repeat("p", 1100))}, status: []int{200},
			check: func(t *testing.T, _ []*http.Response, bodies []string) {
				if bodies[0] != testAnnounce+"&pad="+strings.Repeat("p", 1100) {
					t.Errorf("body %q", bodies[0])
				}
			}},
		{name: "head too large", send: []string{get(testAnnounce, bigHeader)}, status: []int{431}, close: true},
		{name: "head too large, no end", send: []string{"GET /" + strings.Repeat("a", 3000)}, status: []int{431}, close: true},
		{name: "malformed request line", send: []string{"HELLO\r\n\r\n"}, status: []int{400}, close: true},
		{name: "space before colon", send: []string{get(testAnnounce, "Bad : x\r\n")}, status: []int{400}, close: true},
		{name: "folding", send: []string{get(testAnnounce, "X-A: a\r\n b\r\n")}, status: []int{400}, close: true},
		{name: "control character", send: []string{get(testAnnounce, "X-A: a\x01b\r\n")}, status: []int{400}, close: true},
		{name: "no Host", send: []string{"GET " + testAnnounce + " HTTP/1.1\r\n\r\n"}, status: []int{400}, close: true},
		{name: "two Hosts", send: []string{get(testAnnounce, "Host: y\r\n")}, status: []int{400}, close: true},
		{name: "HTTP/2", send: []string{"GET " + testAnnounce + " HTTP/2.0\r\nHost: x\r\n\r\n"}, status: []int{505}, close: true},
		{name: "POST", send: []string{"POST /announce HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"}, status: []int{400}, close: true},
		{name: "POST without body", send: []string{"POST " + testAnnounce + " HTTP/1.1\r\nHost: x\r\n\r\n"}, status: []int{405}, close: true,
			check: func(t *testing.T, res []*http.Response, _ []string) {
				if res[0].Header.Get("Allow") != "GET" {
					t.Errorf("Allow %q", res[0].Header.Get("Allow"))
				}
			}},
		{name: "body", send: []string{get(testAnnounce, "Content-Length: 4\r\n") + "abcd"}, status: []int{400}, close: true},
		{name: "empty body is fine", send: []string{get(testAnnounce, "Content-Length: 0\r\n")}, status: []int{200}},
		{name: "chunked body", send: []string{get(testAnnounce, "Transfer-Encoding: chunked\r\n") + "0\r\n\r\n"}, status: []int{400}, close: true},
		{name: "conflicting lengths", send: []string{get(testAnnounce, "Content-Length: 0\r\nContent-Length: 1\r\n")}, status: []int{400}, close: true},
		{name: "bad target", send: []string{"GET /announce?a\x01b HTTP/1.1\r\nHost: x\r\n\r\n"}, status: []int{400}, close: true},
	}
	forEachBackend(t, func(t *testing.T, listen listenFunc) {
		s := startServer(t, listen, testHandler(), Options{MaxHeaderBytes: 2000})
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := dial(t, s)
				for i, chunk := range tt.send {
					if i > 0 {
						time.Sleep(20 * time.Millisecond)
					}
					if _, err := io.WriteString(c, chunk); err != nil {
						t.Fatal(err)
					}
				}
				wait := 300 * time.Millisecond
				if tt.close {
					wait = 5 * time.Second
				}
				res, bodies, closed := readAll(t, c, wait)
				var got []int
				for _, r := range res {
					got = append(got, r.StatusCode)
					if r.ContentLength < 0 {
						t.Errorf("reply %d without Content-Length", r.StatusCode)
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(tt.status) {
					t.Fatalf("statuses %v, want %v (bodies %q)", got, tt.status, bodies)
				}
				if closed != tt.close {
					t.Errorf("connection closed: %v, want %v", closed, tt.close)
				}
				if tt.check != nil {
					tt.check(t, res, bodies)
				}
			})
		}
	})
}

func splitEvery(s string, n int) []string {
	var parts []string
	for len(s) > n {
		parts = append(parts, s[:n])
		s = s[n:]
	}
	return append(parts, s)
}

// TestServerKeepsAliveWithNetHTTP: net/http's client reuses a connection.
func TestServerKeepsAliveWithNetHTTP(t *testing.T) {
	forEachBackend(t, func(t *testing.T, listen listenFunc) {
		s := startServer(t, listen, testHandler(), Options{})
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr}
		conns := map[string]bool{}
		var mu sync.Mutex
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				mu.Lock()
				conns[c.LocalAddr().String()] = true
				mu.Unlock()
			}
			return c, err
		}
		for range 5 {
			res, err := client.Get("http://" + s.Addr().String() + testAnnounce)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("status %d", res.StatusCode)
			}
		}
		if len(conns) != 1 {
			t.Errorf("%d connections for 5 requests, want 1", len(conns))
		}
	})
}

// sharedBodyHandler answers /big with body, a shared (Response.Shared)
// body, and anything else as echoHandler does.
func sharedBodyHandler(body []byte) Handler {
	return HandlerFunc(func(ctx context.Context, w *Response, r *Request) {
		if r.Path != "/big" {
			echoHandler(ctx, w, r)
			return
		}
		w.Body, w.Shared = body, true
	})
}

// randomBody returns n bytes that do not compress.
func randomBody(n int) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// TestServerSlowloris: a client that sends its head a byte at a time is
// cut once the read-header timeout has passed since it began, however
// steadily it sends; so is one that connects and sends nothing.
func TestServerSlowloris(t *testing.T) {
	forEachBackend(t, func(t *testing.T, listen listenFunc) {
		const rht = 300 * time.Millisecond
		s := startServer(t, listen, testHandler(), Options{ReadHeaderTimeout: rht})
		t.Run("dripping", func(t *testing.T) {
			c := dial(t, s)
			start := time.Now()
			req := get(testAnnounce)
			var err error
			for i := 0; err == nil && i < len(req)-1 && time.Since(start) < 5*time.Second; i++ {
				_, err = c.Write([]byte{req[i]})
				time.Sleep(20 * time.Millisecond)
			}
			_, _, closed := readAll(t, c, 5*time.Second)
			if d := time.Since(start); !closed || d > 3*time.Second {
				t.Errorf("closed %v after %v", closed, d)
			}
		})
		t.Run("silent", func(t *testing.T) {
			c := dial(t, s)
			start := time.Now()
			_, _, closed := readAll(t, c, 5*time.Second)
			if d := time.Since(start); !closed || d < rht/2 {
				t.Errorf("closed %v after %v", closed, d)
			}
		})
		t.Run("slow, but in time", func(t *testing.T) {
			c := dial(t, s)
			for _, part := range splitEvery(get(testAnnounce), 50) {
				io.WriteString(c, part)
				time.Sleep(rht / 20)
			}
			res, _, _ := readAll(t, c, time.Second)
			if len(res) != 1 || res[0].StatusCode != 200 {
				t.Errorf("replies %v", res)
			}
		})
		t.Run("two slow requests, the second begun with the first's end", func(t *testing.T) {
			// Each takes 2/3 of the timeout: the second's clock starts
			// with its own first bytes.
			c := dial(t, s)
			req := get(testAnnounce)
			both := req + req
			cut := []int{0, len(req) / 2, len(req) + 10, len(req) + len(req)/2, len(both)}
			for i := 1; i < len(cut); i++ {
				io.WriteString(c, both[cut[i-1]:cut[i]])
				time.Sleep(rht / 3)
			}
			res, _, _ := readAll(t, c, time.Second)
			if len(res) != 2 {
				t.Errorf("%d replies, want 2", len(res))
			}
		})
	})
}

// TestServerIdleTimeout: a keep-alive connection idle for IdleTimeout is
// closed; one that keeps asking stays open.
func TestServerIdleTimeout(t *testing.T) {
	forEachBackend(t, func(t *testing.T, listen listenFunc) {
		const idle = 300 * time.Millisecond
		s := startServer(t, listen, testHandler(), Options{IdleTimeout: idle})
		c := dial(t, s)
		br := bufio.NewReader(c)
		for range 4 {
			io.WriteString(c, get(testAnnounce))
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			time.Sleep(idle / 3)
		}
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := br.ReadByte(); err == nil {
			t.Fatal("data on an idle connection")
		}
		if d := time.Since(start); d < idle/2 || d > 3*time.Second {
			t.Errorf("idle connection closed after %v, want about %v", d, idle)
		}
	})
}

// dialSmallWindow connects with a small receive buffer, so that a large
// reply does not fit in the socket buffers.
func dialSmallWindow(t *testing.T, s *Server) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { setRcvBuf(fd, 4096) })
	}}
	c, err := d.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestServerBigReplySlowReader: a shared body (Response.Shared, written
// from where it is) far larger than the socket buffers reaches a client
// that reads it slowly, whole; a client that does not read is dropped
// after WriteTimeout; and the connection carries on with pipelined
// requests after a big reply.
func TestServerBigReplySlowReader(t *testing.T) {
	// Larger than the kernel's largest send buffer (tcp_wmem, 4 MiB by
	// default) and the client's receive buffer together.
	want := randomBody(7 << 20)
	h := sharedBodyHandler(want)
	forEachBackend(t, func(t *testing.T, listen listenFunc) {
		const wt = 400 * time.Millisecond
		s := startServer(t, listen, h, Options{WriteTimeout: wt})
		t.Run("slow reader", func(t *testing.T) {
			s := startServer(t, listen, h, Options{WriteTimeout: 20 * time.Second})
			c := dialSmallWindow(t, s)
			c.SetDeadline(time.Now().Add(30 * time.Second))
			io.WriteString(c, get("/big")+get(testAnnounce))
			br := bufio.NewReaderSize(&slowReader{r: c}, 4096)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatalf("after %d bytes: %v", len(body), err)
			}
			if !bytes.Equal(body, want) {
				t.Fatalf("body of %d bytes, want %d", len(body), len(want))
			}
			res, err = http.ReadResponse(br, nil)
			if err != nil || res.StatusCode != 200 {
				t.Fatalf("pipelined request after the big reply: %v", err)
			}
		})
		t.Run("non-reader dropped", func(t *testing.T) {
			c := dialSmallWindow(t, s)
			io.WriteString(c, get("/big"))
			time.Sleep(wt + 700*time.Millisecond)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := io.Copy(io.Discard, c)
			if err == nil && n > int64(len(want)) {
				t.Fatalf("read %d bytes and the whole reply", n)
			}
			if n >= int64(len(want)) {
				t.Errorf("read %d bytes of a %d-byte reply though it was dropped", n, len(want))
			}
		})
	})
}

// slowReader reads at most 8 KiB at a time, pausing now and then.
type slowReader struct {
	r io.Reader
	n int
}

func (s *slowReader) Read(p []byte) (int, error) {
	if s.n++; s.n%16 == 0 {
		time.Sleep(time.Millisecond)
	}
	return s.r.Read(p[:min(len(p), 8<<10)])
}

// TestServerMaxConns: at MaxConns, with no connection idle (each holds
// the start of a request), a new connection waits (unserved) until one
// closes.
func TestServerMaxConns(t *testing.T) {
	forEachBackend(t, func(t *testing.T, listen listenFunc) {
		s := startServer(t, listen, testHandler(), Options{MaxConns: 2})
		var held []net.Conn
		for range 2 {
			c := dial(t, s)
			io.WriteString(c, get(testAnnounce)+"GET /ann")
			if res, _, _ := readAll(t, c, 300*time.Millisecond); len(res) != 1 {
				t.Fatalf("%d replies", len(res))
			}
			held = append(held, c)
		}
		third := dial(t, s)
		io.WriteString(third, get(testAnnounce))
		if res, _, _ := readAll(t, third, 300*time.Millisecond); len(res) != 0 {
			t.Fatal("third connection served while the cap of 2 was reached")
		}
		held[0].Close()
		if res, _, _ := readAll(t, third, 5*time.Second); len(res) != 1 {
			t.Fatal("third connection not served after one closed")
		}
	})
}

// TestServerShutdown: Shutdown closes idle connections at once, lets a
// request in flight finish (its reply says Connection: close), then
// returns, with the port closed.
func TestServerShutdown(t *testing.T) {
	forEachBackend(t, func(t *testing.T, listen listenFunc) {
		s := startServer(t, listen, testHandler(), Options{})
		idle := dial(t, s)
		io.WriteString(idle, get(testAnnounce))
		if res, _, _ := readAll(t, idle, 300*time.Millisecond); len(res) != 1 {
			t.Fatal("no reply")
		}
		busy := dial(t, s)
		req := get(testAnnounce)
		io.WriteString(busy, req[:20])
		time.Sleep(50 * time.Millisecond)

		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			done <- s.Shutdown(ctx)
		}()
		if _, _, closed := readAll(t, idle, 2*time.Second); !closed {
			t.Error("idle connection not closed by Shutdown")
		}
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned (%v) with a request in flight", err)
		case <-time.After(100 * time.Millisecond):
		}
		io.WriteString(busy, req[20:])
		res, _, closed := readAll(t, busy, 2*time.Second)
		if len(res) != 1 || res[0].StatusCode != 200 || !res[0].Close || !closed {
			t.Errorf("request in flight: %d replies, closed %v", len(res), closed)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Shutdown did not return")
		}
		if c, err := net.DialTimeout("tcp", s.Addr().String(), time.Second); err == nil {
			c.Close()
			t.Error("still listening after Shutdown")
		}
		if err, ok := <-s.Err(); ok {
			t.Errorf("Err after Shutdown: %v, want closed", err)
		}
	})
}

// TestServerShutdownDeadline: when ctx ends first, Shutdown closes what is
// left and returns ctx's error.
func TestServerShutdownDeadline(t *testing.T) {
	forEachBackend(t, func(t *testing.T, listen listenFunc) {
		s := startServer(t, listen, testHandler(), Options{})
		c := dial(t, s)
		io.WriteString(c, "GET /announce")
		time.Sleep(50 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown: %v, want the deadline", err)
		}
		if _, _, closed := readAll(t, c, 2*time.Second); !closed {
			t.Error("connection left open")
		}
	})
}

// TestServerGoroutinePerConnBlockingHandler: with GoroutinePerConn, a
// request waiting in the Handler (on a store across the network) holds
// up no other connection.
func TestServerGoroutinePerConnBlockingHandler(t *testing.T) {
	entered, gate := make(chan struct{}, 1), make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, w *Response, r *Request) {
		if r.Path == "/announce" {
			entered <- struct{}{}
			<-gate
		}
		echoHandler(ctx, w, r)
	})
	s := startServer(t, Listen, h, Options{GoroutinePerConn: true, Loops: 1})
	blocked := dial(t, s)
	io.WriteString(blocked, get(testAnnounce, "Connection: close\r\n"))
	<-entered
	other := dial(t, s)
	io.WriteString(other, get("/scrape?info_hash=x", "Connection: close\r\n"))
	if res, _, _ := readAll(t, other, 2*time.Second); len(res) != 1 {
		t.Errorf("%d replies while another connection waits in the handler", len(res))
	}
	close(gate)
	if res, _, _ := readAll(t, blocked, 2*time.Second); len(res) != 1 {
		t.Errorf("%d replies once the handler answers", len(res))
	}
}
