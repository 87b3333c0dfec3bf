package redis

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// SetLibraryLogger sends the log lines of go-redis itself to l, at most one
// per every (with a count of those left out), instead of go-redis's default
// of one line on stderr for each failed dial: thousands a second while
// Redis is down. go-redis has one logger per process, so this is for main
// to call once, before Open; the Store's own messages go to
// Options.Logger.
func SetLibraryLogger(l *slog.Logger, every time.Duration) {
	goredis.SetLogger(&libraryLogger{log: l, every: every})
}

// libraryLogger is a rate-limited go-redis logger.
type libraryLogger struct {
	log   *slog.Logger
	every time.Duration

	mu      sync.Mutex
	last    time.Time
	dropped int
}

func (l *libraryLogger) Printf(ctx context.Context, format string, v ...any) {
	l.mu.Lock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.dropped++
		l.mu.Unlock()
		return
	}
	dropped := l.dropped
	l.last, l.dropped = now, 0
	l.mu.Unlock()
	msg := strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")
	if dropped > 0 {
		l.log.WarnContext(ctx, "go-redis: "+msg, "similar_lines_left_out", dropped)
		return
	}
	l.log.WarnContext(ctx, "go-redis: "+msg)
}
