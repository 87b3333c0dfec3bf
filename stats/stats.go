// Package stats keeps a short history of what the tracker does and shows it
// to a person: an HTML page with totals, request rates, the IPv4/IPv6
// split, the busiest torrents and charts of the last hours, and the same
// data as JSON.
//
// A Recorder samples a Source at a fixed period into a ring of fixed size,
// so its memory is bounded whatever the uptime. It knows nothing of where
// the counts come from: the server wires a Source that reads the store's
// totals and the request counters.
package stats

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"trackd/bittorrent"
)

// Counts is what a Source reports at one instant. Requests are cumulative
// counts since start; the Recorder turns them into rates.
type Counts struct {
	Torrents  uint64
	Seeders   uint64
	Leechers  uint64
	Seeders6  uint64 // of Seeders, the IPv6 ones
	Leechers6 uint64 // of Leechers, the IPv6 ones

	HTTPRequests uint64
	UDPRequests  uint64
	WSRequests   uint64

	// The WebSocket (WebTorrent) frontend: its open connections and its
	// swarms, which live apart from the store's (Torrents, Seeders and
	// Leechers above do not count them).
	WSConnections uint64
	WSTorrents    uint64
	WSSeeders     uint64
	WSLeechers    uint64

	// Shedding: the store is near its memory bound, evicting torrents of
	// one peer and refusing new ones (store.MemoryUsage).
	Shedding bool
}

// Source reads the current counts.
type Source func(ctx context.Context) (Counts, error)

// Torrent is one torrent and its peer counts, for the busiest list.
type Torrent struct {
	InfoHash bittorrent.InfoHash
	Seeders  uint32
	Leechers uint32
}

// TopSource lists the n torrents with the most peers, most first.
type TopSource func(ctx context.Context, n int) ([]Torrent, error)

// Sample is one point of the history.
type Sample struct {
	Time     time.Time
	Torrents uint64
	Peers    uint64
	WSPeers  uint64 // WebSocket peers, not in Peers
	// Rates over the period ending at Time, in requests per second.
	HTTPRate float64
	UDPRate  float64
	WSRate   float64
}

// Options configure a Recorder. The zero value samples every 15 s and
// keeps 6 hours, with the 10 busiest torrents refreshed every minute.
type Options struct {
	Period     time.Duration // between samples
	Keep       int           // samples kept
	TopN       int           // busiest torrents listed
	TopPeriod  time.Duration // between refreshes of the busiest list
	Logger     *slog.Logger
	Now        func() time.Time
	StartedAt  time.Time // the process's start, shown as uptime; zero: New's time
	Version    string    // shown on the page
	ServerName string    // shown as the page's title; empty: "trackd"
}

