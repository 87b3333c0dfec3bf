package http

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"trackd/bencode"
	"trackd/httpserver"
	"trackd/store"
	"trackd/store/memory"
	"trackd/tracker"
)

// These tests serve the Handler through httpserver's lean server, as
// trackd does for plain HTTP: the tracker's answers over real
// connections. The server itself is tested in package httpserver.

type listenFunc func(string, httpserver.Handler, httpserver.Options) (*httpserver.Server, error)

// backends are the lean server's two implementations: event loops
// (Linux), and a goroutine per connection.
func backends() []struct {
	name   string
	listen listenFunc
} {
	b := []struct {
		name   string
		listen listenFunc
	}{{"goroutine per connection", func(a string, h httpserver.Handler, o httpserver.Options) (*httpserver.Server, error) {
		o.GoroutinePerConn = true
		return httpserver.Listen(a, h, o)
	}}}
	if runtime.GOOS == "linux" {
		b = append(b, struct {
			name   string
			listen listenFunc
		}{"epoll", httpserver.Listen})
	}
	return b
}

// forEachBackend runs test as a subtest per backend.
func forEachBackend(t *testing.T, test func(t *testing.T, listen listenFunc)) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) { test(t, b.listen) })
	}
}

// testHandler is a Handler over an in-memory store.
func testHandler(t testing.TB, opts Options) *Handler {
	t.Helper()
	s := memory.New(store.Options{PeerLifetime: time.Hour})
	t.Cleanup(func() { s.Close() })
	h := NewHandler(tracker.New(tracker.Config{}, s), opts)
	t.Cleanup(func() { h.Close() })
	return h
}

// startServer starts a lean server for h on 127.0.0.1 and closes it when
// the test ends.
func startServer(t testing.TB, listen listenFunc, h *Handler, opts httpserver.Options) *httpserver.Server {
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

func dial(t testing.TB, addr net.Addr) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

var testAnnounce = announceURL(hash20("server test"), hash20("peer"), "6881", "0&compact=1")

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
		{name: "keep-alive", send: get(testAnnounce), status: []int{200}, check: func(t *testing.T, res []*http.Response, bodies []string) {
			r := res[0]
			if r.ContentLength != int64(len(bodies[0])) || r.Header.Get("Content-Type") != "text/plain" || r.Header.Get("Date") == "" || r.Close {
				t.Errorf("reply header %v, length %d", r.Header, r.ContentLength)
			}
			if _, err := bencode.Decode([]byte(bodies[0])); err != nil || !strings.HasPrefix(bodies[0], "d8:complete") {
				t.Errorf("body %q", bodies[0])
			}
		}},
		{name: "pipelined, in order", send: get(testAnnounce) + get("/nope") + get("/scrape?info_hash="+esc(hash20("x"))), status: []int{200, 404, 200},
			check: func(t *testing.T, res []*http.Response, bodies []string) {
				if !strings.HasPrefix(bodies[0], "d8:complete") || bodies[1] != "404 page not found\n" || !strings.HasPrefix(bodies[2], "d5:files") {
					t.Errorf("bodies out of order: %q", bodies)
				}
			}},
		{name: "escaped path", send: get(strings.Replace(testAnnounce, "/announce", "/%61nnounce", 1)), status: []int{200},
			check: func(t *testing.T, _ []*http.Response, bodies []string) {
				if !strings.HasPrefix(bodies[0], "d8:complete") {
					t.Errorf("body %q", bodies[0])
				}
			}},
		{name: "query too long", send: get(testAnnounce + "&pad=" + strings.Repeat("p", 1100)), status: []int{200},
			check: func(t *testing.T, _ []*http.Response, bodies []string) {
				if !strings.Contains(bodies[0], "query too long") {
					t.Errorf("body %q", bodies[0])
				}
			}},
		{name: "full scrape, gzip", send: get("/scrape", "Accept-Encoding: x, gzip\r\n"), status: []int{200},
			check: func(t *testing.T, res []*http.Response, _ []string) {
				if res[0].Header.Get("Content-Encoding") != "gzip" || res[0].Header.Get("Vary") != "Accept-Encoding" {
					t.Errorf("reply header %v", res[0].Header)
				}
			}},
		{name: "full scrape, plain", send: get("/scrape"), status: []int{200},
			check: func(t *testing.T, res []*http.Response, bodies []string) {
				if res[0].Header.Get("Content-Encoding") != "" || res[0].Header.Get("Vary") != "Accept-Encoding" || !strings.HasPrefix(bodies[0], "d5:files") {
					t.Errorf("reply header %v, body %q", res[0].Header, bodies[0])
				}
			}},
	}
	forEachBackend(t, func(t *testing.T, listen listenFunc) {
		h := testHandler(t, Options{MaxQueryBytes: 1000, FullScrape: true, FullScrapeInterval: time.Hour})
		waitFullScrape(t, h)
		s := startServer(t, listen, h, httpserver.Options{MaxHeaderBytes: 2000})
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := dial(t, s.Addr())
				if _, err := io.WriteString(c, tt.send); err != nil {
					t.Fatal(err)
				}
				res, bodies, _ := readAll(t, c, 300*time.Millisecond)
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

// dialSmallWindow connects with a small receive buffer, so that a large
// reply does not fit in the socket buffers.
func dialSmallWindow(t *testing.T, addr net.Addr) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { setRcvBuf(fd, 4096) })
	}}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
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
	forEachBackend(t, func(t *testing.T, listen listenFunc) {
		const wt = 400 * time.Millisecond
		s := startServer(t, listen, h, httpserver.Options{WriteTimeout: wt})
		t.Run("slow reader", func(t *testing.T) {
			s := startServer(t, listen, h, httpserver.Options{WriteTimeout: 20 * time.Second})
			c := dialSmallWindow(t, s.Addr())
			c.SetDeadline(time.Now().Add(30 * time.Second))
			io.WriteString(c, get("/scrape", "Accept-Encoding: gzip\r\n")+get(testAnnounce))
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
				t.Fatalf("full scrape of %d bytes, want %d", len(body), len(want))
			}
			res, err = http.ReadResponse(br, nil)
			if err != nil || res.StatusCode != 200 {
				t.Fatalf("pipelined request after the big reply: %v", err)
			}
		})
		t.Run("non-reader dropped", func(t *testing.T) {
			c := dialSmallWindow(t, s.Addr())
			io.WriteString(c, get("/scrape", "Accept-Encoding: gzip\r\n"))
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

// TestServerGoroutinePerConnBlockingStore: with GoroutinePerConn, a
// request waiting on the store holds up no other connection.
func TestServerGoroutinePerConnBlockingStore(t *testing.T) {
	mem := memory.New(store.Options{PeerLifetime: time.Hour})
	defer mem.Close()
	g := &gatedStore{Store: mem, entered: make(chan struct{}, 1), gate: make(chan struct{})}
	h := NewHandler(tracker.New(tracker.Config{}, g), Options{})
	s := startServer(t, httpserver.Listen, h, httpserver.Options{GoroutinePerConn: true, Loops: 1})
	blocked := dial(t, s.Addr())
	io.WriteString(blocked, get(testAnnounce, "Connection: close\r\n"))
	<-g.entered
	other := dial(t, s.Addr())
	io.WriteString(other, get("/scrape?info_hash="+esc(hash20("x")), "Connection: close\r\n"))
	if res, _, _ := readAll(t, other, 2*time.Second); len(res) != 1 {
		t.Errorf("%d replies while another connection waits on the store", len(res))
	}
	close(g.gate)
	if res, _, _ := readAll(t, blocked, 2*time.Second); len(res) != 1 {
		t.Errorf("%d replies once the store answers", len(res))
	}
}

// fakeStream is a streamed body of n bytes, byte i being byte(i % 251).
// It counts its Close calls.
type fakeStream struct {
	n, off int64
	closes atomic.Int32
}

func (f *fakeStream) Read(p []byte) (int, error) {
	if f.off >= f.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), f.n-f.off)]
	for i := range p {
		p[i] = byte((f.off + int64(i)) % 251)
	}
	f.off += int64(len(p))
	return len(p), nil
}

