package httpserver_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"trackd/httpserver"
	"trackd/httpserver/httpservertest"
)

// upgradeHandler answers a request with "Upgrade: echo" with 101
// Switching Protocols and takes the connection over: from then on it
// echoes what it reads, for at most 10 s. Each connection taken is sent
// on taken. Other requests get EchoHandler's answers.
func upgradeHandler(taken chan<- net.Conn) httpserver.Handler {
	return httpserver.HandlerFunc(func(ctx context.Context, w *httpserver.Response, r *httpserver.Request) {
		if !strings.EqualFold(r.Header("Upgrade"), "echo") {
			httpserver.EchoHandler(ctx, w, r)
			return
		}
		w.Status = http.StatusSwitchingProtocols
		w.AddHeader("Connection", "Upgrade")
		w.AddHeader("Upgrade", "echo")
		w.Takeover = func(c net.Conn) {
			taken <- c
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second)) // the taker bounds it
			io.Copy(c, c)
		}
	})
}

// echoed writes p on c and reads it back.
func echoed(t *testing.T, c net.Conn, br *bufio.Reader, p string) {
	t.Helper()
	if _, err := io.WriteString(c, p); err != nil {
		t.Fatalf("writing %q: %v", p, err)
	}
	readEcho(t, c, br, p)
}

func readEcho(t *testing.T, c net.Conn, br *bufio.Reader, p string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, len(p))
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != p {
		t.Fatalf("echo %q, %v; want %q", buf, err, p)
	}
}

// TestServerTakeover: a Handler takes a connection over after its 101
// reply and echoes over the net.Conn it gets, starting with the bytes the
// client sent right after the request head. From then on the Server
// neither times the connection out nor counts it (under MaxConns and
// MaxConnsPerIP), and Shutdown does not close it; it takes over a first
// request as well as one on a keep-alive connection.
func TestServerTakeover(t *testing.T) {
	const timeout = 200 * time.Millisecond
	upgrade := "GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
	httpservertest.ForEach(t, func(t *testing.T, listen httpservertest.ListenFunc) {
		for _, keepAlive := range []bool{false, true} {
			name := "first request"
			if keepAlive {
				name = "after a keep-alive request"
			}
			t.Run(name, func(t *testing.T) {
				taken := make(chan net.Conn, 1)
				s := httpservertest.Start(t, listen, upgradeHandler(taken), httpserver.Options{
					ReadHeaderTimeout: timeout, IdleTimeout: timeout, WriteTimeout: timeout,
					MaxConns: 1, MaxConnsPerIP: 1, Loops: 1,
				})
				c := httpservertest.DialFrom(t, s.Addr(), "127.0.0.7")
				br := bufio.NewReader(c)
				if keepAlive {
					if err := announceOnce(t, c, br); err != nil {
						t.Fatal(err)
					}
					time.Sleep(50 * time.Millisecond) // idle, and polled for its next request
				}
				// The client's first bytes of the new protocol come with
				// the request.
				io.WriteString(c, upgrade+"hello")
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				res, err := http.ReadResponse(br, &http.Request{Method: "GET"})
				if err != nil {
					t.Fatal(err)
				}
				if res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get("Upgrade") != "echo" ||
					res.Header.Get("Connection") != "Upgrade" || res.Header["Content-Length"] != nil || res.Header["Content-Type"] != nil {
					t.Errorf("reply %d, header %v", res.StatusCode, res.Header)
				}
				readEcho(t, c, br, "hello")
				select {
				case <-taken:
				case <-time.After(5 * time.Second):
					t.Fatal("Takeover not called")
				}
				echoed(t, c, br, "world")

				// Not counted: another connection from the address is
				// served, under MaxConns 1 and MaxConnsPerIP 1.
				for deadline := time.Now().Add(5 * time.Second); s.OpenConns() != 0; {
					if time.Now().After(deadline) {
						t.Fatalf("OpenConns %d after the takeover, want 0", s.OpenConns())
					}
					time.Sleep(10 * time.Millisecond)
				}
				other := httpservertest.DialFrom(t, s.Addr(), "127.0.0.7")
				other.SetDeadline(time.Now().Add(5 * time.Second))
				io.WriteString(other, httpservertest.Get(testAnnounce, "Connection: close\r\n"))
				if res, _, _ := httpservertest.ReadAll(t, other, 2*time.Second); len(res) != 1 || res[0].StatusCode != 200 {
					t.Errorf("another connection from the address: %d replies", len(res))
				}

				// Not timed out: quiet for longer than every timeout.
				time.Sleep(3 * timeout)
				echoed(t, c, br, "still there")

				// Shutdown returns without waiting for it, and leaves it
				// open.
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := s.Shutdown(ctx); err != nil {
					t.Errorf("Shutdown: %v", err)
				}
				echoed(t, c, br, "after shutdown")
				s.Close()
				echoed(t, c, br, "after close")
			})
		}
	})
}

// TestServerTakeoverClientGone: a client that is gone before its 101
// reply can be written does not make the Server call Takeover, and the
// Server goes on serving others.
func TestServerTakeoverClientGone(t *testing.T) {
	httpservertest.ForEach(t, func(t *testing.T, listen httpservertest.ListenFunc) {
		taken := make(chan net.Conn, 1)
		called := make(chan struct{}, 1)
		h := httpserver.HandlerFunc(func(ctx context.Context, w *httpserver.Response, r *httpserver.Request) {
			w.Status = http.StatusSwitchingProtocols
			w.Body = append(w.Body, strings.Repeat("x", 8<<20)...) // more than the socket takes
			w.Takeover = func(c net.Conn) {
				called <- struct{}{}
				taken <- c
				c.Close()
			}
		})
		s := httpservertest.Start(t, listen, h, httpserver.Options{WriteTimeout: 300 * time.Millisecond})
		c := httpservertest.DialSmallWindow(t, s.Addr())
		io.WriteString(c, httpservertest.Get("/chat"))
		time.Sleep(100 * time.Millisecond)
		c.Close()
		select {
		case <-called:
			t.Error("Takeover called though the reply was not written")
		case <-time.After(2 * time.Second):
		}
		if n := s.OpenConns(); n != 0 {
			t.Errorf("OpenConns %d", n)
		}
	})
}
