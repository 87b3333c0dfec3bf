// Package tracker is the core of trackd: what an announce and a scrape mean,
// how long clients are told to wait, and how many peers they get. It does no
// I/O of its own; swarms live behind the store.Store interface and the wire
// formats live in the frontends, which translate requests into the types
// here and the results back.
package tracker

import (
	"context"
	"errors"
	"math"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"trackd/bittorrent"
	"trackd/store"
)

// Config sets the tracker's policy. The zero value of a field means its
// default (see DefaultConfig).
type Config struct {
	// TargetAnnounceRate is the whole tracker's announce rate, in announces
	// per second, that the interval policy aims at: the interval handed out
	// is (total peers / TargetAnnounceRate) seconds, clamped to
	// [MinInterval, MaxInterval]. This keeps the load on the server
	// constant as swarms grow. Total peers are what the store's Totals
	// count: with a fleet's sync, every instance's store holds the
	// fleet's peers, so the target is the fleet's rate, shared by its
	// instances.
	TargetAnnounceRate float64
	// MinInterval and MaxInterval bound the announce interval.
	MinInterval time.Duration
	MaxInterval time.Duration
	// MinAnnounceInterval is the "min interval" sent to clients: how soon a
	// client may re-announce of its own accord. Zero means half the
	// interval handed out.
	MinAnnounceInterval time.Duration
	// DefaultNumWant is the number of peers given when a client does not
	// say how many it wants; MaxNumWant caps what a client may ask for.
	DefaultNumWant int
	MaxNumWant     int
	// RequireCompact refuses announces that ask for neither compact nor
	// no_peer_id replies (the original "require a certain announce
	// protocol" option).
	RequireCompact bool
	// MaxScrapeHashes caps the info hashes in one scrape.
	MaxScrapeHashes int
	// MaxPending bounds the announces and scrapes the tracker works on at
	// once. One more is refused at once with an *OverloadError, without
	// waiting on the store, and for OverloadBackoff after the last refusal
	// the interval handed out is doubled (within MaxInterval), so that
	// clients come back less often. Zero means no bound. It matters for a
	// store that waits on the network (Redis): with the in-memory store a
	// request never waits, and the sockets' queues are the bound.
	MaxPending int
	// RetryIn is how long an overloaded tracker tells clients to wait
	// (BEP 31 "retry in", in whole minutes); zero means 2 minutes.
	RetryIn time.Duration
	// Access decides which info hashes are tracked; nil tracks every one
	// (the tracker is open). An announce for a refused hash gets
	// ErrNotAllowed; a scrape reports zero counts for it and the full
	// scrape leaves it out.
	Access Access
	// PeerIDs says that the store keeps peer ids (store.Options.PeerIDs)
	// and replies may carry them. When false, the store's peers have zero
	// ids, so Announce sets AnnounceResponse.NoPeerID: a non-compact reply
	// then leaves "peer id" out, as for a client that sent no_peer_id=1.
	PeerIDs bool
	// Health, when set, is told the outcome of every store call made for
	// a request, so that the readiness check follows the store's health
	// (see store.Health). nil tells nobody.
	Health *store.Health
}

// DefaultConfig returns the defaults: a target of 1000 announces per second,
// intervals between 60 s and 30 min, 50 peers by default and at most 200,
// up to 74 hashes per scrape (as many as fit a 2 KiB query), and "retry in"
// 2 minutes; trackd's configuration (package config) starts from them.
// MaxPending is left 0 (no bound), as a zero Config has it;
// DefaultMaxPending is the bound trackd's configuration starts from.
func DefaultConfig() Config {
	return Config{
		TargetAnnounceRate: 1000,
		MinInterval:        60 * time.Second,
		MaxInterval:        30 * time.Minute,
		DefaultNumWant:     50,
		MaxNumWant:         200,
		MaxScrapeHashes:    74,
		RetryIn:            2 * time.Minute,
	}
}

