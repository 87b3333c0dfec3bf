// Package redistest starts real redis-server processes for tests: one
// server, or a Redis Cluster of several, on free loopback ports, each in a
// temporary directory, without persistence, killed when the test ends.
//
// Where redis-server is not on PATH, Start and StartCluster skip the test
// with a message, or fail it when TRACKD_REQUIRE_EXTERNAL=1 (as in CI).
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"trackd/internal/external"
)

// readyTimeout bounds how long a server may take to answer after start.
const readyTimeout = 15 * time.Second

// Server is one redis-server process.
type Server struct {
	// Addr is host:port, on 127.0.0.1.
	Addr string
	// Dir is the server's working directory (its log is Dir/redis.log).
	Dir string

	t    testing.TB
	bin  string
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Path returns the path of redis-server, or skips t (fails it under
// TRACKD_REQUIRE_EXTERNAL=1) when it is not on PATH.
func Path(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		external.Missing(t, "redis-server is not on PATH (Debian package redis-server)")
	}
	return p
}

// Start starts a redis-server on a free loopback port, with extra
// arguments appended to its command line, and waits until it answers. It
// is killed when t ends.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	return start(t, Path(t), t.TempDir(), extra)
}

func start(t testing.TB, bin, dir string, extra []string) *Server {
	t.Helper()
	var lastErr error
	// A free port can be taken by someone else before the server binds
	// it: try a few.
	for range 5 {
		port := freePort(t)
		s := &Server{
			Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			Dir:  dir,
			t:    t,
			bin:  bin,
			args: append([]string{
				"--port", strconv.Itoa(port),
				"--bind", "127.0.0.1",
				"--save", "",
				"--appendonly", "no",
				"--dir", dir,
				"--logfile", filepath.Join(dir, "redis.log"),
				"--daemonize", "no",
			}, extra...),
		}
		if lastErr = s.launch(); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("redistest: starting redis-server: %v", lastErr)
	return nil
}

// launch starts the process and waits until it answers PING.
func (s *Server) launch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(s.bin, s.args...)
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	for {
		err := c.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server exited at start (%s)", s.logTail())
		case <-ctx.Done():
			s.killLocked()
			return fmt.Errorf("redis-server did not answer within %v: %v (%s)", readyTimeout, err, s.logTail())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// logTail returns the last lines of the server's log, for messages.
func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return "log: " + strings.Join(lines[max(0, len(lines)-5):], " | ")
}

// URL returns the server's URL, database 0.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Client returns a go-redis client of the server, closed when the test
// ends.
func (s *Server) Client() *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr})
	s.t.Cleanup(func() { c.Close() })
	return c
}

// Stop kills the server (SIGKILL: as a crash, and at once) and waits for
// it to exit. It does nothing if the server is not running.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

func (s *Server) killLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.t.Errorf("redistest: redis-server %s did not exit within 10s of SIGKILL", s.Addr)
	}
	s.cmd = nil
}

// Restart starts the server again, on the same port, with the same
// arguments (and no data, since it has no persistence), and waits until it
// answers.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.launch(); err != nil {
		s.t.Fatalf("redistest: restarting redis-server on %s: %v", s.Addr, err)
	}
}

// Cluster is a Redis Cluster of masters without replicas.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts n redis-servers in cluster mode, splits the 16384
// slots evenly among them, joins them, and waits until every node reports
// the cluster ok. They are killed when t ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	bin := Path(t)
	c := &Cluster{}
	for i := range n {
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("node%d", i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		c.Nodes = append(c.Nodes, start(t, bin, dir, []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-port", strconv.Itoa(freePort(t)),
			"--cluster-node-timeout", "5000",
		}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clients := make([]*goredis.Client, n)
	for i, s := range c.Nodes {
		clients[i] = s.Client()
		lo, hi := i*16384/n, (i+1)*16384/n-1
		if err := clients[i].Do(ctx, "cluster", "addslotsrange", lo, hi).Err(); err != nil {
			t.Fatalf("redistest: CLUSTER ADDSLOTSRANGE %d %d on %s: %v", lo, hi, s.Addr, err)
		}
	}
	for i, s := range c.Nodes[1:] {
		bus, err := clients[i+1].ConfigGet(ctx, "cluster-port").Result()
		if err != nil {
			t.Fatalf("redistest: CONFIG GET cluster-port on %s: %v", s.Addr, err)
		}
		host, port, _ := net.SplitHostPort(s.Addr)
		if err := clients[0].Do(ctx, "cluster", "meet", host, port, bus["cluster-port"]).Err(); err != nil {
			t.Fatalf("redistest: CLUSTER MEET %s: %v", s.Addr, err)
		}
	}
	for i, cl := range clients {
		for {
			info, err := cl.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(n)+"\r") {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("redistest: cluster node %s not ready: %v %q", c.Nodes[i].Addr, err, info)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return c
}

// Addrs returns the nodes' addresses.
func (c *Cluster) Addrs() []string {
	var a []string
	for _, s := range c.Nodes {
		a = append(a, s.Addr)
	}
	return a
}

// URL returns the cluster's URL in the syntax of trackd/store/redis:
// redis+cluster://host1:port1,host2:port2,...
func (c *Cluster) URL() string {
	return "redis+cluster://" + strings.Join(c.Addrs(), ",")
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
