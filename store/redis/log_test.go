package redis

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLibraryLogger: go-redis's lines reach the slog logger at most one
// per interval, with a count of those left out.
func TestLibraryLogger(t *testing.T) {
	var buf bytes.Buffer
	l := &libraryLogger{log: slog.New(slog.NewTextHandler(&buf, nil)), every: time.Hour}
	ctx := context.Background()
	for i := range 5 {
		l.Printf(ctx, "redis: connection pool: failed to dial after %d attempts: %v", 1, i)
	}
	if got := strings.Count(buf.String(), "\n"); got != 1 {
		t.Fatalf("5 lines within the interval logged %d lines:\n%s", got, buf.String())
	}
	if !strings.Contains(buf.String(), `msg="go-redis: connection pool: failed to dial after 1 attempts: 0"`) {
		t.Errorf("logged %q", buf.String())
	}
	l.last = time.Now().Add(-2 * time.Hour) // the interval has passed
	l.Printf(ctx, "redis: again")
	if !strings.Contains(buf.String(), "similar_lines_left_out=4") {
		t.Errorf("the line after the interval does not count the 4 left out:\n%s", buf.String())
	}
}