// DefaultMaxPending is a default for Config.MaxPending, for a tracker on
// the open internet: enough announces and scrapes at work at once for a
// store that waits on the network to stay busy, few enough that a stalled
// store refuses the rest at once rather than holding them.
const DefaultMaxPending = 4096

func (c *Config) fill() {
	d := DefaultConfig()
	if c.TargetAnnounceRate <= 0 {
		c.TargetAnnounceRate = d.TargetAnnounceRate
	}
	if c.MinInterval <= 0 {
		c.MinInterval = d.MinInterval
	}
	if c.MaxInterval <= 0 {
		c.MaxInterval = d.MaxInterval
	}
	if c.MaxInterval < c.MinInterval {
		c.MaxInterval = c.MinInterval
	}
	if c.MaxNumWant <= 0 {
		c.MaxNumWant = d.MaxNumWant
	}
	if c.DefaultNumWant <= 0 {
		c.DefaultNumWant = d.DefaultNumWant
	}
	if c.DefaultNumWant > c.MaxNumWant {
		c.DefaultNumWant = c.MaxNumWant
	}
	if c.MaxScrapeHashes <= 0 {
		c.MaxScrapeHashes = d.MaxScrapeHashes
	}
	if c.RetryIn <= 0 {
		c.RetryIn = d.RetryIn
	}
}

// OverloadBackoff is how long after the last request refused for overload
// the tracker keeps handing out doubled intervals.
const OverloadBackoff = time.Minute

// OverloadError refuses a request because the tracker is saturated: not
// the client's fault, and worth a retry later. HTTP sends it as a failure
// reason with BEP 31's "retry in", UDP as an error packet.
type OverloadError struct {
	RetryIn time.Duration
	msg     string
}

func (e *OverloadError) Error() string { return e.msg }

// RetryInMinutes is RetryIn in whole minutes, at least 1, as BEP 31 sends
// it.
func (e *OverloadError) RetryInMinutes() int64 { return max(int64(e.RetryIn/time.Minute), 1) }

// Access is an access list: Allowed reports whether an info hash is
// tracked. *accesslist.Source is one. It must be safe for concurrent use.
type Access interface {
	Allowed(bittorrent.InfoHash) bool
}

// ClientError is a request the tracker refuses because of what the client
// sent. Its text is meant for the client (an HTTP "failure reason" or a UDP
// error packet); any other error from the tracker is the server's fault.
type ClientError string

func (e ClientError) Error() string { return string(e) }

// Errors the core returns for requests it refuses.
var (
	ErrCompactRequired = ClientError("this tracker requires compact=1 or no_peer_id=1")
	ErrPortZero        = ClientError("port must be between 1 and 65535")
	ErrNotAllowed      = ClientError("this torrent is not tracked here (access list)")
)

// ErrClosed is the error of a request that reached the tracker after its
// store was closed (a request caught by shutdown): no failure to log.
var ErrClosed = store.ErrClosed

// IsClientError reports whether err is the client's fault.
func IsClientError(err error) bool {
	var ce ClientError
	return errors.As(err, &ce)
}

// NumWantUnset marks an AnnounceRequest whose client did not send numwant.
const NumWantUnset = -1

// LeftUnknown is AnnounceRequest.Left when the client did not say how much
// it has left, or said something no count can be: a negative number, 2^63
// or more (WebTorrent sends 2^64-1 when it does not know), junk. Such a
// peer is a leecher, as is any peer with a non-zero Left.
const LeftUnknown = math.MaxUint64

