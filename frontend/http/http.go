// Package http is trackd's HTTP frontend: it turns announce and scrape
// requests (BEP 3, BEP 23, BEP 7, BEP 48) into calls on the core tracker and
// writes the bencoded replies. It holds no tracker logic of its own.
package http

import (
	"bytes"
	"compress/gzip"
	"context"
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
	"trackd/store"
	"trackd/tracker"
)

// Options configure a Handler. The zero value serves no full scrape and
// trusts no proxy.
type Options struct {
	// FullScrape enables the scrape without info_hash, which lists every
	// torrent. It is computed at most once per FullScrapeInterval.
	FullScrape         bool
	FullScrapeInterval time.Duration
	// MaxQueryBytes refuses longer query strings (0: 8 KiB).
	MaxQueryBytes int
	// TrustedProxies are the reverse proxies whose X-Real-IP and
	// X-Forwarded-For headers name the client.
	TrustedProxies []netip.Prefix
	// TrustIPParam are the clients whose "ip" parameter is believed.
	TrustIPParam []netip.Prefix
	// Logger receives server errors; nil discards them.
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Handler serves /announce and /scrape. Anything else is 404.
type Handler struct {
	tracker *tracker.Tracker
	opts    Options
	log     *slog.Logger
	pool    sync.Pool // *state

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
}

// NewHandler returns a Handler that answers with t.
func NewHandler(t *tracker.Tracker, opts Options) *Handler {
	if opts.MaxQueryBytes <= 0 {
		opts.MaxQueryBytes = 8 << 10
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{tracker: t, opts: opts, log: log}
	h.pool.New = func() any { return &state{buf: make([]byte, 0, 1024)} }
	return h
}

// ServeHTTP routes a request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/announce":
		h.announce(w, r)
	case "/scrape":
		h.scrape(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (h *Handler) announce(w http.ResponseWriter, r *http.Request) {
	st := h.pool.Get().(*state)
	defer h.pool.Put(st)
	client, ok := h.clientAddr(r)
	if !ok {
		h.fail(w, st, tracker.ClientError("cannot tell the client's address"))
		return
	}
	if len(r.URL.RawQuery) > h.opts.MaxQueryBytes {
		h.fail(w, st, tracker.ClientError("query too long"))
		return
	}
	if err := parseAnnounce(r.URL.RawQuery, &st.q); err != nil {
		h.fail(w, st, err)
		return
	}
	addr := client
	if st.q.ip.IsValid() && containsAddr(h.opts.TrustIPParam, client) {
		addr = st.q.ip
	}
	st.q.req.Addr = netip.AddrPortFrom(addr, st.q.port)
	if err := h.tracker.Announce(r.Context(), &st.q.req, &st.resp); err != nil {
		h.fail(w, st, err)
		return
	}
	st.buf = appendAnnounce(st.buf[:0], &st.q.req, &st.resp, client)
	write(w, st.buf)
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
	if req.Compact {
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
			if !req.NoPeerID {
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

func (h *Handler) scrape(w http.ResponseWriter, r *http.Request) {
	st := h.pool.Get().(*state)
	defer h.pool.Put(st)
	if len(r.URL.RawQuery) > h.opts.MaxQueryBytes {
		h.fail(w, st, tracker.ClientError("query too long"))
		return
	}
	var err error
	st.hashes, err = parseScrape(r.URL.RawQuery, st.hashes[:0], h.tracker.Config().MaxScrapeHashes)
	if err != nil {
		h.fail(w, st, err)
		return
	}
	if len(st.hashes) == 0 {
		h.fullScrape(w, r, st)
		return
	}
	// A bencoded dictionary has each key once, in order.
	slices.SortFunc(st.hashes, func(a, b bittorrent.InfoHash) int { return bytes.Compare(a[:], b[:]) })
	st.hashes = slices.Compact(st.hashes)
	if err := h.tracker.Scrape(r.Context(), st.hashes, &st.scrape); err != nil {
		h.fail(w, st, err)
		return
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
	write(w, st.buf)
}

func appendScrapeEntry(b []byte, ih bittorrent.InfoHash, s store.Stats) []byte {
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

// fullScrape is the cached reply to a scrape of every torrent.
type fullScrape struct {
	mu      sync.Mutex
	built   time.Time
	plain   []byte
	gzipped []byte
}

func (h *Handler) fullScrape(w http.ResponseWriter, r *http.Request, st *state) {
	if !h.opts.FullScrape {
		h.fail(w, st, tracker.ClientError("full scrape is disabled on this tracker: give info_hash"))
		return
	}
	plain, gz, err := h.full.get(r.Context(), h)
	if err != nil {
		h.fail(w, st, err)
		return
	}
	body := plain
	if acceptsGzip(r) {
		body = gz
		w.Header().Set("Content-Encoding", "gzip")
	}
	w.Header().Add("Vary", "Accept-Encoding")
	write(w, body)
}

// get returns the full scrape, building it if the cached one is older than
// the configured interval. Concurrent callers wait for one build.
func (f *fullScrape) get(ctx context.Context, h *Handler) (plain, gz []byte, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := h.opts.Now()
	if f.plain != nil && now.Sub(f.built) < h.opts.FullScrapeInterval {
		return f.plain, f.gzipped, nil
	}
	type entry struct {
		ih bittorrent.InfoHash
		s  store.Stats
	}
	var all []entry
	interval, err := h.tracker.ScrapeAll(ctx, func(ih bittorrent.InfoHash, s store.Stats) error {
		all = append(all, entry{ih, s})
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	slices.SortFunc(all, func(a, b entry) int { return bytes.Compare(a.ih[:], b.ih[:]) })
	b := make([]byte, 0, 16+len(all)*80)
	b = append(b, 'd')
	b = bencode.AppendString(b, "files")
	b = append(b, 'd')
	for _, e := range all {
		b = appendScrapeEntry(b, e.ih, e.s)
	}
	b = append(b, 'e')
	b = appendFlags(b, interval)
	b = append(b, 'e')
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write(b)
	zw.Close()
	f.plain, f.gzipped, f.built = b, zb.Bytes(), now
	return f.plain, f.gzipped, nil
}

func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(v, ",") {
			coding, q, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.TrimSpace(coding) == "gzip" && strings.ReplaceAll(q, " ", "") != "q=0" {
				return true
			}
		}
	}
	return false
}

// fail answers with a bencoded failure reason. A client error says what the
// client did wrong; a server error is logged and the client told only that
// the tracker failed.
func (h *Handler) fail(w http.ResponseWriter, st *state, err error) {
	msg := err.Error()
	if !tracker.IsClientError(err) {
		h.log.Error("request failed", "err", err)
		msg = "internal tracker error"
	}
	b := append(st.buf[:0], 'd')
	b = bencode.AppendString(b, "failure reason")
	b = bencode.AppendString(b, msg)
	st.buf = append(b, 'e')
	write(w, st.buf)
}

// write sends body as the whole reply. net/http computes Content-Length by
// itself for replies of up to 2 KiB written in one go (nearly all
// announces), so it is set here only for larger ones, where it saves the
// chunked encoding; that keeps two allocations off the hot path.
func write(w http.ResponseWriter, body []byte) {
	hdr := w.Header()
	hdr["Content-Type"] = contentType
	if len(body) > 2048 {
		hdr.Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.Write(body)
}

var contentType = []string{"text/plain"}

// clientAddr returns the address of the client: the connection's peer, or,
// when that peer is a trusted proxy, the address the proxy forwards in
// X-Real-IP or, failing that, the nearest untrusted hop of X-Forwarded-For.
func (h *Handler) clientAddr(r *http.Request) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	peer := ap.Addr().Unmap()
	if len(h.opts.TrustedProxies) == 0 || !containsAddr(h.opts.TrustedProxies, peer) {
		return peer, true
	}
	if v := r.Header.Get("X-Real-IP"); v != "" {
		if a, err := netip.ParseAddr(strings.TrimSpace(v)); err == nil {
			return a.Unmap(), true
		}
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return peer, true
			}
			a = a.Unmap()
			if !containsAddr(h.opts.TrustedProxies, a) {
				return a, true
			}
			peer = a
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
