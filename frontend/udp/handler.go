// Package udp is trackd's UDP frontend: the UDP tracker protocol of BEP 15
// with the URL data option of BEP 41, over IPv4 and IPv6. Handler turns
// packets into calls on the core tracker and replies into packets; Server
// moves packets between sockets and a Handler in batches.
package udp

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"trackd/tracker"
)

// Options configure a Handler.
type Options struct {
	// Secret keys the connection ids. Instances that share a secret (and
	// a clock) accept each other's ids, so several of them can sit behind
	// one address. Empty means a random secret made at start.
	Secret []byte
	// TrustIPParam are the clients whose announce "ip" field is believed.
	TrustIPParam []netip.Prefix
	// Logger receives server errors; nil discards them.
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// PacketHandler answers UDP tracker packets. *Handler is the real one; the
// interface lets Server be tested on its own.
type PacketHandler interface {
	// Handle answers the packet req, which came from from. It appends the
	// reply to out[:0] and returns it; an empty result means no reply.
	// It must be safe for concurrent use and must not keep req or out.
	Handle(ctx context.Context, from netip.AddrPort, req, out []byte) []byte
}

// Handler answers UDP tracker packets with a tracker.Tracker.
type Handler struct {
	tracker *tracker.Tracker
	opts    Options
}

// NewHandler returns a Handler that answers with t.
func NewHandler(t *tracker.Tracker, opts Options) *Handler {
	return &Handler{tracker: t, opts: opts}
}

// Handle implements PacketHandler.
func (h *Handler) Handle(ctx context.Context, from netip.AddrPort, req, out []byte) []byte {
	return out[:0] // TODO: being written
}
