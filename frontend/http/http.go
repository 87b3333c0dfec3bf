// Package http is trackd's HTTP frontend: it turns announce and scrape
// requests (BEP 3, BEP 23, BEP 7, BEP 48) into calls on the core tracker and
// writes the bencoded replies. It holds no tracker logic of its own.
//
// Handler answers requests through package httpserver's lean HTTP/1.1
// server (Respond: what trackd serves over HTTP and HTTPS, at a fraction of
// net/http's cost per connection) and through net/http (ServeHTTP, for
// anything that wants an http.Handler), with the same code.
package http

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"trackd/bencode"
	"trackd/bittorrent"
	"trackd/httpserver"
	"trackd/internal/ratelog"
	"trackd/metrics"
	"trackd/tracker"
)

// Options configure a Handler. The zero value serves no full scrape and
// trusts no proxy.
type Options struct {
	// FullScrape enables the scrape without info_hash, which lists every
	// torrent. It is built in the background (see fullscrape.go): at
	// once, then when a request finds the last build older than
	// FullScrapeInterval, and that request gets the last build.
	FullScrape         bool
	FullScrapeInterval time.Duration
	// FullScrapeStreams bounds the full scrapes sent uncompressed at once,
	// to clients that do not accept gzip (0: DefaultFullScrapeStreams).
	FullScrapeStreams int
	// MaxQueryBytes refuses longer query strings (0:
	// DefaultMaxQueryBytes).
	MaxQueryBytes int
	// TrustedProxies are the reverse proxies whose X-Real-IP and
	// X-Forwarded-For headers name the client.
	TrustedProxies []netip.Prefix
	// TrustIPParam are the clients whose "ip" parameter is believed.
	TrustIPParam []netip.Prefix
	// Logger receives server errors; nil discards them.
	Logger *slog.Logger
	// Errors logs the errors that can repeat once per request (the store
	// failing, overload) at a bounded rate and counts them; nil means
	// one of the Handler's own, over Logger, that counts nothing.
	Errors *ratelog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Metrics counts requests by action and result, and full scrapes;
	// nil counts nothing.
	Metrics *metrics.Metrics
	// WriteTimeout is, in ServeHTTP, the time each chunk of a streamed
	// body (a full scrape) may take to be written: it replaces the
	// http.Server's WriteTimeout, which counts from the request's start
	// and would cut a long body to a slow but steady reader. Zero sets
	// none, and the http.Server's applies.
	WriteTimeout time.Duration
}

// Defaults of Options (trackd's configuration starts from them).
const (
	// DefaultMaxQueryBytes is the default of Options.MaxQueryBytes: 8 KiB,
	// room for an announce with every parameter and for a scrape of
	// tracker.DefaultConfig's 74 info hashes (about 5 KiB percent-encoded).
	DefaultMaxQueryBytes = 8 << 10
	// DefaultFullScrapeInterval is a default for
	// Options.FullScrapeInterval.
	DefaultFullScrapeInterval = 30 * time.Second
)

// Handler serves /announce and /scrape. Anything else is 404.
type Handler struct {
	tracker *tracker.Tracker
	opts    Options
	pool    sync.Pool // *state
	// epoch is the handler's start: a request is timed by time.Since(epoch),
	// one read of the monotonic clock, where time.Now reads the wall clock
	// too.
	epoch time.Time

	full fullScrape
}

// state is the per-request scratch space, pooled so that an announce
// allocates nothing of its own.
type state struct {
	q      announceQuery
	resp   tracker.AnnounceResponse
	scrape tracker.ScrapeResponse
	hashes []bittorrent.InfoHash
	buf    []byte
	err    error // what fail reported for the request, for the metrics
	// req, fwd and enc are Respond's request and the room for its
	// X-Forwarded-For and Accept-Encoding fields.
	req      request
	fwd, enc []string
}

func newState() *state { return &state{buf: make([]byte, 0, 1024)} }

// NewHandler returns a Handler that answers with t. With
// opts.FullScrape it starts a goroutine, which Close stops.
func NewHandler(t *tracker.Tracker, opts Options) *Handler {
	if opts.MaxQueryBytes <= 0 {
		opts.MaxQueryBytes = DefaultMaxQueryBytes
	}
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
	h := &Handler{tracker: t, opts: opts, epoch: time.Now()}
	h.pool.New = func() any { return newState() }
	if opts.FullScrape {
		h.full.start(t, &opts, log)
	}
	return h
}

