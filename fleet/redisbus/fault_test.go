package redisbus

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"trackd/fleet"
	"trackd/internal/redistest"
)

// logBuffer is a slog handler's output, safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

// messages records what a Listen got.
type messages struct {
	mu   sync.Mutex
	msgs map[string]bool
}

func (m *messages) add(msg []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.msgs == nil {
		m.msgs = make(map[string]bool)
	}
	m.msgs[string(msg)] = true
}

func (m *messages) has(msg string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.msgs[msg]
}

// listenFor starts b.Listen for self until the test ends, and returns what
// it gets and the channel of its result.
func listenFor(t *testing.T, b *Bus, self fleet.Instance) (*messages, <-chan error) {
	m := &messages{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Listen(ctx, self, m.add) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return m, done
}

// reach sends numbered messages to to every 20ms until m has one of them
// or d has passed, and returns how long it took.
func reach(t *testing.T, b *Bus, to fleet.Instance, m *messages, tag string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for k := 0; time.Since(start) < d; k++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = b.Send(ctx, to, fmt.Appendf(nil, "%s-%d", tag, k))
		cancel()
		time.Sleep(20 * time.Millisecond)
		for j := k; j >= max(0, k-50); j-- {
			if m.has(fmt.Sprintf("%s-%d", tag, j)) {
				return time.Since(start)
			}
		}
	}
	t.Fatalf("no %s message reached the listener within %v", tag, d)
	return 0
}

