//go:build linux

package wsserver

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"trackd/httpserver"
)

// The memory of idle connections, measured in a server process of its
// own (this test binary, re-run with WSSERVER_MEMSERVER set), so that the
// clients' memory is not counted: its resident set and Go heap before
// and after N connections, divided by N.

var idleConns = flag.Int("ws.idle", 2000, "connections TestIdleMemory opens (more than ~20,000 need root, to raise RLIMIT_NOFILE)")

func TestMain(m *testing.M) {
	if mode := os.Getenv("WSSERVER_MEMSERVER"); mode != "" {
		memServer(mode)
		return
	}
	os.Exit(m.Run())
}

// raiseNoFile raises RLIMIT_NOFILE to at least n, the hard limit too if
// the process may (root).
func raiseNoFile(n uint64) error {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return err
	}
	if r.Cur >= n {
		return nil
	}
	r.Cur = n
	r.Max = max(r.Max, n)
	return unix.Setrlimit(unix.RLIMIT_NOFILE, &r)
}

// idleSession is what a real handler keeps per connection at least: the
// Conn.
type idleSession struct{ c Conn }

func (*idleSession) Message(context.Context, []byte) {}
func (*idleSession) Closed()                         {}

type idleHandler struct{}

func (idleHandler) Open(c Conn) Session { return &idleSession{c: c} }

// memServer serves idle connections (mode "epoll" or "portable") on
// 127.0.0.1 until its standard input closes; it prints its address, and
// answers a plain GET with "open rss heapInuse stackInuse goroutines"
// after a garbage collection.
func memServer(mode string) {
	if n, _ := strconv.Atoi(os.Getenv("WSSERVER_MEMCONNS")); n > 0 {
		if err := raiseNoFile(uint64(n) + 1000); err != nil {
			fmt.Fprintln(os.Stderr, "RLIMIT_NOFILE:", err)
			os.Exit(1)
		}
	}
	s := New(idleHandler{}, Options{GoroutinePerConn: mode == "portable", MaxConns: -1, MaxConnsPerIP: -1, IdleTimeout: 10 * time.Minute})
	stats := httpserver.HandlerFunc(func(ctx context.Context, w *httpserver.Response, r *httpserver.Request) {
		runtime.GC()
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		w.Body = fmt.Appendf(w.Body, "%d %d %d %d %d", s.OpenConns(), rss(), ms.HeapInuse, ms.StackInuse, runtime.NumGoroutine())
	})
	hs, err := httpserver.Listen("127.0.0.1:0", s.Upgrade(stats), httpserver.Options{ReadHeaderTimeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(hs.Addr())
	io.Copy(io.Discard, os.Stdin)
	hs.Close()
	s.Close()
}

// rss is the process's resident set in bytes.
func rss() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

type memStats struct{ open, rss, heap, stack, goroutines int64 }

func getStats(t *testing.T, addr string) memStats {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, "GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := bytes.Cut(b, []byte("\r\n\r\n"))
	var s memStats
	if _, err := fmt.Sscan(string(body), &s.open, &s.rss, &s.heap, &s.stack, &s.goroutines); err != nil {
		t.Fatalf("stats %q: %v", body, err)
	}
	return s
}

// TestIdleMemory opens -ws.idle idle WebSocket connections (from 16
// loopback source addresses) to a server process of each kind and
// reports the resident and Go heap bytes per connection. It asserts
// generous bounds only; the figures are in docs/benchmarks.md.
func TestIdleMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	n := *idleConns
	if err := raiseNoFile(uint64(n) + 1000); err != nil {
		t.Skipf("cannot raise RLIMIT_NOFILE to %d: %v", n+1000, err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"epoll", "portable"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(exe, "-test.run=^$")
			cmd.Env = append(os.Environ(), "WSSERVER_MEMSERVER="+mode, "WSSERVER_MEMCONNS="+strconv.Itoa(n))
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			defer stdin.Close()
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil {
				t.Fatalf("server: %v", err)
			}
			addr := strings.TrimSpace(line)
			before := getStats(t, addr)
			conns := openIdle(t, addr, n)
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			var after memStats
			for deadline := time.Now().Add(60 * time.Second); ; {
				after = getStats(t, addr)
				if after.open == int64(n) || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if after.open != int64(n) {
				t.Fatalf("%d connections open, want %d", after.open, n)
			}
			perRSS := float64(after.rss-before.rss) / float64(n)
			perHeap := float64(after.heap-before.heap) / float64(n)
			perStack := float64(after.stack-before.stack) / float64(n)
			t.Logf("%s, %d idle connections: %.0f B resident, %.0f B Go heap, %.0f B goroutine stacks per connection (rss %d → %d MiB, goroutines %d → %d)",
				mode, n, perRSS, perHeap, perStack, before.rss>>20, after.rss>>20, before.goroutines, after.goroutines)
			bound := 8 << 10
			if mode == "portable" {
				bound = 64 << 10
			}
			if perRSS > float64(bound) && !raceEnabled {
				t.Errorf("%.0f B resident per idle connection, over the bound %d", perRSS, bound)
			}
		})
	}
}

// openIdle opens n WebSocket connections to addr, from 127.0.0.1-16,
// and returns them once each has its 101.
func openIdle(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	const workers = 8
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 512)
			for i := w; i < n; i += workers {
				d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%16))}}
				c, err := d.Dial("tcp", addr)
				if err == nil {
					c.SetDeadline(time.Now().Add(30 * time.Second))
					_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
				}
				if err == nil {
					k := 0
					for err == nil && !bytes.Contains(buf[:k], []byte("\r\n\r\n")) && k < len(buf) {
						var m int
						m, err = c.Read(buf[k:])
						k += m
					}
					if err == nil && !bytes.HasPrefix(buf[:k], []byte("HTTP/1.1 101 ")) {
						err = fmt.Errorf("reply %q", buf[:k])
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", i, err)
					}
					mu.Unlock()
					if c != nil {
						c.Close()
					}
					return
				}
				c.SetDeadline(time.Time{})
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		t.Fatal(firstErr)
	}
	return conns
}