// Close stops the goroutine that builds the full scrape, waiting for a
// build in progress to give up. A full scrape already built is still
// served. Close always returns nil.
func (h *Handler) Close() error {
	h.full.close()
	return nil
}

// request is an announce or scrape as the frontend needs it, whichever
// server read it off the connection: httpserver (Respond) or net/http
// (ServeHTTP). Its strings may point into a read buffer that is
// reused once serve returns; nothing keeps them.
type request struct {
	// path is the decoded path ("/announce"), query the raw query
	// without its '?'.
	path, query string
	// remote is the connection's peer; invalid if unknown.
	remote netip.AddrPort
	// realIP is the first X-Real-IP field; forwardedFor and
	// acceptEncoding are every X-Forwarded-For and Accept-Encoding field,
	// in the order received.
	realIP         string
	forwardedFor   []string
	acceptEncoding []string
}

// reply is the answer to a request.
type reply struct {
	status int    // http.StatusOK or http.StatusNotFound
	body   []byte // the state's buffer, unless shared
	// shared reports that body is not the state's buffer but a slice
	// that is never modified (the cached full scrape, fixed texts): a
	// server may hold on to it past the next request, to finish writing
	// it, without a copy.
	shared bool
	gzip   bool // body is gzip-compressed: Content-Encoding: gzip
	vary   bool // body depends on Accept-Encoding: Vary: Accept-Encoding
	// stream, when not nil, is the body instead of body: length bytes,
	// too many to put in a buffer (a full scrape sent uncompressed). A
	// server copies it to the connection a chunk at a time, as the socket
	// takes it, and calls Close exactly once when it is done with it:
	// written whole, or the connection gone. The reply closes the
	// connection after it.
	stream io.ReadCloser
	length int64
}

var notFound = []byte("404 page not found\n")

// ServeHTTP routes a request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := h.pool.Get().(*state)
	defer h.pool.Put(st)
	// An address net/http did not fill in stays invalid, and an announce
	// fails with "cannot tell the client's address".
	remote, _ := netip.ParseAddrPort(r.RemoteAddr)
	// The keys are canonical, so that the lookups allocate nothing.
	req := request{
		path:           r.URL.Path,
		query:          r.URL.RawQuery,
		remote:         remote,
		forwardedFor:   r.Header["X-Forwarded-For"],
		acceptEncoding: r.Header["Accept-Encoding"],
	}
	if v := r.Header["X-Real-Ip"]; len(v) > 0 {
		req.realIP = v[0]
	}
	h.writeReply(w, r, h.serve(r.Context(), st, &req))
}

// Handler is an httpserver.Handler too.
var _ httpserver.Handler = (*Handler)(nil)

// Respond routes a request read by an httpserver.Server. The reply is
// encoded into w's buffer, and the scratch state comes from the same pool
// as ServeHTTP's: an announce allocates nothing.
func (h *Handler) Respond(ctx context.Context, w *httpserver.Response, r *httpserver.Request) {
	st := h.pool.Get().(*state)
	req := &st.req
	*req = request{
		path:           r.Path,
		query:          r.RawQuery,
		remote:         r.Remote,
		realIP:         r.Header("X-Real-IP"),
		forwardedFor:   r.AppendValues(st.fwd[:0], "X-Forwarded-For"),
		acceptEncoding: r.AppendValues(st.enc[:0], "Accept-Encoding"),
	}
	own := st.buf
	st.buf = w.Body[:0]
	rep := h.serve(ctx, st, req)
	st.buf = own
	// Nothing of the request stays in the pool.
	clear(req.forwardedFor)
	clear(req.acceptEncoding)
	st.fwd, st.enc = req.forwardedFor[:0], req.acceptEncoding[:0]
	*req = request{}
	h.pool.Put(st)

	w.Status, w.Body, w.Shared = rep.status, rep.body, rep.shared
	w.Stream, w.StreamLen = rep.stream, rep.length
	if rep.gzip {
		w.AddHeader("Content-Encoding", "gzip")
	}
	if rep.vary {
		w.AddHeader("Vary", "Accept-Encoding")
	}
}

