// Package udp is trackd's UDP frontend: the UDP tracker protocol of BEP 15
// with BEP 41's options (checked; their URL data is not used), over IPv4
// and IPv6. Handler turns
// packets into calls on the core tracker and replies into packets; Server
// moves packets between sockets and a Handler in batches.
package udp

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"trackd/bittorrent"
	"trackd/internal/ratelog"
	"trackd/metrics"
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
	// Errors logs the errors that can repeat once per packet (the store
	// failing, overload) at a bounded rate and counts them; nil means one
	// of the Handler's own, over Logger, that counts nothing.
	Errors *ratelog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Metrics counts requests by action and result; nil counts nothing.
	Metrics *metrics.Metrics
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
//
// Connection ids are stateless (see connIDs): a Handler keeps nothing per
// client. Nothing it sends to a sender that has not shown a valid
// connection id is larger than the packet that caused it, so a forged
// source address cannot use the tracker as an amplifier.
type Handler struct {
	tracker *tracker.Tracker
	opts    Options
	ids     connIDs
	pool    sync.Pool // *state
	// epoch is the handler's start: a request is timed by time.Since(epoch),
	// one read of the monotonic clock, where time.Now reads the wall clock
	// too.
	epoch time.Time
}

// state is the per-packet scratch space, pooled so that connect, announce
// and scrape allocate nothing once the pool is warm.
type state struct {
	id     idScratch
	req    tracker.AnnounceRequest
	resp   tracker.AnnounceResponse
	hashes []bittorrent.InfoHash
	scrape tracker.ScrapeResponse
}

// NewHandler returns a Handler that answers with t.
func NewHandler(t *tracker.Tracker, opts Options) *Handler {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Errors == nil {
		opts.Errors = ratelog.New(log, ratelog.Options{})
	}
	h := &Handler{tracker: t, opts: opts, ids: newConnIDs(opts.Secret, opts.Now), epoch: time.Now()}
	h.pool.New = func() any {
		return &state{
			hashes: make([]bittorrent.InfoHash, 0, maxScrapeHashes),
			resp:   tracker.AnnounceResponse{Peers: make([]bittorrent.Peer, 0, 64)},
			scrape: tracker.ScrapeResponse{Files: make([]bittorrent.Stats, 0, maxScrapeHashes)},
		}
	}
	return h
}

// Handle implements PacketHandler.
//
// Packets shorter than the 16-byte header, connects without the protocol
// magic and packets from an invalid address get no reply. A packet whose
// connection id is not valid for its sender gets the error "invalid
// connection id", cut to the packet's own length. Everything else is
// answered in full.
func (h *Handler) Handle(ctx context.Context, from netip.AddrPort, req, out []byte) []byte {
	out = out[:0]
	if len(req) < headerLen || !from.Addr().IsValid() {
		return out
	}
	from = canonicalAddrPort(from)
	be := binary.BigEndian
	connID := be.Uint64(req[0:8])
	action := be.Uint32(req[8:12])
	tid := req[12:16]

	st := h.pool.Get().(*state)
	defer h.put(st)

	if action == actionConnect {
		if connID != protocolID {
			return out
		}
		// The reply is as long as the request (16 bytes; a longer
		// connect is answered the same, the rest ignored): no
		// amplification.
		start := time.Since(h.epoch)
		out = appendConnect(out, tid, h.ids.issue(&st.id, from))
		h.opts.Metrics.Request(metrics.UDP, metrics.Connect, metrics.OK, time.Since(h.epoch)-start)
		return out
	}
	var m metrics.Action
	switch action {
	case actionAnnounce:
		m = metrics.Announce
	case actionScrape:
		m = metrics.Scrape
	default:
		if !h.ids.valid(&st.id, from, connID) {
			return appendError(out, tid, errInvalidConnID, len(req))
		}
		return h.fail(out, tid, errUnknownAction)
	}
	start := time.Since(h.epoch)
	var err error
	if !h.ids.valid(&st.id, from, connID) {
		out, err = appendError(out, tid, errInvalidConnID, len(req)), tracker.ClientError(errInvalidConnID)
	} else if m == metrics.Announce {
		// From here on the sender has proven it receives at from.
		out, err = h.announce(ctx, st, from, req, out)
	} else {
		out, err = h.scrape(ctx, st, req, out)
	}
	h.opts.Metrics.Request(metrics.UDP, m, metrics.ResultOf(err), time.Since(h.epoch)-start)
	return out
}

func (h *Handler) put(st *state) {
	h.pool.Put(st)
}

// announce answers an announce; err is what the reply reports, if anything.
func (h *Handler) announce(ctx context.Context, st *state, from netip.AddrPort, pkt, out []byte) ([]byte, error) {
	tid := pkt[12:16]
	if err := parseAnnounce(pkt, &st.req); err != nil {
		return h.fail(out, tid, err), err
	}
	client := from.Addr()
	addr := st.req.Addr.Addr() // the "ip" field, or invalid
	// The field has room for IPv4 only; from an IPv6 client it would
	// move the peer to the other family, so it is believed only from a
	// trusted IPv4 client.
	if !addr.IsValid() || !client.Is4() || !containsAddr(h.opts.TrustIPParam, client) {
		addr = client
	}
	st.req.Addr = netip.AddrPortFrom(addr, st.req.Addr.Port())
	maxPeers := maxPeers6
	st.req.Family = bittorrent.IPv6Only
	if client.Is4() {
		st.req.Family, maxPeers = bittorrent.IPv4Only, maxPeers4
	}
	st.req.MaxPeers = maxPeers
	if err := h.tracker.Announce(ctx, &st.req, &st.resp); err != nil {
		return h.fail(out, tid, err), err
	}
	return appendAnnounce(out, tid, &st.resp, st.req.Family), nil
}

// scrape answers a scrape; err is what the reply reports, if anything.
func (h *Handler) scrape(ctx context.Context, st *state, pkt, out []byte) ([]byte, error) {
	tid := pkt[12:16]
	var err error
	st.hashes, err = parseScrape(pkt, st.hashes[:0])
	if err != nil {
		return h.fail(out, tid, err), err
	}
	if err := h.tracker.Scrape(ctx, st.hashes, &st.scrape); err != nil {
		return h.fail(out, tid, err), err
	}
	return appendScrape(out, tid, st.scrape.Files), nil
}

// fail appends the error reply for err to a sender with a valid connection
// id. A client error says what the client did wrong; overload says so; a
// server error (the store's) is the client told only that the tracker
// failed. Overload and store errors go to Options.Errors, which logs a line
// per kind at most every 10 s, not one per packet.
func (h *Handler) fail(out, tid []byte, err error) []byte {
	var msg string
	if ce, ok := err.(tracker.ClientError); ok {
		msg = string(ce)
	} else if oe, ok := err.(*tracker.OverloadError); ok {
		msg = oe.Error()
		h.opts.Errors.Log(context.Background(), slog.LevelWarn, ratelog.KindOverload,
			"request refused", "protocol", "udp", "reason", msg)
	} else if tracker.IsClientError(err) {
		msg = err.Error()
	} else {
		if !errors.Is(err, tracker.ErrClosed) { // a packet caught by shutdown is no failure
			h.opts.Errors.Log(context.Background(), slog.LevelError, ratelog.KindStore,
				"request failed", "protocol", "udp", "err", err)
		}
		msg = errInternal
	}
	return appendError(out, tid, msg, 0)
}

func containsAddr(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