func (o *Options) setDefaults() {
	if o.Period <= 0 {
		o.Period = 15 * time.Second
	}
	if o.Keep <= 0 {
		o.Keep = int(6 * time.Hour / o.Period)
	}
	if o.TopN <= 0 {
		o.TopN = 10
	}
	if o.TopPeriod <= 0 {
		o.TopPeriod = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ServerName == "" {
		o.ServerName = "trackd"
	}
}

// Recorder keeps the history. Its methods are safe for concurrent use.
type Recorder struct {
	opts Options
	src  Source
	top  TopSource

	mu      sync.Mutex
	ring    []Sample // oldest first once full: ring[next:] then ring[:next]
	next    int
	full    bool
	last    Counts    // the counts at the last sample
	lastAt  time.Time // when they were read; zero before the first
	current Counts    // the most recent counts, for the page's totals
	topList []Torrent
	topAt   time.Time
}

// New returns a Recorder over src; top may be nil (no busiest list).
func New(src Source, top TopSource, opts Options) *Recorder {
	opts.setDefaults()
	if opts.StartedAt.IsZero() {
		opts.StartedAt = opts.Now()
	}
	return &Recorder{opts: opts, src: src, top: top, ring: make([]Sample, opts.Keep)}
}

// Run samples every period until ctx is done. The first sample is taken at
// once; it has no rates (there is nothing to compare it with).
func (r *Recorder) Run(ctx context.Context) {
	t := time.NewTicker(r.opts.Period)
	defer t.Stop()
	for {
		r.Sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sample reads the source once and appends a sample; it refreshes the
// busiest list when it is older than TopPeriod. Run calls it; tests call it
// directly.
func (r *Recorder) Sample(ctx context.Context) {
	c, err := r.src(ctx)
	if err != nil {
		r.opts.Logger.Warn("stats: counts not read", "err", err)
		return
	}
	now := r.opts.Now()
	r.mu.Lock()
	s := Sample{Time: now, Torrents: c.Torrents, Peers: c.Seeders + c.Leechers, WSPeers: c.WSSeeders + c.WSLeechers}
	if !r.lastAt.IsZero() {
		if dt := now.Sub(r.lastAt).Seconds(); dt > 0 {
			s.HTTPRate = rate(r.last.HTTPRequests, c.HTTPRequests, dt)
			s.UDPRate = rate(r.last.UDPRequests, c.UDPRequests, dt)
			s.WSRate = rate(r.last.WSRequests, c.WSRequests, dt)
		}
	}
	r.last, r.lastAt, r.current = c, now, c
	r.ring[r.next] = s
	r.next++
	if r.next == len(r.ring) {
		r.next, r.full = 0, true
	}
	refreshTop := r.top != nil && (r.topAt.IsZero() || now.Sub(r.topAt) >= r.opts.TopPeriod)
	r.mu.Unlock()

	if refreshTop {
		list, err := r.top(ctx, r.opts.TopN)
		if err != nil {
			r.opts.Logger.Warn("stats: busiest torrents not read", "err", err)
			return
		}
		r.mu.Lock()
		r.topList, r.topAt = list, now
		r.mu.Unlock()
	}
}

// rate is the per-second rate of a counter that went from a to b in dt
// seconds; a counter that went back (a restart of its source) counts from 0.
func rate(a, b uint64, dt float64) float64 {
	if b < a {
		return float64(b) / dt
	}
	return float64(b-a) / dt
}

// Snapshot is everything the page shows, as /stats.json serves it.
type Snapshot struct {
	Name          string    `json:"name"`
	Version       string    `json:"version,omitempty"`
	Time          time.Time `json:"time"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	PeriodSeconds float64   `json:"sample_period_seconds"`

	Torrents  uint64 `json:"torrents"`
	Peers     uint64 `json:"peers"`
	Seeders   uint64 `json:"seeders"`
	Leechers  uint64 `json:"leechers"`
	IPv4Peers uint64 `json:"ipv4_peers"`
	IPv6Peers uint64 `json:"ipv6_peers"`
	// Shedding: the store is near its memory bound (Counts.Shedding).
	Shedding bool `json:"shedding"`

	// The WebSocket frontend's open connections and swarms (apart from
	// the store's: Torrents and Peers above do not count them).
	WSConnections uint64 `json:"ws_connections"`
	WSTorrents    uint64 `json:"ws_torrents"`
	WSPeers       uint64 `json:"ws_peers"`
	WSSeeders     uint64 `json:"ws_seeders"`
	WSLeechers    uint64 `json:"ws_leechers"`

	// Requests per second over the last period, by protocol (WebSocket:
	// messages with a known action).
	HTTPRate float64 `json:"http_requests_per_second"`
	UDPRate  float64 `json:"udp_requests_per_second"`
	WSRate   float64 `json:"ws_requests_per_second"`

	Top     []TopTorrent  `json:"top_torrents"`
	History []HistoryItem `json:"history"`
}

// TopTorrent is one line of the busiest list.
type TopTorrent struct {
	InfoHash string `json:"info_hash"` // hex
	Seeders  uint32 `json:"seeders"`
	Leechers uint32 `json:"leechers"`
	Peers    uint32 `json:"peers"`
}

// HistoryItem is one sample in the JSON.
type HistoryItem struct {
	Time     int64   `json:"t"` // Unix seconds
	Torrents uint64  `json:"torrents"`
	Peers    uint64  `json:"peers"`
	WSPeers  uint64  `json:"ws_peers"`
	HTTPRate float64 `json:"http_rps"`
	UDPRate  float64 `json:"udp_rps"`
	WSRate   float64 `json:"ws_rps"`
}

// Snapshot returns the current totals, the busiest torrents and the
// history, oldest first.
func (r *Recorder) Snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.opts.Now()
	c := r.current
	s := Snapshot{
		Name:          r.opts.ServerName,
		Version:       r.opts.Version,
		Time:          now.UTC(),
		UptimeSeconds: now.Sub(r.opts.StartedAt).Seconds(),
		PeriodSeconds: r.opts.Period.Seconds(),
		Torrents:      c.Torrents,
		Peers:         c.Seeders + c.Leechers,
		Seeders:       c.Seeders,
		Leechers:      c.Leechers,
		IPv6Peers:     c.Seeders6 + c.Leechers6,
		Shedding:      c.Shedding,
		WSConnections: c.WSConnections,
		WSTorrents:    c.WSTorrents,
		WSPeers:       c.WSSeeders + c.WSLeechers,
		WSSeeders:     c.WSSeeders,
		WSLeechers:    c.WSLeechers,
		Top:           []TopTorrent{},
		History:       []HistoryItem{},
	}
	s.IPv4Peers = s.Peers - min(s.Peers, s.IPv6Peers)
	for _, t := range r.topList {
		s.Top = append(s.Top, TopTorrent{InfoHash: t.InfoHash.String(), Seeders: t.Seeders, Leechers: t.Leechers, Peers: t.Seeders + t.Leechers})
	}
	add := func(x Sample) {
		s.History = append(s.History, HistoryItem{Time: x.Time.Unix(), Torrents: x.Torrents, Peers: x.Peers, WSPeers: x.WSPeers,
			HTTPRate: x.HTTPRate, UDPRate: x.UDPRate, WSRate: x.WSRate})
	}
	if r.full {
		for _, x := range r.ring[r.next:] {
			add(x)
		}
	}
	for _, x := range r.ring[:r.next] {
		add(x)
	}
	if n := len(s.History); n > 0 {
		last := s.History[n-1]
		s.HTTPRate, s.UDPRate, s.WSRate = last.HTTPRate, last.UDPRate, last.WSRate
	}
	return s
}

// TopFromScrape builds a TopSource from a full scrape: it walks every
// torrent once and keeps the n with the most peers. all is a store's
// ScrapeAll.
func TopFromScrape(all func(ctx context.Context, fn func(bittorrent.InfoHash, uint32, uint32) error) error) TopSource {
	return func(ctx context.Context, n int) ([]Torrent, error) {
		// a small min-heap would do; n is small, so a sorted slice with
		// insertion is as fast and simpler
		top := make([]Torrent, 0, n+1)
		err := all(ctx, func(ih bittorrent.InfoHash, seeders, leechers uint32) error {
			p := seeders + leechers
			if p == 0 || (len(top) == n && p <= top[n-1].Seeders+top[n-1].Leechers) {
				return nil
			}
			i := sort.Search(len(top), func(i int) bool { return top[i].Seeders+top[i].Leechers < p })
			top = append(top, Torrent{})
			copy(top[i+1:], top[i:])
			top[i] = Torrent{InfoHash: ih, Seeders: seeders, Leechers: leechers}
			if len(top) > n {
				top = top[:n]
			}
			return nil
		})
		return top, err
	}
}