// writeReply writes rep through net/http.
func (h *Handler) writeReply(w http.ResponseWriter, r *http.Request, rep reply) {
	if rep.stream != nil {
		defer rep.stream.Close()
	}
	if rep.status == http.StatusNotFound {
		http.NotFound(w, r)
		return
	}
	hdr := w.Header()
	hdr["Content-Type"] = contentType
	if rep.gzip {
		hdr.Set("Content-Encoding", "gzip")
	}
	if rep.vary {
		hdr.Add("Vary", "Accept-Encoding")
	}
	// net/http computes Content-Length by itself for replies of up to
	// 2 KiB written in one go (nearly all announces), so it is set here
	// only for larger ones, where it saves the chunked encoding; that
	// keeps two allocations off the hot path.
	if rep.stream != nil {
		hdr.Set("Content-Length", strconv.FormatInt(rep.length, 10))
		out := io.Writer(w)
		if h.opts.WriteTimeout > 0 {
			out = &chunkWriter{w: w, rc: http.NewResponseController(w), timeout: h.opts.WriteTimeout}
		}
		buf := make([]byte, max(min(rep.length, streamChunk), 1))
		io.CopyBuffer(out, io.LimitReader(rep.stream, rep.length), buf)
		return
	}
	if len(rep.body) > 2048 {
		hdr.Set("Content-Length", strconv.Itoa(len(rep.body)))
	}
	w.Write(rep.body)
}

var contentType = []string{"text/plain"}

// serve answers one request, using st as scratch space: /announce and
// /scrape; anything else is 404.
func (h *Handler) serve(ctx context.Context, st *state, r *request) reply {
	var action metrics.Action
	switch r.path {
	case "/announce":
		action = metrics.Announce
	case "/scrape":
		action = metrics.Scrape
	default:
		return reply{status: http.StatusNotFound, body: notFound, shared: true}
	}
	start := time.Since(h.epoch)
	st.err = nil
	var rep reply
	if action == metrics.Announce {
		rep = h.announce(ctx, st, r)
	} else {
		rep = h.scrape(ctx, st, r)
	}
	h.opts.Metrics.Request(metrics.HTTP, action, metrics.ResultOf(st.err), time.Since(h.epoch)-start)
	return rep
}

func (h *Handler) announce(ctx context.Context, st *state, r *request) reply {
	client, ok := h.clientAddr(r)
	if !ok {
		return h.fail(st, tracker.ClientError("cannot tell the client's address"))
	}
	if len(r.query) > h.opts.MaxQueryBytes {
		return h.fail(st, tracker.ClientError("query too long"))
	}
	if err := parseAnnounce(r.query, &st.q); err != nil {
		return h.fail(st, err)
	}
	addr := client
	if st.q.ip.IsValid() && containsAddr(h.opts.TrustIPParam, client) {
		addr = st.q.ip
	}
	st.q.req.Addr = netip.AddrPortFrom(addr, st.q.port)
	if err := h.tracker.Announce(ctx, &st.q.req, &st.resp); err != nil {
		return h.fail(st, err)
	}
	st.buf = appendAnnounce(st.buf[:0], &st.q.req, &st.resp, client)
	return reply{status: http.StatusOK, body: st.buf}
}

// appendAnnounce encodes an announce reply. Keys are in sorted order, as
// bencode requires.
func appendAnnounce(b []byte, req *tracker.AnnounceRequest, resp *tracker.AnnounceResponse, client netip.Addr) []byte {
	b = append(b, 'd')
	b = bencode.AppendString(b, "complete")
	b = bencode.AppendUint(b, uint64(resp.Complete))
	b = bencode.AppendString(b, "downloaded")
	b = bencode.AppendUint(b, uint64(resp.Downloaded))
	b = bencode.AppendString(b, "external ip")
	if client.Is4() {
		a := client.As4()
		b = bencode.AppendBytes(b, a[:])
	} else {
		a := client.As16()
		b = bencode.AppendBytes(b, a[:])
	}
	b = bencode.AppendString(b, "incomplete")
	b = bencode.AppendUint(b, uint64(resp.Incomplete))
	b = bencode.AppendString(b, "interval")
	b = bencode.AppendInt(b, int64(resp.Interval/time.Second))
	b = bencode.AppendString(b, "min interval")
	b = bencode.AppendInt(b, int64(resp.MinInterval/time.Second))
	b = bencode.AppendString(b, "peers")
	if resp.Compacted {
		b = bencode.AppendBytes(b, resp.Compact4)
		if len(resp.Compact6) > 0 {
			b = bencode.AppendString(b, "peers6")
			b = bencode.AppendBytes(b, resp.Compact6)
		}
	} else if req.Compact {
		b = appendCompact(b, resp.Peers, false)
		if hasIPv6(resp.Peers) {
			b = bencode.AppendString(b, "peers6")
			b = appendCompact(b, resp.Peers, true)
		}
	} else {
		b = append(b, 'l')
		for i := range resp.Peers {
			p := &resp.Peers[i]
			b = append(b, 'd')
			b = bencode.AppendString(b, "ip")
			b = appendAddrString(b, p.Addr.Addr())
			if !resp.NoPeerID {
				b = bencode.AppendString(b, "peer id")
				b = bencode.AppendBytes(b, p.ID[:])
			}
			b = bencode.AppendString(b, "port")
			b = bencode.AppendUint(b, uint64(p.Addr.Port()))
			b = append(b, 'e')
		}
		b = append(b, 'e')
	}
	return append(b, 'e')
}