// AnnounceRequest is an announce after the frontend has parsed it.
type AnnounceRequest struct {
	InfoHash bittorrent.InfoHash
	PeerID   bittorrent.PeerID
	// Addr is where other peers reach the announcing peer: the address the
	// request came from (or a trusted override) and the announced port.
	Addr       netip.AddrPort
	Uploaded   uint64
	Downloaded uint64
	// Left is the bytes the peer has left to download: 0 for a
	// seeder, LeftUnknown when the client did not tell.
	Left  uint64
	Event bittorrent.Event
	// NumWant is the number of peers asked for, or NumWantUnset: the
	// tracker then gives Config.DefaultNumWant.
	NumWant int
	// MaxPeers is the most peers the frontend's reply can carry (a UDP
	// datagram's payload); 0 means no bound but Config.MaxNumWant.
	MaxPeers int
	// Compact and NoPeerID are the client's reply-format wishes. A frontend
	// whose wire format is always compact (UDP) sets Compact. Announce
	// leaves the request as it is: what the reply must show comes back in
	// AnnounceResponse.NoPeerID.
	Compact  bool
	NoPeerID bool
	// Family restricts the peers handed out to one address family: a UDP
	// reply carries only peers of the family the request came over.
	Family bittorrent.Family
}

// AnnounceResponse is what the tracker answers to an announce.
type AnnounceResponse struct {
	Interval    time.Duration
	MinInterval time.Duration
	Complete    uint32 // seeders
	Incomplete  uint32 // leechers
	Downloaded  uint32 // completed downloads
	// Peers are the peers handed out, of both address families, unless
	// Compacted.
	Peers []bittorrent.Peer
	// Compacted says that the peers handed out are in Compact4 and
	// Compact6 instead of Peers (which is then empty): the request asked
	// for compact peers (AnnounceRequest.Compact) and the store hands
	// them out so (store.CompactAnnouncer). Compact4 has 6 bytes per IPv4
	// peer, Compact6 18 per IPv6 peer: the address, then the port, in
	// network order.
	Compacted          bool
	Compact4, Compact6 []byte
	// NoPeerID says that a reply listing peers must leave their ids out:
	// the client asked so (AnnounceRequest.NoPeerID), or the tracker keeps
	// no ids (Config.PeerIDs) and the peers carry zero ids.
	NoPeerID bool
}

// ScrapeResponse is what the tracker answers to a scrape.
type ScrapeResponse struct {
	// Files has the counts of each requested hash, in request order.
	Files []bittorrent.Stats
	// MinRequestInterval is how long a client should wait between scrapes.
	MinRequestInterval time.Duration
}

// Tracker applies announces and scrapes to a store. It is safe for
// concurrent use.
type Tracker struct {
	cfg      Config
	store    store.Store
	compact  store.CompactAnnouncer // store's ability, or nil
	overload *OverloadError         // the one refusal, made once
	// the refusals of a store at its memory bound (store.ErrNoNewTorrents,
	// store.ErrNoNewPeers)
	fullTorrents, fullPeers *OverloadError
	pending                 atomic.Int64 // requests at work
	shedAt                  atomic.Int64 // Unix nanoseconds of the last refusal
}

// New returns a tracker that keeps its swarms in s.
func New(cfg Config, s store.Store) *Tracker {
	cfg.fill()
	t := &Tracker{cfg: cfg, store: s}
	t.compact, _ = s.(store.CompactAnnouncer)
	t.overload = &OverloadError{RetryIn: cfg.RetryIn}
	t.overload.msg = "tracker overloaded: retry in " + strconv.FormatInt(t.overload.RetryInMinutes(), 10) + " minutes"
	t.fullTorrents = &OverloadError{RetryIn: cfg.RetryIn, msg: MsgNoNewTorrents}
	t.fullPeers = &OverloadError{RetryIn: cfg.RetryIn, msg: MsgNoNewPeers}
	return t
}

// admit counts a request in, or refuses it when MaxPending are at work;
// done must be called when an admitted request ends.
func (t *Tracker) admit() error {
	if t.cfg.MaxPending <= 0 {
		return nil
	}
	if t.pending.Add(1) > int64(t.cfg.MaxPending) {
		t.pending.Add(-1)
		t.shedAt.Store(time.Now().UnixNano())
		return t.overload
	}
	return nil
}

func (t *Tracker) done() {
	if t.cfg.MaxPending > 0 {
		t.pending.Add(-1)
	}
}

