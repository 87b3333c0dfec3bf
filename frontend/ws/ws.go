// Package ws is trackd's WebSocket frontend: the WebTorrent tracker
// protocol as webtorrent's bittorrent-tracker speaks it, over any
// transport that implements package wsserver's contract. A Handler opens
// a Session per connection; each text message is one JSON object:
//
//   - announce {action:"announce", info_hash, peer_id, numwant, uploaded,
//     downloaded, left, event?, offers?:[{offer_id, offer}]}: the peer
//     joins (or updates, or leaves with "stopped") the torrent's swarm of
//     WebSocket peers and gets {action:"announce", info_hash, interval,
//     complete, incomplete}; each offer, up to numwant and MaxOffers, goes
//     to a different random peer of the swarm (a seeder's to leechers
//     only) as {action:"announce", info_hash, peer_id:<sender>, offer_id,
//     offer}.
//   - answer {action:"announce", info_hash, peer_id, to_peer_id, offer_id,
//     answer}: forwarded to to_peer_id's connection as {action:"announce",
//     info_hash, peer_id:<answerer>, offer_id, answer}; no reply.
//   - scrape {action:"scrape", info_hash: one or a list}: {action:"scrape",
//     files:{<info_hash>:{complete, incomplete, downloaded}},
//     flags:{min_request_interval}}.
//
// info_hash, peer_id, to_peer_id and offer_id are "binary strings": 20
// JSON string characters from U+0000 to U+00FF, one byte each. A message
// refused gets {"failure reason", action?, info_hash?} (the action and
// info_hash when they were read: bittorrent-tracker's client shows a
// failure only for an announce of its own torrent) and the connection
// stays open; the transport closes it for framing and size.
//
// # What a WebSocket swarm is, and what its scrape counts
//
// A WebSocket peer is a peer id bound to the connection it announced
// over, not an address: browsers can reach only WebRTC peers, through
// offers and answers this tracker relays, and WebRTC peers cannot dial
// the TCP/uTP peers of HTTP and UDP announces, nor these them. So the
// WebSocket swarms live apart from the store's (package signaling, in
// the instance the sockets are connected to, with any store), a ws
// announce never gets HTTP or UDP peers and the reverse, and a ws scrape
// counts the WebSocket swarm alone: complete and incomplete are the
// peers a browser could get, which is what a WebTorrent client scrapes
// for. An HTTP or UDP scrape of the same torrent counts its own peers.
// downloaded counts "completed" events of WebSocket peers; it is lost
// when the swarm empties.
//
// The core's policy applies: the access list (tracker.Allowed), and the
// interval (tracker.IntervalsFor the WebSocket peers' number, doubled
// while the tracker sheds load). A scrape without info_hash (a full
// scrape in bittorrent-tracker) is refused: the full scrape is served
// over HTTP, where it is built off the request path.
//
// # Bounds per connection
//
// Every default is an exported constant, and Options say how to change
// it: offers relayed per announce (DefaultMaxOffers), torrents per
// connection (DefaultMaxTorrents), announces with offers per connection
// (a token bucket: DefaultOfferBurst at once, DefaultOfferRate per second
// after), the size of one offer or answer object (DefaultMaxSignalBytes),
// scrape hashes (tracker's MaxScrapeHashes). An answer goes only to a
// peer of the swarm, and only from a peer id that announced the torrent
// over the same connection. A peer id bound to one connection is refused
// to another until it expires (signaling.ErrPeerIDTaken).
package ws

import (
	"context"
	"errors"
	"sync"
	"time"

	"trackd/bittorrent"
	"trackd/signaling"
	"trackd/tracker"
	"trackd/wsserver"
)