func (f *fakeStream) Close() error {
	f.closes.Add(1)
	return nil
}

// waitClosed waits (bounded) for f to be closed, and checks it was once.
func (f *fakeStream) waitClosed(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f.closes.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // a second Close would show by now
	if n := f.closes.Load(); n != 1 {
		t.Errorf("stream closed %d times, want once", n)
	}
}

// checkBody reads a streamed body of n bytes and checks its bytes.
func checkBody(t *testing.T, r io.Reader, n int64) {
	t.Helper()
	buf := make([]byte, 32<<10)
	var off int64
	for off < n {
		m, err := r.Read(buf)
		for i := range m {
			if buf[i] != byte((off+int64(i))%251) {
				t.Fatalf("byte %d is %d", off+int64(i), buf[i])
			}
		}
		off += int64(m)
		if err != nil {
			if off < n {
				t.Fatalf("after %d of %d bytes: %v", off, n, err)
			}
			break
		}
	}
}

// slowBodyReader reads at most 32 KiB at a time, pausing 2 ms each 64 KiB
// or so: a 50 MB body takes well over the write timeout, read steadily.
type slowBodyReader struct {
	r io.Reader
	n int
}

func (s *slowBodyReader) Read(p []byte) (int, error) {
	if s.n++; s.n%2 == 0 {
		time.Sleep(2 * time.Millisecond)
	}
	return s.r.Read(p[:min(len(p), 32<<10)])
}

const streamSize = 50 << 20

// TestServeHTTPStream: Handler.ServeHTTP (net/http, for HTTPS) streams a
// body too, each chunk under its own write deadline, and closes it once.
func TestServeHTTPStream(t *testing.T) {
	const wt = 300 * time.Millisecond
	h := testHandler(t, Options{WriteTimeout: wt})
	var cur atomic.Pointer[fakeStream]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f := cur.Load()
			h.writeReply(w, r, reply{status: http.StatusOK, stream: f, length: f.n})
		}),
		WriteTimeout: wt, // from the request's start: the handler's deadlines replace it
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	t.Run("slow reader gets it whole", func(t *testing.T) {
		f := &fakeStream{n: streamSize}
		cur.Store(f)
		c := dial(t, ln.Addr())
		c.SetDeadline(time.Now().Add(60 * time.Second))
		io.WriteString(c, get("/scrape"))
		res, err := http.ReadResponse(bufio.NewReaderSize(&slowBodyReader{r: c}, 32<<10), nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.ContentLength != streamSize {
			t.Fatalf("Content-Length %d", res.ContentLength)
		}
		checkBody(t, res.Body, streamSize)
		f.waitClosed(t)
	})
	t.Run("non-reader dropped", func(t *testing.T) {
		f := &fakeStream{n: streamSize}
		cur.Store(f)
		c := dialSmallWindow(t, ln.Addr())
		io.WriteString(c, get("/scrape"))
		f.waitClosed(t)
	})
}