func hasIPv6(peers []bittorrent.Peer) bool {
	for i := range peers {
		if !peers[i].Addr.Addr().Is4() {
			return true
		}
	}
	return false
}

// appendCompact encodes the peers of one family as a BEP 23 / BEP 7 compact
// string: 6 bytes per IPv4 peer, 18 per IPv6 peer, port in network order.
func appendCompact(b []byte, peers []bittorrent.Peer, v6 bool) []byte {
	size, n := 6, 0
	if v6 {
		size = 18
	}
	for i := range peers {
		if peers[i].Addr.Addr().Is4() != v6 {
			n++
		}
	}
	b = strconv.AppendInt(b, int64(n*size), 10)
	b = append(b, ':')
	for i := range peers {
		a := peers[i].Addr
		if a.Addr().Is4() == v6 {
			continue
		}
		if v6 {
			ip := a.Addr().As16()
			b = append(b, ip[:]...)
		} else {
			ip := a.Addr().As4()
			b = append(b, ip[:]...)
		}
		b = append(b, byte(a.Port()>>8), byte(a.Port()))
	}
	return b
}

// appendAddrString encodes an address as a bencoded text string.
func appendAddrString(b []byte, a netip.Addr) []byte {
	var tmp [64]byte
	s := a.AppendTo(tmp[:0])
	return bencode.AppendBytes(b, s)
}

func (h *Handler) scrape(ctx context.Context, st *state, r *request) reply {
	if len(r.query) > h.opts.MaxQueryBytes {
		return h.fail(st, tracker.ClientError("query too long"))
	}
	var err error
	st.hashes, err = parseScrape(r.query, st.hashes[:0], h.tracker.Config().MaxScrapeHashes)
	if err != nil {
		return h.fail(st, err)
	}
	if len(st.hashes) == 0 {
		return h.fullScrape(st, r)
	}
	// A bencoded dictionary has each key once, in order.
	slices.SortFunc(st.hashes, func(a, b bittorrent.InfoHash) int { return bytes.Compare(a[:], b[:]) })
	st.hashes = slices.Compact(st.hashes)
	if err := h.tracker.Scrape(ctx, st.hashes, &st.scrape); err != nil {
		return h.fail(st, err)
	}
	b := append(st.buf[:0], 'd')
	b = bencode.AppendString(b, "files")
	b = append(b, 'd')
	for i, ih := range st.hashes {
		b = appendScrapeEntry(b, ih, st.scrape.Files[i])
	}
	b = append(b, 'e')
	b = appendFlags(b, st.scrape.MinRequestInterval)
	st.buf = append(b, 'e')
	return reply{status: http.StatusOK, body: st.buf}
}

func appendScrapeEntry(b []byte, ih bittorrent.InfoHash, s bittorrent.Stats) []byte {
	b = bencode.AppendBytes(b, ih[:])
	b = append(b, 'd')
	b = bencode.AppendString(b, "complete")
	b = bencode.AppendUint(b, uint64(s.Seeders))
	b = bencode.AppendString(b, "downloaded")
	b = bencode.AppendUint(b, uint64(s.Downloaded))
	b = bencode.AppendString(b, "incomplete")
	b = bencode.AppendUint(b, uint64(s.Leechers))
	return append(b, 'e')
}