// Defaults of Options.
const (
	// DefaultMaxOffers is the most offers of one announce that are
	// relayed; more are ignored (as bittorrent-tracker ignores those
	// beyond its 82). webtorrent's client sends at most 5; 10 is
	// aquatic_ws's cap. Each offer goes to another peer, so this is how
	// many connections one announce can write to.
	DefaultMaxOffers = 10
	// DefaultMaxTorrents is the most torrents one connection may have
	// joined at once (webtorrent shares one socket among a page's
	// torrents).
	DefaultMaxTorrents = 100
	// DefaultOfferBurst and DefaultOfferRate are the token bucket of
	// announces with offers per connection: DefaultOfferBurst at once
	// (a page starting many torrents), then DefaultOfferRate per second.
	// An announce over the limit is applied and answered, but its offers
	// are not relayed (counted as DropRateLimited).
	DefaultOfferBurst = 20
	DefaultOfferRate  = 1
	// DefaultMaxSignalBytes is the largest offer or answer object relayed:
	// an SDP with its candidates (trickle off) is a few KB.
	DefaultMaxSignalBytes = 16 << 10
	// DefaultMaxPeers is a bound for Options.MaxPeers, the WebSocket
	// peers of all swarms together, for a tracker on the open internet
	// (the configuration's default): about 160 MB of swarms at most,
	// whatever the number of connections and addresses a flood uses.
	DefaultMaxPeers = 1_000_000
)

// leftUnknown is a left not sent, or no count: a leecher.
const leftUnknown = tracker.LeftUnknown

// Options configure a Handler. The zero value of a field means its
// default.
type Options struct {
	// Registry keeps the swarms; nil means a signaling.Memory with
	// PeerLifetime.
	Registry signaling.Registry
	// PeerLifetime is how long a peer stays in its swarm after its last
	// announce, when Registry is nil; zero means
	// signaling.DefaultPeerLifetime.
	PeerLifetime time.Duration
	// MaxPeers bounds the peers of all swarms together when Registry is
	// nil (signaling.Options.MaxPeers): a new one beyond it is refused
	// as the tracker being full. Zero means no bound but the
	// connections' and MaxTorrents.
	MaxPeers int
	// MaxOffers, MaxTorrents, OfferBurst, OfferRate and MaxSignalBytes
	// are the bounds per connection (see the package documentation).
	MaxOffers      int
	MaxTorrents    int
	OfferBurst     int
	OfferRate      float64
	MaxSignalBytes int
	// Metrics counts messages, relays and drops; nil counts nothing.
	Metrics Metrics
	// Now returns the current time (for the token buckets); nil means
	// time.Now.
	Now func() time.Time
}

// Action is what a message asked for, as Metrics counts it.
type Action uint8

const (
	ActionInvalid  Action = iota // not parsed, or no known action
	ActionAnnounce               // an announce (with or without offers)
	ActionAnswer                 // an announce carrying an answer
	ActionScrape
)

func (a Action) String() string {
	return [...]string{"invalid", "announce", "answer", "scrape"}[a]
}

// Result is how a message ended, as Metrics counts it.
type Result uint8

const (
	ResultOK         Result = iota
	ResultRefused           // a failure reason for the client's fault
	ResultOverloaded        // a failure reason for the tracker's state (full)
	ResultDropped           // an answer that went nowhere (see Drop)
)

func (r Result) String() string {
	return [...]string{"ok", "refused", "overloaded", "dropped"}[r]
}

// Relay is what was relayed to another connection.
type Relay uint8

const (
	RelayOffer Relay = iota
	RelayAnswer
)

func (r Relay) String() string { return [...]string{"offer", "answer"}[r] }

// Drop is why a relay did not happen.
type Drop uint8

const (
	DropNoPeer      Drop = iota // an answer to a peer not in the swarm
	DropNotMember               // an answer from a peer id not announced on its connection
	DropRateLimited             // offers of an announce over the connection's rate
	DropSendFailed              // the recipient's connection refused it (closed, or its queue full)
)

func (d Drop) String() string {
	return [...]string{"no_peer", "not_member", "rate_limited", "send_failed"}[d]
}

// Metrics receives the Handler's counts; server wires it to package
// metrics. Its methods are called on the message path and must be
// cheap and safe for concurrent use.
type Metrics interface {
	Message(Action, Result)
	Relayed(r Relay, n int)
	Dropped(d Drop, n int)
}

type nopMetrics struct{}

func (nopMetrics) Message(Action, Result) {}
func (nopMetrics) Relayed(Relay, int)     {}
func (nopMetrics) Dropped(Drop, int)      {}

// Handler is a wsserver.Handler that speaks the WebTorrent tracker
// protocol with a tracker.Tracker's policy. It is safe for concurrent
// use.
type Handler struct {
	t       *tracker.Tracker
	reg     signaling.Registry
	opts    Options
	lim     limits
	metrics Metrics
	pool    sync.Pool // *scratch
}

