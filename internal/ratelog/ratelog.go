// Package ratelog logs errors that can repeat once per request (a store
// that is down, replies that cannot be sent, overload) without flooding
// the log: the first error of a kind is logged at once, the ones that
// follow within an interval are only counted, and the next line of that
// kind (at most one per interval) says how many were left out.
//
// Every occurrence, logged or not, can be counted elsewhere too (the
// metrics) through Options.Count.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultInterval is the shortest time between two lines of one kind.
const DefaultInterval = 10 * time.Second

// The kinds of error trackd logs through a Logger. They are the values of
// the "kind" attribute of the log lines and of the label of the metric
// trackd_errors_total.
const (
	// KindStore is a request the store failed (Redis down or refusing
	// writes).
	KindStore = "store"
	// KindOverload is a request refused because max_pending were at work,
	// or because the store is at its memory bound (max_memory).
	KindOverload = "overload"
	// KindWrite is a UDP reply the kernel refused to send.
	KindWrite = "write"
	// KindAccept is a connection that could not be accepted (out of
	// descriptors or memory).
	KindAccept = "accept"
	// KindStoreBackground is a round of the store's background work
	// (the Redis sweeper and totals) that failed.
	KindStoreBackground = "store_background"
	// KindSync is a call to the fleet's Bus that failed (Redis
	// unreachable): the instance goes on from its own memory.
	KindSync = "sync"
	// KindSyncBatch is a batch read from the fleet's Bus that is not
	// one this version reads, skipped.
	KindSyncBatch = "sync_batch"
)

// Kinds are the kinds above, for whoever wants to know them all in advance
// (the metrics create a series for each).
var Kinds = []string{KindStore, KindOverload, KindWrite, KindAccept, KindStoreBackground, KindSync, KindSyncBatch}

// Options configure a Logger. The zero value logs at most one line per
// kind every DefaultInterval and counts nothing.
type Options struct {
	// Interval is the shortest time between two lines of one kind; zero
	// means DefaultInterval.
	Interval time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Count, when set, is called once for every occurrence, logged or
	// not. It must be safe for concurrent use.
	Count func(kind string)
}

// Logger is a rate-limited error log. A nil *Logger counts nothing and
// logs nothing. It is safe for concurrent use.
type Logger struct {
	log  *slog.Logger
	opts Options

	mu    sync.Mutex
	kinds map[string]*entry
}

// entry is the state of one kind.
type entry struct {
	lastLine time.Time // when the last line of this kind was written
	left     int       // occurrences since then that were not logged
	// the last occurrence not logged, for the line that reports them
	level slog.Level
	msg   string
	args  []any
}

// New returns a Logger that writes to log (nil discards).
func New(log *slog.Logger, opts Options) *Logger {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Logger{log: log, opts: opts, kinds: make(map[string]*entry)}
}

// Log records an occurrence of kind. It is written at once, as msg with
// kind=kind and args, if no line of that kind was written in the last
// interval; it then carries repeated=N when N more occurred since that line
// without a line of their own. Otherwise it is only counted. Every line
// thus stands for itself and its "repeated" count. Log keeps args until
// the next line of the kind is written.
func (l *Logger) Log(ctx context.Context, level slog.Level, kind, msg string, args ...any) {
	if l == nil {
		return
	}
	if l.opts.Count != nil {
		l.opts.Count(kind)
	}
	now := l.opts.Now()
	l.mu.Lock()
	e := l.kinds[kind]
	if e == nil {
		e = &entry{}
		l.kinds[kind] = e
	}
	if !e.lastLine.IsZero() && now.Sub(e.lastLine) < l.opts.Interval {
		e.left++
		e.level, e.msg, e.args = level, msg, args
		l.mu.Unlock()
		return
	}
	left := e.left
	e.lastLine, e.left, e.args = now, 0, nil
	l.mu.Unlock()
	l.write(ctx, level, kind, msg, args, left)
}

// Flush writes, for every kind whose occurrences since its last line were
// not all logged and whose interval has passed, one line: the last of them,
// with repeated=N for the others. Run calls it every interval, so that the count of
// a burst that has ended is not held back until the next occurrence.
func (l *Logger) Flush(ctx context.Context) {
	if l == nil {
		return
	}
	now := l.opts.Now()
	type line struct {
		kind  string
		level slog.Level
		msg   string
		args  []any
		left  int
	}
	var lines []line
	l.mu.Lock()
	for kind, e := range l.kinds {
		if e.left == 0 || now.Sub(e.lastLine) < l.opts.Interval {
			continue
		}
		// the line stands for the last occurrence and left-1 others
		lines = append(lines, line{kind, e.level, e.msg, e.args, e.left - 1})
		e.lastLine, e.left, e.args = now, 0, nil
	}
	l.mu.Unlock()
	for _, ln := range lines {
		l.write(ctx, ln.level, ln.kind, ln.msg, ln.args, ln.left)
	}
}

// Run calls Flush every interval until ctx ends.
func (l *Logger) Run(ctx context.Context) {
	if l == nil {
		return
	}
	t := time.NewTicker(l.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.Flush(ctx)
		}
	}
}

func (l *Logger) write(ctx context.Context, level slog.Level, kind, msg string, args []any, left int) {
	all := make([]any, 0, len(args)+4)
	all = append(all, "kind", kind)
	all = append(all, args...)
	if left > 0 {
		all = append(all, "repeated", left)
	}
	l.log.Log(ctx, level, msg, all...)
}