// TestOutage: while Redis is down every call fails within its bound, and
// none hangs; Listen logs the loss once, subscribes again when Redis is
// back (on the same port, empty), and every call works again.
func TestOutage(t *testing.T) {
	s := redistest.Start(t)
	logs := &logBuffer{}
	const timeout = 300 * time.Millisecond
	b := open(t, s.URL(), Options{Timeout: timeout, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	self := fleet.Instance{7}
	m, listenDone := listenFor(t, b, self)
	reach(t, b, self, m, "before", 10*time.Second)

	s.Stop()
	ctx := testCtx(t, 60*time.Second)
	const block, wait = 200 * time.Millisecond, 200 * time.Millisecond
	calls := []struct {
		name  string
		bound time.Duration
		call  func() error
	}{
		{"Publish", timeout, func() error { return b.Publish(ctx, 0, []byte("x")) }},
		{"Read", block + timeout, func() error { _, err := b.Read(ctx, 0, "", 10, block); return err }},
		{"ReadFrom", block + timeout, func() error { _, err := b.Read(ctx, 0, "0-0", 10, block); return err }},
		{"Tail", timeout, func() error { _, err := b.Tail(ctx, 0); return err }},
		{"Send", timeout, func() error { return b.Send(ctx, self, []byte("x")) }},
		{"Claim", timeout, func() error { _, err := b.Claim(ctx, "k", time.Second); return err }},
		{"Append", timeout, func() error { return b.Append(ctx, "k", []byte("x"), time.Second) }},
		{"Chunk", wait + timeout, func() error { _, _, err := b.Chunk(ctx, "k", 0, wait); return err }},
		{"Ping", timeout, func() error { return b.Ping(ctx) }},
	}
	for round := range 3 {
		for _, c := range calls {
			start := time.Now()
			err := c.call()
			d := time.Since(start)
			if err == nil {
				t.Errorf("round %d: %s succeeded while Redis is down", round, c.name)
			}
			// The bound, and room for a loaded machine.
			if d > c.bound+500*time.Millisecond {
				t.Errorf("round %d: %s took %v to fail, its bound is %v", round, c.name, d, c.bound)
			}
			if round == 0 {
				t.Logf("%s failed after %v: %v", c.name, d.Round(time.Millisecond), err)
			}
		}
	}
	select {
	case err := <-listenDone:
		t.Fatalf("Listen returned while Redis was down: %v", err)
	default:
	}

	s.Restart()
	start := time.Now()
	for {
		err := b.Publish(ctx, 0, []byte("back"))
		if err == nil {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("Publish still fails 10s after Redis is back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("Publish works again %v after Redis is back", time.Since(start).Round(time.Millisecond))
	t.Logf("Listen gets messages again %v after Redis is back", reach(t, b, self, m, "after", 10*time.Second).Round(time.Millisecond))
	for _, c := range calls {
		if c.name == "Chunk" {
			continue // the blob is gone with Redis's data: not ok, no error
		}
		if err := c.call(); err != nil {
			t.Errorf("%s after Redis is back: %v", c.name, err)
		}
	}
	if _, _, err := b.Chunk(ctx, "k", 0, 0); err != nil {
		t.Errorf("Chunk after Redis is back: %v", err)
	}
	if n := logs.count("Pub/Sub connection lost"); n != 1 {
		t.Errorf("the loss of Pub/Sub was logged %d times, want once:\n%s", n, logs.buf.String())
	}
	if n := logs.count("Pub/Sub subscribed again"); n != 1 {
		t.Errorf("the new subscription was logged %d times, want once:\n%s", n, logs.buf.String())
	}
}

// TestOpenWithoutRedis: Open succeeds while Redis is down, with a warning;
// the Bus works once Redis answers.
func TestOpenWithoutRedis(t *testing.T) {
	s := redistest.Start(t)
	s.Stop()
	logs := &logBuffer{}
	start := time.Now()
	b := open(t, s.URL(), Options{Timeout: 300 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Open took %v while Redis was down", d)
	}
	if logs.count("Redis does not answer") != 1 {
		t.Errorf("Open did not warn that Redis does not answer: %q", logs.buf.String())
	}
	self := fleet.Instance{8}
	m, _ := listenFor(t, b, self)
	ctx := testCtx(t, 30*time.Second)
	if err := b.Publish(ctx, 0, []byte("x")); err == nil {
		t.Error("Publish succeeded while Redis is down")
	}
	s.Restart()
	reach(t, b, self, m, "up", 10*time.Second)
	if err := b.Publish(ctx, 0, []byte("x")); err != nil {
		t.Errorf("Publish once Redis answers: %v", err)
	}
}

// TestCloseLeavesNoGoroutines: after Close, the goroutines of Listen,
// blocked Reads, Chunk waits and go-redis's pools are gone.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	for _, name := range []string{"Single", "Cluster"} {
		t.Run(name, func(t *testing.T) {
			var url string
			if name == "Single" {
				url = redistest.Start(t).URL()
			} else {
				url = redistest.StartCluster(t, 3).URL()
			}
			time.Sleep(100 * time.Millisecond) // let the servers' start settle
			before := runtime.NumGoroutine()
			ctx := testCtx(t, 30*time.Second)
			b, err := Open(ctx, url, Options{})
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for i := range b.NumStreams() {
				wg.Go(func() { _, _ = b.Read(ctx, i, "", 10, 10*time.Second) })
			}
			wg.Go(func() { _ = b.Listen(ctx, fleet.Instance{1}, func([]byte) {}) })
			wg.Go(func() { _ = b.Listen(ctx, fleet.Instance{2}, func([]byte) {}) })
			wg.Go(func() { _, _, _ = b.Chunk(ctx, "none", 0, 10*time.Second) })
			if err := b.Publish(ctx, 0, []byte("x")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
			start := time.Now()
			if err := b.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			wg.Wait()
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("the calls took %v to return after Close", d)
			}
			deadline := time.Now().Add(5 * time.Second)
			for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > before {
				buf := make([]byte, 1<<20)
				t.Errorf("%d goroutines before Open, %d after Close:\n%s", before, n, buf[:runtime.Stack(buf, true)])
			}
		})
	}
}

// TestClusterNodeDown: with one master of three killed, the calls on the
// streams it holds fail within their bound and those on the others work
// (until the cluster, which has no replicas, declares itself down: then
// all fail, within their bound); when the node is back (same port, same
// cluster config), all work again.
func TestClusterNodeDown(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	const timeout = 300 * time.Millisecond
	b := open(t, c.URL(), Options{Timeout: timeout})
	ctx := testCtx(t, 120*time.Second)
	for i := range b.NumStreams() {
		if err := b.Publish(ctx, i, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	// The streams the killed node holds.
	down := c.Nodes[1]
	keys, err := down.Client().Keys(ctx, streamPrefix+"*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("node 1 holds streams %v (%v)", keys, err)
	}
	onDown := make(map[int]bool)
	for i, k := range b.keys {
		for _, dk := range keys {
			onDown[i] = onDown[i] || k == dk
		}
	}
	down.Stop()
	for round := range 3 {
		failed := 0
		for i := range b.NumStreams() {
			start := time.Now()
			err := b.Publish(ctx, i, []byte("y"))
			d := time.Since(start)
			if d > timeout+500*time.Millisecond {
				t.Errorf("round %d: Publish to stream %d took %v, its bound is %v", round, i, d, timeout)
			}
			if onDown[i] && err == nil {
				t.Errorf("round %d: Publish to stream %d on the killed node succeeded", round, i)
			}
			// Once the cluster has marked the node failed (after
			// cluster-node-timeout, 5s here), a cluster without replicas
			// refuses every command (CLUSTERDOWN); until then the live
			// nodes work.
			if !onDown[i] && err != nil && round == 0 {
				t.Errorf("round %d: Publish to stream %d on a live node: %v", round, i, err)
			}
			if err != nil {
				failed++
			}
			start = time.Now()
			_, err = b.Read(ctx, i, "", 10, 100*time.Millisecond)
			if d := time.Since(start); d > 100*time.Millisecond+timeout+500*time.Millisecond {
				t.Errorf("round %d: Read of stream %d took %v (%v)", round, i, d, err)
			}
		}
		t.Logf("round %d: %d of %d Publishes failed", round, failed, b.NumStreams())
	}
	down.Restart()
	start := time.Now()
	for i := range b.NumStreams() {
		for {
			err := b.Publish(ctx, i, []byte("z"))
			if err == nil {
				break
			}
			if time.Since(start) > 30*time.Second {
				t.Fatalf("Publish to stream %d still fails 30s after the node is back: %v", i, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("every stream takes batches again %v after the node is back", time.Since(start).Round(time.Millisecond))
}
