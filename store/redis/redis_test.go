package redis

import (
	"context"
	"fmt"
	"testing"
	"time"

	"trackd/internal/redistest"
	"trackd/store"
	"trackd/store/storetest"
)

// open opens a store on url, closed when t ends (Close is idempotent, so a
// test may close it first). Without a timeout in ro, it sets a generous
// one: these tests are not about timeouts, and a loaded machine (the race
// detector, builds) may be slow.
func open(t testing.TB, url string, opts store.Options, ro Options) *Store {
	t.Helper()
	if ro.Timeout == 0 {
		ro.Timeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, url, opts, ro)
	if err != nil {
		t.Fatalf("Open(%s): %v", url, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	n := 0
	storetest.Run(t, func(t *testing.T, opts store.Options) store.Store {
		n++
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// A prefix of its own for each store: as good as an empty
		// database, and it checks that nothing strays outside it.
		// A generous timeout: the suite is about semantics, and a loaded
		// machine (the race detector, builds) may be slow.
		s, err := Open(ctx, srv.URL(), opts, Options{KeyPrefix: fmt.Sprintf("conformance%d:", n), Timeout: 20 * time.Second})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}