// Overloaded reports whether a request was refused for overload in the
// last OverloadBackoff.
func (t *Tracker) Overloaded() bool {
	last := t.shedAt.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < OverloadBackoff
}

// Config returns the tracker's configuration, with defaults filled in.
func (t *Tracker) Config() Config { return t.cfg }

// Announce applies req and fills resp. resp.Peers, resp.Compact4 and
// resp.Compact6 are reused (truncated and appended to) so a caller that
// keeps resp between requests allocates nothing. A ClientError says the
// request was refused. req is only read.
func (t *Tracker) Announce(ctx context.Context, req *AnnounceRequest, resp *AnnounceResponse) error {
	if t.cfg.RequireCompact && !req.Compact && !req.NoPeerID {
		return ErrCompactRequired
	}
	if req.Addr.Port() == 0 {
		return ErrPortZero
	}
	if err := t.Allowed(req.InfoHash); err != nil {
		return err
	}
	if err := t.admit(); err != nil {
		return err
	}
	defer t.done()
	// An IPv4 peer reached over an IPv6 socket is the same session as
	// over IPv4: store it as plain IPv4.
	addr := netip.AddrPortFrom(req.Addr.Addr().Unmap(), req.Addr.Port())
	a := store.Announce{
		InfoHash: req.InfoHash,
		Peer:     bittorrent.Peer{ID: req.PeerID, Addr: addr},
		Event:    req.Event,
		Seeder:   req.Left == 0,
		NumWant:  t.numWant(req),
		Family:   req.Family,
	}
	var stats bittorrent.Stats
	var err error
	resp.Peers, resp.Compact4, resp.Compact6 = resp.Peers[:0], resp.Compact4[:0], resp.Compact6[:0]
	resp.Compacted = req.Compact && t.compact != nil
	if resp.Compacted {
		resp.Compact4, resp.Compact6, stats, err = t.compact.AnnounceCompact(ctx, a, resp.Compact4, resp.Compact6)
	} else {
		resp.Peers, stats, err = t.store.Announce(ctx, a, resp.Peers)
	}
	t.cfg.Health.Observe(err)
	if err != nil {
		return t.storeError(err)
	}
	resp.Complete = stats.Seeders
	resp.Incomplete = stats.Leechers
	resp.Downloaded = stats.Downloaded
	resp.NoPeerID = req.NoPeerID || !t.cfg.PeerIDs
	resp.Interval, resp.MinInterval, err = t.Intervals(ctx)
	return err
}

// The texts of the refusals of a store at its memory bound, sent as an
// *OverloadError (with "retry in" over HTTP).
const (
	MsgNoNewTorrents = "tracker is full: no new torrents accepted now"
	MsgNoNewPeers    = "tracker is full: no new peers accepted now"
)

// storeError translates what the store's Announce failed with: a store at
// its memory bound (store.MemoryBounded) refuses new torrents or peers,
// which is no fault of the client's and worth a retry later, so an
// *OverloadError that says so. Unlike MaxPending's refusal it does not
// double the interval: the clients of the swarms that work are not the
// ones to slow down.
func (t *Tracker) storeError(err error) error {
	switch {
	case err == store.ErrNoNewTorrents || errors.Is(err, store.ErrNoNewTorrents):
		return t.fullTorrents
	case err == store.ErrNoNewPeers || errors.Is(err, store.ErrNoNewPeers):
		return t.fullPeers
	}
	return err
}

// numWant is how many peers req gets: none when it stops, the default when
// it did not say, never more than the cap nor than its reply can carry.
func (t *Tracker) numWant(req *AnnounceRequest) int {
	n := req.NumWant
	switch {
	case req.Event == bittorrent.EventStopped:
		return 0
	case n < 0:
		n = t.cfg.DefaultNumWant
	case n > t.cfg.MaxNumWant:
		n = t.cfg.MaxNumWant
	}
	if req.MaxPeers > 0 {
		n = min(n, req.MaxPeers)
	}
	return n
}

