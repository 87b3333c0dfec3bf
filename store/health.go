package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Prober is a Store that can check that it serves requests as a request
// would use it, reads and writes: Redis answers PING and takes a write.
// It is for readiness checks; Probe must leave the swarms as they are.
type Prober interface {
	Probe(ctx context.Context) error
}

// FailureHold is how long Health remembers a request the store failed when
// no request has succeeded since: so long the store counts as failing,
// whatever its probe says. After it the probe alone decides, so that a
// tracker taken out of a load balancer's rotation (and sent no requests)
// is ready again once the store serves.
const FailureHold = 5 * time.Second

// Health follows whether a store serves requests, for a readiness check:
// from the outcomes of real requests, which the core reports (Observe),
// and from the store's probe. A store fails requests, and Check reports
// it, when
//
//   - the probe fails (Prober.Probe where the store has it, else a Totals
//     read): Redis down, or refusing writes at maxmemory; or
//   - the last request's store call failed, less than FailureHold ago:
//     whatever the probe sees, requests do not get through.
//
// A request that succeeds clears the failure at once. A nil *Health
// observes nothing.
type Health struct {
	probe func(context.Context) error
	now   func() time.Time

	failing atomic.Bool // the last outcome observed was a failure
	mu      sync.Mutex
	lastErr error
	at      time.Time // when lastErr was observed
}

// NewHealth returns the Health of s. now is the clock (nil: time.Now).
func NewHealth(s Store, now func() time.Time) *Health {
	if now == nil {
		now = time.Now
	}
	h := &Health{now: now}
	if p, ok := s.(Prober); ok {
		h.probe = p.Probe
	} else {
		h.probe = func(ctx context.Context) error { _, err := s.Totals(ctx); return err }
	}
	return h
}

// Observe records the outcome of a store call made for a request: nil for
// success. A call ended by its context's cancellation (the client left,
// the server shuts down) says nothing about the store and is not counted.
// A refusal of a store at its memory bound (ErrNoNewTorrents,
// ErrNoNewPeers) is the store serving as it should, so a success: a flood
// of new torrents must not take the tracker out of a load balancer's
// rotation. It costs one atomic load when nothing changes, so the core
// calls it on every request.
func (h *Health) Observe(err error) {
	if h == nil {
		return
	}
	if err == nil || errors.Is(err, ErrNoNewTorrents) || errors.Is(err, ErrNoNewPeers) {
		if h.failing.Load() {
			h.failing.Store(false)
		}
		return
	}
	if errors.Is(err, context.Canceled) {
		return
	}
	h.mu.Lock()
	h.lastErr, h.at = err, h.now()
	h.mu.Unlock()
	h.failing.Store(true)
}

// Check reports why the store does not serve requests, or nil when it
// does: /readyz answers 503 with its error.
func (h *Health) Check(ctx context.Context) error {
	if err := h.probe(ctx); err != nil {
		return fmt.Errorf("store probe: %w", err)
	}
	if !h.failing.Load() {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if ago := h.now().Sub(h.at); ago < FailureHold && h.failing.Load() {
		return fmt.Errorf("the store failed a request %v ago: %w", ago.Round(time.Millisecond), h.lastErr)
	}
	return nil
}
