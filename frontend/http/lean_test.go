package http

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"trackd/bencode"
	"trackd/httpserver"
	"trackd/httpserver/httpservertest"
	"trackd/store"
	"trackd/store/memory"
	"trackd/tracker"
)

// These tests serve the Handler through httpserver's lean server, as
// trackd does for plain HTTP: the tracker's answers over real
// connections, on both kinds of Server (httpservertest runs them). The
// server itself is tested in package httpserver.

// testHandler is a Handler over an in-memory store.
func testHandler(t testing.TB, opts Options) *Handler {
	t.Helper()
	s := memory.New(store.Options{PeerLifetime: time.Hour})
	t.Cleanup(func() { s.Close() })
	h := NewHandler(tracker.New(tracker.Config{}, s), opts)
	t.Cleanup(func() { h.Close() })
	return h
}

var testAnnounce = announceURL(hash20("server test"), hash20("peer"), "6881", "0&compact=1")

// TestLeanServer sends tracker requests to the lean server over a real
// connection and checks the tracker's replies as they reach the client:
// bencoded bodies, statuses, pipelined replies in order, the full scrape
// gzipped with its headers.
func TestLeanServer(t *testing.T) {
	tests := []struct {
		name   string
		send   string
		status []int // the replies, in order
		check  func(t *testing.T, res []*http.Response, bodies []string)
	}{
		{name: "keep-alive", send: httpservertest.Get(testAnnounce), status: []int{200}, check: func(t *testing.T, res []*http.Response, bodies []string) {
			r := res[0]
			if r.ContentLength != int64(len(bodies[0])) || r.Header.Get("Content-Type") != "text/plain" || r.Header.Get("Date") == "" || r.Close {
				t.Errorf("reply header %v, length %d", r.Header, r.ContentLength)
			}
			if _, err := bencode.Decode([]byte(bodies[0])); err != nil || !strings.HasPrefix(bodies[0], "d8:complete") {
				t.Errorf("body %q", bodies[0])
			}
		}},
		{name: "pipelined, in order", send: httpservertest.Get(testAnnounce) + httpservertest.Get("/nope") + httpservertest.Get("/scrape?info_hash="+esc(hash20("x"))), status: []int{200, 404, 200},
			check: func(t *testing.T, res []*http.Response, bodies []string) {
				if !strings.HasPrefix(bodies[0], "d8:complete") || bodies[1] != "404 page not found\n" || !strings.HasPrefix(bodies[2], "d5:files") {
					t.Errorf("bodies out of order: %q", bodies)
				}
			}},
		{name: "escaped path", send: httpservertest.Get(strings.Replace(testAnnounce, "/announce", "/%61nnounce", 1)), status: []int{200},
			check: func(t *testing.T, _ []*http.Response, bodies []string) {
				if !strings.HasPrefix(bodies[0], "d8:complete") {
					t.Errorf("body %q", bodies[0])
				}
			}},
		{name: "query too long", send: httpservertest.Get(testAnnounce + "&pad=" + strings.Repeat("p", 1100)), status: []int{200},
			check: func(t *testing.T, _ []*http.Response, bodies []string) {
				if !strings.Contains(bodies[0], "query too long") {
					t.Errorf("body %q", bodies[0])
				}
			}},
		{name: "full scrape, gzip", send: httpservertest.Get("/scrape", "Accept-Encoding: x, gzip\r\n"), status: []int{200},
			check: func(t *testing.T, res []*http.Response, _ []string) {
				if res[0].Header.Get("Content-Encoding") != "gzip" || res[0].Header.Get("Vary") != "Accept-Encoding" {
					t.Errorf("reply header %v", res[0].Header)
				}
			}},
		{name: "full scrape, plain", send: httpservertest.Get("/scrape"), status: []int{200},
			check: func(t *testing.T, res []*http.Response, bodies []string) {
				if res[0].Header.Get("Content-Encoding") != "" || res[0].Header.Get("Vary") != "Accept-Encoding" || !strings.HasPrefix(bodies[0], "d5:files") {
					t.Errorf("reply header %v, body %q", res[0].Header, bodies[0])
				}
			}},
	}
	httpservertest.ForEach(t, func(t *testing.T, listen httpservertest.ListenFunc) {
		h := testHandler(t, Options{MaxQueryBytes: 1000, FullScrape: true, FullScrapeInterval: time.Hour})
		waitFullScrape(t, h)
		s := httpservertest.Start(t, listen, h, httpserver.Options{MaxHeaderBytes: 2000})
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := httpservertest.Dial(t, s.Addr())
				if _, err := io.WriteString(c, tt.send); err != nil {
					t.Fatal(err)
				}
				res, bodies, _ := httpservertest.ReadAll(t, c, 300*time.Millisecond)
				var got []int
				for _, r := range res {
					got = append(got, r.StatusCode)
				}
				if fmt.Sprint(got) != fmt.Sprint(tt.status) {
					t.Fatalf("statuses %v, want %v (bodies %q)", got, tt.status, bodies)
				}
				if tt.check != nil {
					tt.check(t, res, bodies)
				}
			})
		}
	})
}