// Intervals returns the announce interval and min interval for the
// tracker's current size.
func (t *Tracker) Intervals(ctx context.Context) (interval, minInterval time.Duration, err error) {
	totals, err := t.store.Totals(ctx)
	if err != nil {
		t.cfg.Health.Observe(err)
		return 0, 0, err
	}
	interval, minInterval = t.IntervalsFor(totals.Peers())
	return interval, minInterval, nil
}

// IntervalsFor is the interval policy alone, for swarms of peers peers
// that live outside the store (the WebSocket frontend's): the interval
// of IntervalFor with the tracker's settings, doubled while the tracker
// sheds load (Overloaded), and the min interval. It does no I/O.
func (t *Tracker) IntervalsFor(peers uint64) (interval, minInterval time.Duration) {
	interval = IntervalFor(peers, t.cfg.TargetAnnounceRate, t.cfg.MinInterval, t.cfg.MaxInterval)
	if t.Overloaded() {
		interval = min(2*interval, t.cfg.MaxInterval)
	}
	minInterval = t.cfg.MinAnnounceInterval
	if minInterval <= 0 || minInterval > interval {
		minInterval = interval / 2
	}
	return interval, minInterval
}

// Allowed checks ih against the access list: ErrNotAllowed for a hash
// it refuses, nil for one it tracks (or when the tracker is open). A
// frontend whose swarms live outside the store asks it before an
// announce; Announce asks it itself.
func (t *Tracker) Allowed(ih bittorrent.InfoHash) error {
	if t.cfg.Access != nil && !t.cfg.Access.Allowed(ih) {
		return ErrNotAllowed
	}
	return nil
}

// IntervalFor is the interval policy that keeps server load constant: with
// peers peers each announcing once per interval, the tracker sees
// peers/interval announces per second, so the interval that meets a target
// rate is peers/target seconds. It is clamped to [lo, hi] and rounded down
// to whole seconds, which is what the wire formats carry.
func IntervalFor(peers uint64, target float64, lo, hi time.Duration) time.Duration {
	d := time.Duration(float64(peers) / target * float64(time.Second))
	if d < lo || d < 0 {
		d = lo
	}
	if d > hi {
		d = hi
	}
	return d.Truncate(time.Second)
}

// Scrape fills resp with the counts of hashes. An empty hashes is not a full
// scrape: frontends call ScrapeAll for that.
func (t *Tracker) Scrape(ctx context.Context, hashes []bittorrent.InfoHash, resp *ScrapeResponse) error {
	if len(hashes) > t.cfg.MaxScrapeHashes {
		return ClientError("too many info_hash values: at most " + strconv.Itoa(t.cfg.MaxScrapeHashes) + " per scrape")
	}
	if err := t.admit(); err != nil {
		return err
	}
	defer t.done()
	files, err := t.store.Scrape(ctx, hashes, resp.Files[:0])
	t.cfg.Health.Observe(err)
	if err != nil {
		return err
	}
	if t.cfg.Access != nil {
		// A hash refused now may still have peers from before the list
		// changed; they are not reported.
		for i, h := range hashes {
			if !t.cfg.Access.Allowed(h) {
				files[i] = bittorrent.Stats{}
			}
		}
	}
	resp.Files = files
	resp.MinRequestInterval, _, err = t.Intervals(ctx)
	return err
}

// ScrapeAll calls fn for every torrent the tracker knows (the "full" or
// "global" scrape) and returns the min_request_interval to send with it.
func (t *Tracker) ScrapeAll(ctx context.Context, fn func(bittorrent.InfoHash, bittorrent.Stats) error) (time.Duration, error) {
	if acc := t.cfg.Access; acc != nil {
		all := fn
		fn = func(h bittorrent.InfoHash, s bittorrent.Stats) error {
			if !acc.Allowed(h) {
				return nil
			}
			return all(h, s)
		}
	}
	if err := t.store.ScrapeAll(ctx, fn); err != nil {
		return 0, err
	}
	interval, _, err := t.Intervals(ctx)
	return interval, err
}
