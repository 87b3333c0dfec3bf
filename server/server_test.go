package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"

	"trackd/config"
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
	return cfg
}

const announceQuery = "/announce?info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=6881&left=0&compact=1"

func TestServesAndLogsListener(t *testing.T) {
	srv, logs := start(t, loopbackConfig())
	res, err := http.Get("http://" + srv.HTTPAddr().String() + announceQuery)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !bytes.HasPrefix(body, []byte("d8:complete")) {
		t.Errorf("reply %q", body)
	}
	if res.ContentLength != int64(len(body)) || len(res.TransferEncoding) != 0 {
		t.Errorf("Content-Length %d, Transfer-Encoding %v for a %d-byte reply", res.ContentLength, res.TransferEncoding, len(body))
	}
	if !strings.Contains(logs.String(), "protocol=http addr="+srv.HTTPAddr().String()) {
		t.Errorf("no listener log line in %q", logs.String())
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
	srv, _ := start(t, cfg)
	port := srv.HTTPAddr().(*net.TCPAddr).Port
	for _, host := range []string{"127.0.0.1", "[::1]"} {
		res, err := http.Get(fmt.Sprintf("http://%s:%d%s", host, port, announceQuery))
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("%s: status %d", host, res.StatusCode)
		}
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
}