// newFullScrapeHandler returns a Handler whose full scrape is large: n
// torrents with random info hashes, which do not compress, and the
// gzipped body it sends.
func newFullScrapeHandler(t testing.TB, n int) (*Handler, []byte) {
	h := testHandler(t, Options{FullScrape: true, FullScrapeInterval: time.Hour})
	waitFullScrape(t, h) // the first build, of nothing, is not to replace this one
	b := syntheticBuild(t, n, 1)
	b.at = time.Now()
	h.full.last.Store(b)
	return h, b.gz
}

// TestServerBigReplySlowReader: a full scrape far larger than the socket
// buffers reaches a client that reads it slowly, whole; a client that does
// not read is dropped after WriteTimeout; and the connection carries on
// with pipelined requests after a big reply.
func TestServerBigReplySlowReader(t *testing.T) {
	// Larger than the kernel's largest send buffer (tcp_wmem, 4 MiB by
	// default) and the client's receive buffer together.
	h, want := newFullScrapeHandler(t, 300000)
	if len(want) < 6<<20 {
		t.Fatalf("full scrape of %d bytes, want a larger one", len(want))
	}
	httpservertest.ForEach(t, func(t *testing.T, listen httpservertest.ListenFunc) {
		httpservertest.CheckBigReply(t, listen, h, httpservertest.Get("/scrape", "Accept-Encoding: gzip\r\n"), want, testAnnounce)
	})
}

// TestServerGoroutinePerConnBlockingStore: with GoroutinePerConn, a
// request waiting on the store holds up no other connection.
func TestServerGoroutinePerConnBlockingStore(t *testing.T) {
	mem := memory.New(store.Options{PeerLifetime: time.Hour})
	defer mem.Close()
	g := &gatedStore{Store: mem, entered: make(chan struct{}, 1), gate: make(chan struct{})}
	h := NewHandler(tracker.New(tracker.Config{}, g), Options{})
	s := httpservertest.Start(t, httpserver.Listen, h, httpserver.Options{GoroutinePerConn: true, Loops: 1})
	blocked := httpservertest.Dial(t, s.Addr())
	io.WriteString(blocked, httpservertest.Get(testAnnounce, "Connection: close\r\n"))
	<-g.entered
	other := httpservertest.Dial(t, s.Addr())
	io.WriteString(other, httpservertest.Get("/scrape?info_hash="+esc(hash20("x")), "Connection: close\r\n"))
	if res, _, _ := httpservertest.ReadAll(t, other, 2*time.Second); len(res) != 1 {
		t.Errorf("%d replies while another connection waits on the store", len(res))
	}
	close(g.gate)
	if res, _, _ := httpservertest.ReadAll(t, blocked, 2*time.Second); len(res) != 1 {
		t.Errorf("%d replies once the store answers", len(res))
	}
}

const streamSize = 50 << 20

// TestServeHTTPStream: Handler.ServeHTTP (net/http) streams a
// body too, each chunk under its own write deadline, and closes it once.
func TestServeHTTPStream(t *testing.T) {
	const wt = 300 * time.Millisecond
	h := testHandler(t, Options{WriteTimeout: wt})
	var cur atomic.Pointer[httpservertest.Stream]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f := cur.Load()
			h.writeReply(w, r, reply{status: http.StatusOK, stream: f, length: f.N})
		}),
		WriteTimeout: wt, // from the request's start: the handler's deadlines replace it
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	t.Run("slow reader gets it whole", func(t *testing.T) {
		f := &httpservertest.Stream{N: streamSize}
		cur.Store(f)
		c := httpservertest.Dial(t, ln.Addr())
		c.SetDeadline(time.Now().Add(60 * time.Second))
		io.WriteString(c, httpservertest.Get("/scrape"))
		res, err := http.ReadResponse(bufio.NewReaderSize(httpservertest.SteadyReader(c), 32<<10), nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.ContentLength != streamSize {
			t.Fatalf("Content-Length %d", res.ContentLength)
		}
		httpservertest.CheckBody(t, res.Body, streamSize)
		f.WaitClosed(t)
	})
	t.Run("non-reader dropped", func(t *testing.T) {
		f := &httpservertest.Stream{N: streamSize}
		cur.Store(f)
		c := httpservertest.DialSmallWindow(t, ln.Addr())
		io.WriteString(c, httpservertest.Get("/scrape"))
		f.WaitClosed(t)
	})
}
