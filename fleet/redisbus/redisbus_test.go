package redisbus

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"trackd/fleet"
	"trackd/internal/redistest"
)

func TestMain(m *testing.M) {
	// go-redis logs every failed dial on stderr; these tests fail dials
	// on purpose.
	goredis.SetLogger(quietLogger{})
	os.Exit(m.Run())
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// open opens a Bus on url with opts and closes it when t ends.
func open(t testing.TB, url string, opts Options) *Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := Open(ctx, url, opts)
	if err != nil {
		t.Fatalf("Open(%q): %v", url, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// testCtx returns a context that ends with the test, and at most after d.
func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestOpenBadURL(t *testing.T) {
	for _, u := range []string{"", "memory", "http://h:1", "redis://h:1/x", "redis+cluster://", "redis://u:hunter2@h:1/x"} {
		b, err := Open(context.Background(), u, Options{})
		if err == nil {
			b.Close()
			t.Errorf("Open(%q) succeeded, want an error", u)
			continue
		}
		if !strings.HasPrefix(err.Error(), "redisbus: ") || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open(%q): %v; want an error starting with \"redisbus: \" without the password", u, err)
		}
	}
}

func TestIsURL(t *testing.T) {
	for s, want := range map[string]bool{
		"redis://h:1": true, "rediss://h:1": true, "redis+cluster://a:1,b:2": true,
		"rediss+cluster://a:1": true, "memory": false, "": false, "http://h": false,
	} {
		if got := IsURL(s); got != want {
			t.Errorf("IsURL(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestLayout: one stream on a server, 16 on a cluster, each trimmed to its
// share of MaxLen.
func TestLayout(t *testing.T) {
	for _, tt := range []struct {
		maxLen, streams, trim int
		cluster               bool
	}{
		{0, 1, DefaultMaxLen, false},
		{100, 1, 100, false},
		{0, 16, DefaultMaxLen / 16, true},
		{100, 16, 6, true},
		{5, 16, 1, true},
	} {
		u := "redis://127.0.0.1:1/0"
		if tt.cluster {
			u = "redis+cluster://127.0.0.1:1,127.0.0.1:2"
		}
		b, err := Open(context.Background(), u, Options{MaxLen: tt.maxLen, Timeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if b.NumStreams() != tt.streams || b.MaxLen() != tt.trim {
			t.Errorf("%s MaxLen %d: %d streams of %d; want %d of %d", u, tt.maxLen, b.NumStreams(), b.MaxLen(), tt.streams, tt.trim)
		}
		b.Close()
	}
}

// TestStreams: on a server and on a cluster, Publish and Read keep the
// order of each stream, Read after "" sees only later entries, and Tail
// names the last entry.
func TestStreams(t *testing.T) {
	t.Run("Single", func(t *testing.T) {
		testStreams(t, open(t, redistest.Start(t).URL(), Options{}))
	})
	t.Run("Cluster", func(t *testing.T) {
		c := redistest.StartCluster(t, 3)
		testStreams(t, open(t, c.URL(), Options{}))
		// The 16 streams spread over the three masters.
		ctx := testCtx(t, 10*time.Second)
		total := 0
		for _, n := range c.Nodes {
			keys, err := n.Client().Keys(ctx, streamPrefix+"*").Result()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("master %s holds %d streams: %v", n.Addr, len(keys), keys)
			if len(keys) == 0 {
				t.Errorf("master %s holds no stream", n.Addr)
			}
			total += len(keys)
		}
		if total != ClusterStreams {
			t.Errorf("the masters hold %d streams, want %d", total, ClusterStreams)
		}
	})
}

func testStreams(t *testing.T, b *Bus) {
	ctx := testCtx(t, 30*time.Second)
	for i := range b.NumStreams() {
		if tail, err := b.Tail(ctx, i); err != nil || tail != "" {
			t.Fatalf("Tail(%d) of an empty stream = %q, %v; want \"\"", i, tail, err)
		}
		if err := b.Publish(ctx, i, []byte("old")); err != nil {
			t.Fatal(err)
		}
	}
	for i := range b.NumStreams() {
		first, err := b.Tail(ctx, i)
		if err != nil || first == "" {
			t.Fatalf("Tail(%d) = %q, %v", i, first, err)
		}
		// A reader from the end sees the next entries only.
		got := make(chan []string, 1)
		go func() {
			es, err := b.Read(ctx, i, "", 10, 5*time.Second)
			if err != nil {
				t.Error(err)
			}
			var s []string
			for _, e := range es {
				s = append(s, string(e.Batch))
			}
			got <- s
		}()
		time.Sleep(100 * time.Millisecond) // let the reader block
		for k := range 5 {
			if err := b.Publish(ctx, i, fmt.Appendf(nil, "s%d-%d", i, k)); err != nil {
				t.Fatal(err)
			}
		}
		if s := <-got; len(s) == 0 || s[0] != fmt.Sprintf("s%d-0", i) {
			t.Errorf("stream %d: a blocked Read after \"\" got %q, want s%d-0 first", i, s, i)
		}
		// From the first entry, in order, max at a time.
		var all []string
		after := first
		for range 10 {
			es, err := b.Read(ctx, i, after, 2, 0)
			if err != nil || len(es) > 2 {
				t.Fatalf("stream %d: Read(after %s, max 2) = %d entries, %v", i, after, len(es), err)
			}
			if len(es) == 0 {
				break
			}
			for _, e := range es {
				all = append(all, string(e.Batch))
				after = e.Pos
			}
		}
		want := fmt.Sprintf("[s%d-0 s%d-1 s%d-2 s%d-3 s%d-4]", i, i, i, i, i)
		if fmt.Sprint(all) != want {
			t.Errorf("stream %d: read %q, want %s", i, all, want)
		}
		if tail, err := b.Tail(ctx, i); err != nil || tail != after {
			t.Errorf("stream %d: Tail = %q, %v; want the last read position %q", i, tail, err, after)
		}
	}
}

// TestTrim: XADD MAXLEN ~ keeps each stream near its bound, with batches
// of the fleet's largest size and with small ones.
func TestTrim(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client()
	ctx := testCtx(t, 60*time.Second)
	for _, size := range []int{32 << 10, 40} {
		if err := c.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		b := open(t, s.URL(), Options{MaxLen: 200})
		batch := make([]byte, size)
		for range 1000 {
			if err := b.Publish(ctx, 0, batch); err != nil {
				t.Fatal(err)
			}
		}
		n, err := c.XLen(ctx, b.keys[0]).Result()
		if err != nil {
			t.Fatal(err)
		}
		mem, _ := c.MemoryUsage(ctx, b.keys[0], 0).Result()
		t.Logf("batches of %d bytes: 1000 published, XLEN %d, MEMORY USAGE %d bytes", size, n, mem)
		if n < 200 || n > 200+100 {
			t.Errorf("batches of %d bytes: XLEN = %d after 1000, want 200 to 300", size, n)
		}
	}
}

// TestPoolNeverStarves: with a reader blocked on every stream, and a pool
// the URL asks to be tiny, publishers still get connections at once.
func TestPoolNeverStarves(t *testing.T) {
	for _, name := range []string{"Single", "Cluster"} {
		t.Run(name, func(t *testing.T) {
			var url string
			if name == "Single" {
				url = redistest.Start(t).URL() + "?pool_size=1"
			} else {
				url = redistest.StartCluster(t, 3).URL() + "?pool_size=1"
			}
			// Without enough connections a Publish would wait for one
			// until the readers' block (3s) ends, past its timeout (1s).
			b := open(t, url, Options{Timeout: time.Second})
			ctx := testCtx(t, 30*time.Second)
			var wg sync.WaitGroup
			defer wg.Wait()
			for i := range b.NumStreams() {
				wg.Go(func() {
					if _, err := b.Read(ctx, i, "", 1, 3*time.Second); err != nil {
						t.Errorf("Read(%d): %v", i, err)
					}
				})
			}
			time.Sleep(300 * time.Millisecond) // let every reader block
			for round := range 3 {
				var pub sync.WaitGroup
				for i := range b.NumStreams() {
					for range SpareConns / 2 {
						pub.Go(func() {
							start := time.Now()
							err := b.Publish(ctx, (i+round)%b.NumStreams(), []byte("x"))
							if err != nil {
								t.Errorf("Publish with every stream's reader blocked: %v after %v", err, time.Since(start))
							}
						})
					}
				}
				pub.Wait()
			}
		})
	}
}

// TestPublishMany: on a server and on a cluster, PublishMany appends its
// batches to each stream in order, after what Publish appended.
func TestPublishMany(t *testing.T) {
	run := func(t *testing.T, b *Bus) {
		ctx := testCtx(t, 30*time.Second)
		for i := range b.NumStreams() {
			if err := b.Publish(ctx, i, []byte("one")); err != nil {
				t.Fatal(err)
			}
			var batches [][]byte
			for k := range 20 {
				batches = append(batches, fmt.Appendf(nil, "s%d-%d", i, k))
			}
			if n, err := b.PublishMany(ctx, i, batches); n != len(batches) || err != nil {
				t.Fatalf("stream %d: PublishMany = %d, %v; want %d, nil", i, n, err, len(batches))
			}
			es, err := b.Read(ctx, i, fleet.StreamStart, 100, 0)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range es {
				got = append(got, string(e.Batch))
			}
			want := []string{"one"}
			for _, bt := range batches {
				want = append(want, string(bt))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("stream %d: read %q, want %q", i, got, want)
			}
		}
	}
	t.Run("Single", func(t *testing.T) {
		run(t, open(t, redistest.Start(t).URL(), Options{}))
	})
	t.Run("Cluster", func(t *testing.T) {
		run(t, open(t, redistest.StartCluster(t, 3).URL(), Options{}))
	})
	// Redis out of memory part way: the batches before the first XADD
	// refused are published, in order, and counted; none after.
	t.Run("OutOfMemory", func(t *testing.T) {
		s := redistest.Start(t, "--maxmemory", "3mb", "--maxmemory-policy", "noeviction")
		b := open(t, s.URL(), Options{})
		ctx := testCtx(t, 30*time.Second)
		var batches [][]byte
		for k := range 64 {
			bt := make([]byte, 32<<10)
			bt[0] = byte(k)
			batches = append(batches, bt)
		}
		n, perr := b.PublishMany(ctx, 0, batches)
		err := perr
		if err == nil || n == 0 || n == len(batches) {
			t.Fatalf("PublishMany of 2 MiB into 3 MB = %d, %v; want some published, then an error", n, err)
		}
		if !strings.Contains(err.Error(), "OOM") {
			t.Errorf("error %v, want Redis's OOM", err)
		}
		es, err := b.Read(ctx, 0, fleet.StreamStart, 100, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != n {
			t.Errorf("the stream holds %d entries, PublishMany said %d", len(es), n)
		}
		for k, e := range es {
			if e.Batch[0] != byte(k) {
				t.Errorf("entry %d is batch %d", k, e.Batch[0])
			}
		}
		t.Logf("%d of %d batches of 32 KiB published before: %v", n, len(batches), perr)
	})
}
