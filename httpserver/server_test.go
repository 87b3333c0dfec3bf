package httpserver_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"trackd/httpserver"
	"trackd/httpserver/httpservertest"
)

// The tests that serve over sockets are in package httpserver_test, as a
// user's would be, so that they can use httpservertest (which imports
// httpserver: a test inside the package could not); those of the parser
// and responder, which reach inside, are in package httpserver.

// testAnnounce is the target most tests ask for: an announce, as a
// tracker gets it.
const testAnnounce = "/announce?info_hash=%01%02server+test&peer_id=peer&port=6881&uploaded=0&downloaded=0&left=0&compact=1"

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
		{name: "keep-alive", send: []string{httpservertest.Get(testAnnounce)}, status: []int{200}, check: func(t *testing.T, res []*http.Response, bodies []string) {
			r := res[0]
			if r.ContentLength != int64(len(bodies[0])) || r.Header.Get("Content-Type") != "text/plain" || r.Header.Get("Date") == "" || r.Close {
				t.Errorf("reply header %v, length %d", r.Header, r.ContentLength)
			}
			if bodies[0] != testAnnounce {
				t.Errorf("body %q", bodies[0])
			}
		}},
		{name: "two in turn", send: []string{httpservertest.Get(testAnnounce), httpservertest.Get("/scrape?info_hash=x")}, status: []int{200, 200}},
		{name: "pipelined, in order", send: []string{httpservertest.Get(testAnnounce) + httpservertest.Get("/nope") + httpservertest.Get("/scrape?info_hash=x")}, status: []int{200, 404, 200},
			check: func(t *testing.T, res []*http.Response, bodies []string) {
				if bodies[0] != testAnnounce || bodies[1] != "404 page not found\n" || bodies[2] != "/scrape?info_hash=x" {
					t.Errorf("bodies out of order: %q", bodies)
				}
			}},
		{name: "connection close", send: []string{httpservertest.Get(testAnnounce, "Connection: close\r\n")}, status: []int{200}, close: true,
			check: func(t *testing.T, res []*http.Response, _ []string) {
				if !res[0].Close {
					t.Error("no Connection: close in the reply")
				}
			}},
		{name: "close token among others", send: []string{httpservertest.Get(testAnnounce, "Connection: TE, Close\r\n")}, status: []int{200}, close: true},
		{name: "pipelined after close not answered", send: []string{httpservertest.Get(testAnnounce, "Connection: close\r\n") + httpservertest.Get(testAnnounce)}, status: []int{200}, close: true},
		{name: "HTTP/1.0 closes", send: []string{"GET " + testAnnounce + " HTTP/1.0\r\n\r\n"}, status: []int{200}, close: true},
		{name: "HTTP/1.0 keep-alive", send: []string{"GET " + testAnnounce + " HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"}, status: []int{200},
			check: func(t *testing.T, res []*http.Response, _ []string) {
				if res[0].Close || !strings.EqualFold(res[0].Header.Get("Connection"), "keep-alive") {
					t.Errorf("Connection %q", res[0].Header.Get("Connection"))
				}
			}},
		{name: "in pieces", send: splitEvery(httpservertest.Get(testAnnounce), 7), status: []int{200}},
		{name: "CR and LF split", send: []string{"GET " + testAnnounce + " HTTP/1.1\r\nHost: x\r", "\n\r", "\n"}, status: []int{200}},
		{name: "bare LF", send: []string{"GET " + testAnnounce + " HTTP/1.1\nHost: x\n\n"}, status: []int{200}},
		{name: "empty lines before", send: []string{"\r\n\r\n" + httpservertest.Get(testAnnounce)}, status: []int{200}},
		{name: "eight empty lines before", send: []string{strings.Repeat("\r\n", 7) + "\n" + httpservertest.Get(testAnnounce)}, status: []int{200}},
		{name: "nine empty lines", send: []string{strings.Repeat("\r\n", 9)}, status: []int{400}, close: true},
		{name: "empty lines in pieces", send: []string{"\r\n\r", "\n", httpservertest.Get(testAnnounce)}, status: []int{200}},
		{name: "empty line after a request, then another", send: []string{httpservertest.Get(testAnnounce) + "\r\n", httpservertest.Get(testAnnounce)}, status: []int{200, 200}},
		{name: "absolute form", send: []string{"GET http://tracker:6969" + testAnnounce + " HTTP/1.1\r\nHost: tracker:6969\r\n\r\n"}, status: []int{200}},
		{name: "escaped path", send: []string{httpservertest.Get(strings.Replace(testAnnounce, "/announce", "/%61nnounce", 1))}, status: []int{200},
			check: func(t *testing.T, _ []*http.Response, bodies []string) {
				if bodies[0] != testAnnounce {
					t.Errorf("body %q: path not decoded", bodies[0])
				}
			}},
		{name: "later minor version", send: []string{"GET " + testAnnounce + " HTTP/1.7\r\nHost: x\r\n\r\n"}, status: []int{200}},
		{name: "not found", send: []string{httpservertest.Get("/index.html")}, status: []int{404}},
		{name: "long query reaches the handler", send: []string{httpservertest.Get(testAnnounce + "&pad=" + strings.Repeat("p", 1100))}, status: []int{200},
			check: func(t *testing.T, _ []*http.Response, bodies []string) {
				if bodies[0] != testAnnounce+"&pad="+strings.Repeat("p", 1100) {
					t.Errorf("body %q", bodies[0])
				}
			}},
		{name: "head too large", send: []string{httpservertest.Get(testAnnounce, bigHeader)}, status: []int{431}, close: true},
		{name: "head too large, no end", send: []string{"GET /" + strings.Repeat("a", 3000)}, status: []int{431}, close: true},
		{name: "malformed request line", send: []string{"HELLO\r\n\r\n"}, status: []int{400}, close: true},
		{name: "space before colon", send: []string{httpservertest.Get(testAnnounce, "Bad : x\r\n")}, status: []int{400}, close: true},
		{name: "folding", send: []string{httpservertest.Get(testAnnounce, "X-A: a\r\n b\r\n")}, status: []int{400}, close: true},
		{name: "control character", send: []string{httpservertest.Get(testAnnounce, "X-A: a\x01b\r\n")}, status: []int{400}, close: true},
		{name: "no Host", send: []string{"GET " + testAnnounce + " HTTP/1.1\r\n\r\n"}, status: []int{400}, close: true},
		{name: "two Hosts", send: []string{httpservertest.Get(testAnnounce, "Host: y\r\n")}, status: []int{400}, close: true},
		{name: "HTTP/2", send: []string{"GET " + testAnnounce + " HTTP/2.0\r\nHost: x\r\n\r\n"}, status: []int{505}, close: true},
		{name: "POST", send: []string{"POST /announce HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"}, status: []int{400}, close: true},
		{name: "POST without body", send: []string{"POST " + testAnnounce + " HTTP/1.1\r\nHost: x\r\n\r\n"}, status: []int{405}, close: true,
			check: func(t *testing.T, res []*http.Response, _ []string) {
				if res[0].Header.Get("Allow") != "GET" {
					t.Errorf("Allow %q", res[0].Header.Get("Allow"))
				}
			}},
		{name: "body", send: []string{httpservertest.Get(testAnnounce, "Content-Length: 4\r\n") + "abcd"}, status: []int{400}, close: true},
		{name: "empty body is fine", send: []string{httpservertest.Get(testAnnounce, "Content-Length: 0\r\n")}, status: []int{200}},
		{name: "chunked body", send: []string{httpservertest.Get(testAnnounce, "Transfer-Encoding: chunked\r\n") + "0\r\n\r\n"}, status: []int{400}, close: true},
		{name: "conflicting lengths", send: []string{httpservertest.Get(testAnnounce, "Content-Length: 0\r\nContent-Length: 1\r\n")}, status: []int{400}, close: true},
		{name: "bad target", send: []string{"GET /announce?a\x01b HTTP/1.1\r\nHost: x\r\n\r\n"}, status: []int{400}, close: true},
	}
	httpservertest.ForEach(t, func(t *testing.T, listen httpservertest.ListenFunc) {
		s := httpservertest.Start(t, listen, httpserver.EchoHandler, httpserver.Options{MaxHeaderBytes: 2000})
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := httpservertest.Dial(t, s.Addr())
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
				res, bodies, closed := httpservertest.ReadAll(t, c, wait)
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
	httpservertest.ForEach(t, func(t *testing.T, listen httpservertest.ListenFunc) {
		s := httpservertest.Start(t, listen, httpserver.EchoHandler, httpserver.Options{})
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
// body, and anything else as EchoHandler does.
func sharedBodyHandler(body []byte) httpserver.Handler {
	return httpserver.HandlerFunc(func(ctx context.Context, w *httpserver.Response, r *httpserver.Request) {
		if r.Path != "/big" {
			httpserver.EchoHandler(ctx, w, r)
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
	httpservertest.ForEach(t, func(t *testing.T, listen httpservertest.ListenFunc) {
		const rht = 300 * time.Millisecond
		s := httpservertest.Start(t, listen, httpserver.EchoHandler, httpserver.Options{ReadHeaderTimeout: rht})
		t.Run("dripping", func(t *testing.T) {
			c := httpservertest.Dial(t, s.Addr())
			start := time.Now()
			req := httpservertest.Get(testAnnounce)
			var err error
			for i := 0; err == nil && i < len(req)-1 && time.Since(start) < 5*time.Second; i++ {
				_, err = c.Write([]byte{req[i]})
				time.Sleep(20 * time.Millisecond)
			}
			_, _, closed := httpservertest.ReadAll(t, c, 5*time.Second)
			if d := time.Since(start); !closed || d > 3*time.Second {
				t.Errorf("closed %v after %v", closed, d)
			}
		})
		t.Run("silent", func(t *testing.T) {
			c := httpservertest.Dial(t, s.Addr())
			start := time.Now()
			_, _, closed := httpservertest.ReadAll(t, c, 5*time.Second)
			if d := time.Since(start); !closed || d < rht/2 {
				t.Errorf("closed %v after %v", closed, d)
			}
		})
		t.Run("slow, but in time", func(t *testing.T) {
			c := httpservertest.Dial(t, s.Addr())
			for _, part := range splitEvery(httpservertest.Get(testAnnounce), 50) {
				io.WriteString(c, part)
				time.Sleep(rht / 20)
			}
			res, _, _ := httpservertest.ReadAll(t, c, time.Second)
			if len(res) != 1 || res[0].StatusCode != 200 {
				t.Errorf("replies %v", res)
			}
		})
		t.Run("two slow requests, the second begun with the first's end", func(t *testing.T) {
			// Each takes 2/3 of the timeout: the second's clock starts
			// with its own first bytes.
			c := httpservertest.Dial(t, s.Addr())
			req := httpservertest.Get(testAnnounce)
			both := req + req
			cut := []int{0, len(req) / 2, len(req) + 10, len(req) + len(req)/2, len(both)}
			for i := 1; i < len(cut); i++ {
				io.WriteString(c, both[cut[i-1]:cut[i]])
				time.Sleep(rht / 3)
			}
			res, _, _ := httpservertest.ReadAll(t, c, time.Second)
			if len(res) != 2 {
				t.Errorf("%d replies, want 2", len(res))
			}
		})
	})
}

// TestServerIdleTimeout: a keep-alive connection idle for IdleTimeout is
// closed; one that keeps asking stays open.
func TestServerIdleTimeout(t *testing.T) {
	httpservertest.ForEach(t, func(t *testing.T, listen httpservertest.ListenFunc) {
		// Long enough that a request every idle/3 keeps the connection
		// even when the machine delays the test's sleeps by a few hundred
		// milliseconds (at 300 ms it lost the race under load).
		const idle = time.Second
		s := httpservertest.Start(t, listen, httpserver.EchoHandler, httpserver.Options{IdleTimeout: idle})
		c := httpservertest.Dial(t, s.Addr())
		br := bufio.NewReader(c)
		for range 4 {
			io.WriteString(c, httpservertest.Get(testAnnounce))
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
		if d := time.Since(start); d < idle/2 || d > idle+3*time.Second {
			t.Errorf("idle connection closed after %v, want about %v", d, idle)
		}
	})
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
	httpservertest.ForEach(t, func(t *testing.T, listen httpservertest.ListenFunc) {
		httpservertest.CheckBigReply(t, listen, h, httpservertest.Get("/big"), want, testAnnounce)
	})
}

// TestServerMaxConns: at MaxConns, with no connection idle (each holds
// the start of a request), a new connection waits (unserved) until one
// closes.
func TestServerMaxConns(t *testing.T) {
	httpservertest.ForEach(t, func(t *testing.T, listen httpservertest.ListenFunc) {
		s := httpservertest.Start(t, listen, httpserver.EchoHandler, httpserver.Options{MaxConns: 2})
		var held []net.Conn
		for range 2 {
			c := httpservertest.Dial(t, s.Addr())
			io.WriteString(c, httpservertest.Get(testAnnounce)+"GET /ann")
			if res, _, _ := httpservertest.ReadAll(t, c, 300*time.Millisecond); len(res) != 1 {
				t.Fatalf("%d replies", len(res))
			}
			held = append(held, c)
		}
		third := httpservertest.Dial(t, s.Addr())
		io.WriteString(third, httpservertest.Get(testAnnounce))
		if res, _, _ := httpservertest.ReadAll(t, third, 300*time.Millisecond); len(res) != 0 {
			t.Fatal("third connection served while the cap of 2 was reached")
		}
		held[0].Close()
		if res, _, _ := httpservertest.ReadAll(t, third, 5*time.Second); len(res) != 1 {
			t.Fatal("third connection not served after one closed")
		}
	})
}

// TestServerShutdown: Shutdown closes idle connections at once, lets a
// request in flight finish (its reply says Connection: close), then
// returns, with the port closed.
func TestServerShutdown(t *testing.T) {
	httpservertest.ForEach(t, func(t *testing.T, listen httpservertest.ListenFunc) {
		s := httpservertest.Start(t, listen, httpserver.EchoHandler, httpserver.Options{})
		idle := httpservertest.Dial(t, s.Addr())
		io.WriteString(idle, httpservertest.Get(testAnnounce))
		if res, _, _ := httpservertest.ReadAll(t, idle, 300*time.Millisecond); len(res) != 1 {
			t.Fatal("no reply")
		}
		busy := httpservertest.Dial(t, s.Addr())
		req := httpservertest.Get(testAnnounce)
		io.WriteString(busy, req[:20])
		time.Sleep(50 * time.Millisecond)

		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			done <- s.Shutdown(ctx)
		}()
		if _, _, closed := httpservertest.ReadAll(t, idle, 2*time.Second); !closed {
			t.Error("idle connection not closed by Shutdown")
		}
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned (%v) with a request in flight", err)
		case <-time.After(100 * time.Millisecond):
		}
		io.WriteString(busy, req[20:])
		res, _, closed := httpservertest.ReadAll(t, busy, 2*time.Second)
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
	httpservertest.ForEach(t, func(t *testing.T, listen httpservertest.ListenFunc) {
		s := httpservertest.Start(t, listen, httpserver.EchoHandler, httpserver.Options{})
		c := httpservertest.Dial(t, s.Addr())
		io.WriteString(c, "GET /announce")
		time.Sleep(50 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown: %v, want the deadline", err)
		}
		if _, _, closed := httpservertest.ReadAll(t, c, 2*time.Second); !closed {
			t.Error("connection left open")
		}
	})
}

// TestServerGoroutinePerConnBlockingHandler: with GoroutinePerConn, a
// request waiting in the Handler (on a store across the network) holds
// up no other connection.
func TestServerGoroutinePerConnBlockingHandler(t *testing.T) {
	entered, gate := make(chan struct{}, 1), make(chan struct{})
	h := httpserver.HandlerFunc(func(ctx context.Context, w *httpserver.Response, r *httpserver.Request) {
		if r.Path == "/announce" {
			entered <- struct{}{}
			<-gate
		}
		httpserver.EchoHandler(ctx, w, r)
	})
	s := httpservertest.Start(t, httpserver.Listen, h, httpserver.Options{GoroutinePerConn: true, Loops: 1})
	blocked := httpservertest.Dial(t, s.Addr())
	io.WriteString(blocked, httpservertest.Get(testAnnounce, "Connection: close\r\n"))
	<-entered
	other := httpservertest.Dial(t, s.Addr())
	io.WriteString(other, httpservertest.Get("/scrape?info_hash=x", "Connection: close\r\n"))
	if res, _, _ := httpservertest.ReadAll(t, other, 2*time.Second); len(res) != 1 {
		t.Errorf("%d replies while another connection waits in the handler", len(res))
	}
	close(gate)
	if res, _, _ := httpservertest.ReadAll(t, blocked, 2*time.Second); len(res) != 1 {
		t.Errorf("%d replies once the handler answers", len(res))
	}
}
