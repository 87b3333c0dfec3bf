package ratelog

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// fixture is a Logger writing text lines to a buffer, with a clock the
// test moves and a count per kind.
type fixture struct {
	l      *Logger
	buf    bytes.Buffer
	now    time.Time
	counts map[string]int
}

func newFixture() *fixture {
	f := &fixture{now: time.Unix(1_700_000_000, 0), counts: map[string]int{}}
	h := slog.NewTextHandler(&f.buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})
	f.l = New(slog.New(h), Options{
		Interval: 10 * time.Second,
		Now:      func() time.Time { return f.now },
		Count:    func(kind string) { f.counts[kind]++ },
	})
	return f
}

// lines returns the lines written since the last call.
func (f *fixture) lines() []string {
	s := strings.TrimSpace(f.buf.String())
	f.buf.Reset()
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestLogger(t *testing.T) {
	ctx := context.Background()
	f := newFixture()
	type step struct {
		advance time.Duration
		kind    string // "" flushes instead of logging
		err     string
		want    []string
	}
	for i, st := range []step{
		// The first of a kind at once.
		{0, KindStore, "e1", []string{`level=ERROR msg="request failed" kind=store err=e1`}},
		// The next ones within the interval are only counted.
		{time.Second, KindStore, "e2", nil},
		{time.Second, KindStore, "e3", nil},
		// Another kind has its own interval.
		{0, KindOverload, "o1", []string{`level=ERROR msg="request failed" kind=overload err=o1`}},
		// Flush before the interval has passed writes nothing.
		{time.Second, "", "", nil},
		// 10 s after the first line: one line, with the count left out.
		{7 * time.Second, KindStore, "e4", []string{`level=ERROR msg="request failed" kind=store err=e4 repeated=2`}},
		{time.Second, KindStore, "e5", nil},
		{time.Second, KindStore, "e6", nil},
		// The burst ended: Flush reports the rest once the interval
		// has passed: the last one, and the count of the others.
		{4 * time.Second, "", "", nil},
		{5 * time.Second, "", "", []string{`level=ERROR msg="request failed" kind=store err=e6 repeated=1`}},
		// Nothing left: Flush is silent.
		{20 * time.Second, "", "", nil},
		// After a quiet interval, the first one is again logged at once,
		// without a count.
		{0, KindStore, "e7", []string{`level=ERROR msg="request failed" kind=store err=e7`}},
	} {
		f.now = f.now.Add(st.advance)
		if st.kind == "" {
			f.l.Flush(ctx)
		} else {
			f.l.Log(ctx, slog.LevelError, st.kind, "request failed", "err", st.err)
		}
		got := f.lines()
		if strings.Join(got, "\n") != strings.Join(st.want, "\n") {
			t.Errorf("step %d: lines\n%q\nwant\n%q", i, got, st.want)
		}
	}
	if f.counts[KindStore] != 7 || f.counts[KindOverload] != 1 {
		t.Errorf("counts %v, want store 6 and overload 1: every occurrence", f.counts)
	}
}

// TestLoggerFlood: 100,000 errors over 60 s of the fake clock make at most
// one line per interval, and the counts add up.
func TestLoggerFlood(t *testing.T) {
	ctx := context.Background()
	f := newFixture()
	const n = 100_000
	for i := range n {
		f.now = f.now.Add(600 * time.Microsecond) // 60 s in all
		f.l.Log(ctx, slog.LevelWarn, KindWrite, "udp: reply not sent", "i", i)
	}
	f.now = f.now.Add(10 * time.Second)
	f.l.Flush(ctx)
	lines := f.lines()
	if len(lines) > 7 {
		t.Errorf("%d lines for 60 s of errors, want at most 7:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	logged := 0
	for _, ln := range lines {
		logged++
		if _, rep, ok := strings.Cut(ln, "repeated="); ok {
			var k int
			for _, c := range rep {
				k = k*10 + int(c-'0')
			}
			logged += k
		}
	}
	// Each line stands for itself and its repeated=N.
	if logged != n {
		t.Errorf("lines account for %d errors, want %d", logged, n)
	}
	if f.counts[KindWrite] != n {
		t.Errorf("counted %d, want %d", f.counts[KindWrite], n)
	}
}

func TestNilLogger(t *testing.T) {
	var l *Logger
	l.Log(context.Background(), slog.LevelError, KindStore, "x")
	l.Flush(context.Background())
	l.Run(context.Background())
}

func TestLoggerConcurrent(t *testing.T) {
	var mu sync.Mutex
	n := 0
	l := New(nil, Options{Count: func(string) { mu.Lock(); n++; mu.Unlock() }})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				l.Log(context.Background(), slog.LevelError, KindStore, "x")
			}
		})
	}
	wg.Wait()
	if n != 8000 {
		t.Errorf("counted %d, want 8000", n)
	}
}

func TestRunFlushes(t *testing.T) {
	var buf syncBuffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), Options{Interval: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	for range 3 {
		l.Log(ctx, slog.LevelError, KindStore, "down")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "repeated=1") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if !strings.Contains(buf.String(), "repeated=1") {
		t.Errorf("Run did not flush the count: %q", buf.String())
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
