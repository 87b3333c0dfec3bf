package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"trackd/store"
	"trackd/store/memory"
)

// probed is a Store whose probe fails with err; its other methods are
// not called.
type probed struct {
	store.Store
	err error
}

func (p *probed) Probe(context.Context) error { return p.err }

// totalsOnly is a Store without a probe: Health reads its totals.
type totalsOnly struct {
	store.Store
	err error
}

func (s *totalsOnly) Totals(context.Context) (store.Totals, error) { return store.Totals{}, s.err }

func TestHealth(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	st := &probed{}
	h := store.NewHealth(st, func() time.Time { return now })
	oom := errors.New("OOM command not allowed when used memory > 'maxmemory'")
	for i, step := range []struct {
		advance  time.Duration
		probe    error
		observe  []error // outcomes reported before the check
		wantFail string  // "" for ready
	}{
		{0, nil, nil, ""},
		{0, nil, []error{nil, nil}, ""},
		// The probe fails: Redis down.
		{0, errors.New("connection refused"), nil, "store probe: connection refused"},
		// A request failed; the probe passes (say, a script fails):
		// not ready while no request succeeds, for FailureHold.
		{0, nil, []error{nil, oom}, "the store failed a request 0s ago: OOM"},
		{store.FailureHold - time.Second, nil, nil, "the store failed a request 4s ago: OOM"},
		// No traffic since (a load balancer stopped sending): the probe
		// decides after FailureHold.
		{time.Second, nil, nil, ""},
		// A failure, then a success: ready at once.
		{0, nil, []error{oom, nil}, ""},
		// A canceled request says nothing about the store.
		{0, nil, []error{context.Canceled, fmt.Errorf("announce: %w", context.Canceled)}, ""},
		// Failing requests and a failing probe: the probe's error.
		{0, oom, []error{oom}, "store probe: OOM"},
		// The store serves again and requests succeed.
		{time.Second, nil, []error{nil}, ""},
	} {
		now = now.Add(step.advance)
		st.err = step.probe
		for _, err := range step.observe {
			h.Observe(err)
		}
		err := h.Check(ctx)
		switch {
		case step.wantFail == "" && err != nil:
			t.Errorf("step %d: %v, want ready", i, err)
		case step.wantFail != "" && (err == nil || !strings.HasPrefix(err.Error(), step.wantFail)):
			t.Errorf("step %d: %v, want %q...", i, err, step.wantFail)
		}
	}
}

// TestHealthShedding: a store refusing new torrents or peers at its memory
// bound serves; /readyz must not fail under a flood of new torrents.
func TestHealthShedding(t *testing.T) {
	h := store.NewHealth(&probed{}, nil)
	for _, err := range []error{store.ErrNoNewTorrents, store.ErrNoNewPeers} {
		h.Observe(err)
		if got := h.Check(context.Background()); got != nil {
			t.Errorf("after %v: Check = %v, want nil", err, got)
		}
	}
	h.Observe(errors.New("connection refused"))
	h.Observe(store.ErrNoNewTorrents) // a request served: the failure is over
	if got := h.Check(context.Background()); got != nil {
		t.Errorf("after a refusal that followed a failure: Check = %v, want nil", got)
	}
}

func TestHealthWithoutProbe(t *testing.T) {
	st := &totalsOnly{}
	h := store.NewHealth(st, nil)
	if err := h.Check(context.Background()); err != nil {
		t.Errorf("totals readable: %v", err)
	}
	st.err = errors.New("down")
	if err := h.Check(context.Background()); err == nil {
		t.Error("totals unreadable: ready")
	}
}

// TestHealthMemory: the in-memory store is healthy until it is closed.
func TestHealthMemory(t *testing.T) {
	m := memory.New(store.Options{PeerLifetime: time.Hour})
	h := store.NewHealth(m, nil)
	ctx := context.Background()
	if err := h.Check(ctx); err != nil {
		t.Fatal(err)
	}
	m.Close()
	if err := h.Check(ctx); !errors.Is(err, store.ErrClosed) {
		t.Errorf("closed store: %v, want ErrClosed", err)
	}
}

func TestHealthNil(t *testing.T) {
	var h *store.Health
	h.Observe(errors.New("x"))
	h.Observe(nil)
}

func BenchmarkObserveOK(b *testing.B) {
	h := store.NewHealth(&probed{}, nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.Observe(nil)
		}
	})
}