func appendFlags(b []byte, minRequestInterval time.Duration) []byte {
	b = bencode.AppendString(b, "flags")
	b = append(b, 'd')
	b = bencode.AppendString(b, "min_request_interval")
	b = bencode.AppendInt(b, int64(minRequestInterval/time.Second))
	return append(b, 'e')
}

// acceptsGzip reports whether Accept-Encoding fields accept gzip: one of
// their comma-separated codings is "gzip", without "q=0".
func acceptsGzip(fields []string) bool {
	for _, v := range fields {
		for v != "" {
			var part string
			part, v, _ = strings.Cut(v, ",")
			coding, q, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.TrimSpace(coding) == "gzip" && strings.ReplaceAll(q, " ", "") != "q=0" {
				return true
			}
		}
	}
	return false
}

// fail answers with a bencoded failure reason. A client error says what the
// client did wrong; an overloaded tracker, or a full scrape that cannot be
// sent now, says so, with BEP 31's "retry in" (in minutes); any other error
// (the store's) is the client told only that the tracker failed. Overload
// and store errors go to Options.Errors, which logs a line per kind at most
// every 10 s, not one per request.
func (h *Handler) fail(st *state, err error) reply {
	st.err = err
	msg := err.Error()
	var retryIn int64
	if oe, ok := err.(*tracker.OverloadError); ok {
		retryIn = oe.RetryInMinutes()
		h.opts.Errors.Log(context.Background(), slog.LevelWarn, ratelog.KindOverload,
			"request refused", "protocol", "http", "reason", msg)
	} else if re, ok := err.(*retryError); ok {
		retryIn = re.minutes
	} else if !tracker.IsClientError(err) {
		h.opts.Errors.Log(context.Background(), slog.LevelError, ratelog.KindStore,
			"request failed", "protocol", "http", "err", err)
		msg = "internal tracker error"
	}
	b := append(st.buf[:0], 'd')
	b = bencode.AppendString(b, "failure reason")
	b = bencode.AppendString(b, msg)
	if retryIn > 0 {
		b = bencode.AppendString(b, "retry in")
		b = bencode.AppendInt(b, retryIn)
	}
	st.buf = append(b, 'e')
	return reply{status: http.StatusOK, body: st.buf}
}

// clientAddr returns the address of the client: the connection's peer, or,
// when that peer is a trusted proxy, the address the proxy forwards in
// X-Real-IP or, failing that, the nearest untrusted hop of X-Forwarded-For.
func (h *Handler) clientAddr(r *request) (netip.Addr, bool) {
	if !r.remote.IsValid() {
		return netip.Addr{}, false
	}
	peer := r.remote.Addr().Unmap()
	if len(h.opts.TrustedProxies) == 0 || !containsAddr(h.opts.TrustedProxies, peer) {
		return peer, true
	}
	if v := r.realIP; v != "" {
		if a, err := netip.ParseAddr(strings.TrimSpace(v)); err == nil {
			return a.Unmap(), true
		}
	}
	// The hops from the nearest (the last) to the farthest, over the
	// X-Forwarded-For fields from the last.
	for i := len(r.forwardedFor) - 1; i >= 0; i-- {
		v := r.forwardedFor[i]
		for {
			j := strings.LastIndexByte(v, ',') // -1: v is the first hop
			a, err := netip.ParseAddr(strings.TrimSpace(v[j+1:]))
			if err != nil {
				return peer, true
			}
			a = a.Unmap()
			if !containsAddr(h.opts.TrustedProxies, a) {
				return a, true
			}
			peer = a
			if j < 0 {
				break
			}
			v = v[:j]
		}
	}
	return peer, true
}

func containsAddr(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// streamChunk is the most ServeHTTP reads from a streamed body at once
// (as httpserver does).
const streamChunk = 64 << 10

// chunkWriter writes each chunk of a streamed body through net/http's
// buffer to the socket under a deadline of its own, so that a long body
// to a slow but steady reader is not cut by one deadline for the whole.
type chunkWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (cw *chunkWriter) Write(p []byte) (int, error) {
	if err := cw.rc.SetWriteDeadline(time.Now().Add(cw.timeout)); err != nil {
		return 0, err
	}
	n, err := cw.w.Write(p)
	if err == nil {
		err = cw.rc.Flush()
	}
	return n, err
}