// scratch is one message's working space, pooled: sessions keep none of
// it between messages.
type scratch struct {
	m     message
	out   []byte
	to    []signaling.Sender
	stats []bittorrent.Stats
	ann   signaling.Announce
}

var _ wsserver.Handler = (*Handler)(nil)

// NewHandler returns a Handler applying t's policy.
func NewHandler(t *tracker.Tracker, opts Options) *Handler {
	if opts.MaxOffers <= 0 {
		opts.MaxOffers = DefaultMaxOffers
	}
	opts.MaxOffers = min(opts.MaxOffers, signaling.MaxPick)
	if opts.MaxTorrents <= 0 {
		opts.MaxTorrents = DefaultMaxTorrents
	}
	if opts.OfferBurst <= 0 {
		opts.OfferBurst = DefaultOfferBurst
	}
	if opts.OfferRate <= 0 {
		opts.OfferRate = DefaultOfferRate
	}
	if opts.MaxSignalBytes <= 0 {
		opts.MaxSignalBytes = DefaultMaxSignalBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Registry == nil {
		opts.Registry = signaling.NewMemory(signaling.Options{PeerLifetime: opts.PeerLifetime, MaxPeers: opts.MaxPeers, Now: opts.Now})
	}
	h := &Handler{
		t:       t,
		reg:     opts.Registry,
		opts:    opts,
		lim:     limits{offers: opts.MaxOffers, signal: opts.MaxSignalBytes, hashes: t.Config().MaxScrapeHashes},
		metrics: opts.Metrics,
	}
	if h.metrics == nil {
		h.metrics = nopMetrics{}
	}
	h.pool.New = func() any {
		return &scratch{out: make([]byte, 0, 1024), to: make([]signaling.Sender, 0, opts.MaxOffers)}
	}
	return h
}

// Registry returns the swarms the Handler keeps.
func (h *Handler) Registry() signaling.Registry { return h.reg }

// Expire removes the peers that stopped announcing and returns how many;
// server calls it periodically (peers past their lifetime are never
// offered to nor routed to, even before).
func (h *Handler) Expire() int { return h.reg.Expire() }

// Open implements wsserver.Handler.
func (h *Handler) Open(c wsserver.Conn) wsserver.Session {
	return &session{h: h, c: c, tokens: float32(h.opts.OfferBurst), last: h.opts.Now().UnixNano()}
}

// session is one connection's state: what it joined and its offer
// bucket (64 bytes, and 40 per torrent joined).
type session struct {
	h      *Handler
	c      wsserver.Conn
	joined []joined
	last   int64 // Unix nanoseconds the bucket was last filled
	tokens float32
}

// Send is the session as the registry's signaling.Sender: its
// connection's Send. The registry binds peers to sessions, which are
// pointers and so compare as the registry needs whatever type the
// transport's Conn is. It is called from other connections' sessions;
// it reads only s.c, which never changes.
func (s *session) Send(msg []byte) bool { return s.c.Send(msg) }

type joined struct {
	ih bittorrent.InfoHash
	id bittorrent.PeerID
}

// The refusals of the handler (the parser's are in codec.go).
const (
	errNoInfoHash   = parseError("info_hash missing")
	errScrapeAll    = parseError("scrape needs info_hash (the full scrape is served over HTTP)")
	errTooMany      = parseError("too many torrents on this connection")
	errNoAction     = parseError("action missing")
	errAnswerFields = parseError("an answer needs to_peer_id and offer_id")
)

// Message implements wsserver.Session.
func (s *session) Message(ctx context.Context, msg []byte) {
	h := s.h
	sc := h.pool.Get().(*scratch)
	defer h.pool.Put(sc)
	m := &sc.m
	err := parse(msg, m, h.lim)
	act := ActionInvalid
	switch m.action {
	case actAnnounce:
		act = ActionAnnounce
		if m.answer != nil {
			act = ActionAnswer
		}
	case actScrape:
		act = ActionScrape
	}
	if err == nil && m.action == actNone {
		err = errNoAction
	}
	if err != nil {
		s.fail(sc, err)
		h.metrics.Message(act, ResultRefused)
		return
	}
	var res Result
	switch act {
	case ActionAnswer:
		res = s.answer(sc)
	case ActionAnnounce:
		res = s.announce(sc)
	default:
		res = s.scrape(sc)
	}
	h.metrics.Message(act, res)
}

// Closed implements wsserver.Session: the peer leaves every swarm it
// joined over this connection.
func (s *session) Closed() {
	for _, j := range s.joined {
		s.h.reg.Leave(j.ih, j.id, s)
	}
	s.joined = nil
}

// fail sends err as a failure reason, with the message's action and
// info_hash when it had them.
func (s *session) fail(sc *scratch, err error) Result {
	m := &sc.m
	res := ResultRefused
	var pe parseError
	var ce tracker.ClientError
	reason := err.Error()
	switch {
	case errors.As(err, &pe), errors.As(err, &ce):
	case errors.Is(err, signaling.ErrPeerIDTaken):
	default:
		res = ResultOverloaded
	}
	b := append(sc.out[:0], '{')
	switch m.action {
	case actAnnounce:
		b = append(b, `"action":"announce",`...)
	case actScrape:
		b = append(b, `"action":"scrape",`...)
	}
	if m.hasInfoHash {
		b = append(b, `"info_hash":`...)
		b = appendBinary(b, m.infoHash[:])
		b = append(b, ',')
	}
	b = append(b, `"failure reason":`...)
	b = appendBinary(b, reason)
	b = append(b, '}')
	sc.out = b
	s.c.Send(b)
	return res
}

// take takes a token from the offer bucket, if there is one.
func (s *session) take() bool {
	now := s.h.opts.Now().UnixNano()
	if d := now - s.last; d > 0 {
		s.tokens = min(s.tokens+float32(float64(d)/1e9*s.h.opts.OfferRate), float32(s.h.opts.OfferBurst))
		s.last = now
	}
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	return true
}

// joinedAt is the place of (ih, id) in s.joined, or -1.
func (s *session) joinedAt(ih bittorrent.InfoHash, id bittorrent.PeerID) int {
	for i := range s.joined {
		if s.joined[i].ih == ih && s.joined[i].id == id {
			return i
		}
	}
	return -1
}

// room makes room for one more torrent: false if the connection holds
// its most. Swarms the connection's peers expired from no longer count.
func (s *session) room() bool {
	if len(s.joined) < s.h.opts.MaxTorrents {
		return true
	}
	kept := s.joined[:0]
	for _, j := range s.joined {
		if s.h.reg.Has(j.ih, j.id, s) {
			kept = append(kept, j)
		}
	}
	clear(s.joined[len(kept):])
	s.joined = kept
	return len(s.joined) < s.h.opts.MaxTorrents
}

func (s *session) announce(sc *scratch) Result {
	h, m := s.h, &sc.m
	switch {
	case m.hashList:
		return s.fail(sc, errInfoHash)
	case !m.hasInfoHash:
		return s.fail(sc, errNoInfoHash)
	case !m.hasPeerID:
		return s.fail(sc, errPeerID)
	}
	if err := h.t.Allowed(m.infoHash); err != nil {
		return s.fail(sc, err)
	}
	at := s.joinedAt(m.infoHash, m.peerID)
	if at < 0 && m.event != bittorrent.EventStopped && !s.room() {
		return s.fail(sc, errTooMany)
	}
	want := len(m.offers)
	if m.numWant >= 0 {
		want = min(want, m.numWant)
	}
	if m.event == bittorrent.EventStopped {
		want = 0
	}
	if want > 0 && !s.take() {
		h.metrics.Dropped(DropRateLimited, want)
		want = 0
	}
	sc.ann = signaling.Announce{
		InfoHash: m.infoHash,
		PeerID:   m.peerID,
		Via:      s,
		Event:    m.event,
		Seeder:   m.left == 0,
		NumWant:  want,
	}
	to, st, err := h.reg.Announce(&sc.ann, sc.to[:0])
	sc.to = to
	if err != nil {
		return s.fail(sc, err)
	}
	switch {
	case m.event == bittorrent.EventStopped:
		if at >= 0 {
			last := len(s.joined) - 1
			s.joined[at] = s.joined[last]
			s.joined = s.joined[:last]
		}
	case at < 0:
		s.joined = append(s.joined, joined{m.infoHash, m.peerID})
	}
	interval, _ := h.t.IntervalsFor(h.reg.Totals().Peers())
	b := append(sc.out[:0], `{"action":"announce","info_hash":`...)
	b = appendBinary(b, m.infoHash[:])
	b = append(b, `,"interval":`...)
	b = appendUint(b, uint64(interval/time.Second))
	b = append(b, `,"complete":`...)
	b = appendUint(b, uint64(st.Seeders))
	b = append(b, `,"incomplete":`...)
	b = appendUint(b, uint64(st.Leechers))
	b = append(b, '}')
	sc.out = b
	s.c.Send(b)

	sent, failed := 0, 0
	for i, peer := range to {
		o := &m.offers[i]
		b := appendRelayed(sc.out[:0], &m.infoHash, &m.peerID, &o.id, `,"offer":`, o.raw)
		sc.out = b
		if peer.Send(b) {
			sent++
		} else {
			failed++
		}
	}
	clear(to) // the pool keeps no connections alive
	if sent > 0 {
		h.metrics.Relayed(RelayOffer, sent)
	}
	if failed > 0 {
		h.metrics.Dropped(DropSendFailed, failed)
	}
	return ResultOK
}

// appendRelayed appends the message a peer is relayed: an offer or an
// answer (field, with its leading comma and colon, and its raw JSON
// object) from peer from, in swarm ih, for offer id.
func appendRelayed(b []byte, ih *bittorrent.InfoHash, from, id *[20]byte, field string, raw []byte) []byte {
	b = append(b, `{"action":"announce","info_hash":`...)
	b = appendBinary(b, ih[:])
	b = append(b, `,"peer_id":`...)
	b = appendBinary(b, from[:])
	b = append(b, `,"offer_id":`...)
	b = appendBinary(b, id[:])
	b = append(b, field...)
	b = append(b, raw...)
	return append(b, '}')
}

func (s *session) answer(sc *scratch) Result {
	h, m := s.h, &sc.m
	switch {
	case m.hashList:
		return s.fail(sc, errInfoHash)
	case !m.hasInfoHash:
		return s.fail(sc, errNoInfoHash)
	case !m.hasPeerID:
		return s.fail(sc, errPeerID)
	case !m.hasTo || !m.hasOfferID:
		return s.fail(sc, errAnswerFields)
	}
	to, err := h.reg.Route(m.infoHash, m.peerID, s, m.toPeerID)
	switch {
	case errors.Is(err, signaling.ErrNotMember):
		h.metrics.Dropped(DropNotMember, 1)
		return ResultDropped
	case err != nil:
		h.metrics.Dropped(DropNoPeer, 1)
		return ResultDropped
	}
	b := appendRelayed(sc.out[:0], &m.infoHash, &m.peerID, &m.offerID, `,"answer":`, m.answer)
	sc.out = b
	if !to.Send(b) {
		h.metrics.Dropped(DropSendFailed, 1)
		return ResultDropped
	}
	h.metrics.Relayed(RelayAnswer, 1)
	return ResultOK
}

func (s *session) scrape(sc *scratch) Result {
	h, m := s.h, &sc.m
	hashes := m.hashes
	switch {
	case m.hasInfoHash:
		hashes = append(hashes[:0], m.infoHash)
		m.hashes = hashes
	case !m.hashList:
		return s.fail(sc, errScrapeAll)
	}
	st := h.reg.Scrape(hashes, sc.stats[:0])
	sc.stats = st
	interval, _ := h.t.IntervalsFor(h.reg.Totals().Peers())
	b := append(sc.out[:0], `{"action":"scrape","files":{`...)
	for i, ih := range hashes {
		if i > 0 {
			b = append(b, ',')
		}
		if h.t.Allowed(ih) != nil {
			st[i] = bittorrent.Stats{} // refused now: not reported
		}
		b = appendBinary(b, ih[:])
		b = append(b, `:{"complete":`...)
		b = appendUint(b, uint64(st[i].Seeders))
		b = append(b, `,"incomplete":`...)
		b = appendUint(b, uint64(st[i].Leechers))
		b = append(b, `,"downloaded":`...)
		b = appendUint(b, uint64(st[i].Downloaded))
		b = append(b, '}')
	}
	b = append(b, `},"flags":{"min_request_interval":`...)
	b = appendUint(b, uint64(interval/time.Second))
	b = append(b, `}}`...)
	sc.out = b
	s.c.Send(b)
	return ResultOK
}
