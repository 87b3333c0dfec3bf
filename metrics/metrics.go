// Package metrics counts what trackd does, for Prometheus: requests by
// protocol, action and result, their latency, the swarms' totals by address
// family, full scrapes, dropped packets, the WebSocket frontend's
// connections, messages, relays and swarms, a fleet's sync (trackd_sync_*)
// and WebSocket relay across instances (trackd_ws_relay_*), and the Go
// runtime.
//
// Every label value comes from a fixed set (never an info hash or an
// address), so the number of series is bounded. The counters a request
// touches are resolved once, at New, into arrays indexed by small enums:
// recording a request costs two atomic updates and no lookup.
package metrics

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"trackd/fleet"
	"trackd/fleet/relay"
	"trackd/internal/ratelog"
	"trackd/store"
	"trackd/tracker"
)

// Protocol is the frontend a request came through.
type Protocol uint8

const (
	HTTP Protocol = iota
	UDP
	WS // WebSocket (WebTorrent): counted by WSMessage, without latency
	numProtocols
)

var protocolNames = [numProtocols]string{"http", "udp", "ws"}

func (p Protocol) String() string { return protocolNames[p] }

// Action is what a request asked for.
type Action uint8

const (
	Announce Action = iota
	Scrape
	Connect // UDP's connect
	numActions
)

var actionNames = [numActions]string{"announce", "scrape", "connect"}

func (a Action) String() string { return actionNames[a] }

// Result is how a request ended.
type Result uint8

const (
	OK          Result = iota
	ClientError        // refused for what the client sent: a failure reason or an error packet
	ServerError        // the tracker failed (storage unreachable, overload)
	numResults
)

var resultNames = [numResults]string{"ok", "client_error", "server_error"}

func (r Result) String() string { return resultNames[r] }

// ResultOf classifies the error a request ended with.
func ResultOf(err error) Result {
	if err == nil {
		return OK
	}
	// the common case first: errors.As in IsClientError allocates
	if _, ok := err.(tracker.ClientError); ok || tracker.IsClientError(err) {
		return ClientError
	}
	return ServerError
}

// Totals are the swarm counts the gauges show.
type Totals struct {
	Torrents             uint64
	Seeders4, Leechers4  uint64
	Seeders6, Leechers6  uint64
	PeersExpired         uint64 // cumulative
	PeersExpiredObserved bool   // false: the store does not count expiries
	// Memory is the store's memory bound (store.MemoryBounded);
	// MemoryObserved is false for a store without one (Redis).
	Memory         store.MemoryUsage
	MemoryObserved bool
}

// Metrics holds the collectors. A nil *Metrics records nothing, so a
// frontend can call it unconditionally.
type Metrics struct {
	reg         *prometheus.Registry
	requests    [numProtocols][numActions][numResults]prometheus.Counter
	latency     [numProtocols][numActions]prometheus.Observer
	fullScrapes prometheus.Counter
	evicted     [numConnReasons]prometheus.Counter
	refused     [numConnReasons]prometheus.Counter
	errorsVec   *prometheus.CounterVec
	errors      map[string]prometheus.Counter // of ratelog.Kinds, read-only after New
	// perProtocol counts every request by protocol, for the stats page's
	// rates without reading Prometheus' own state back.
	perProtocol [numProtocols]atomic.Uint64
	ws          wsCounters
}

// Options are what New needs beyond the defaults.
type Options struct {
	// Totals reads the store's counts at each scrape of /metrics; nil
	// leaves the swarm gauges out.
	Totals func(ctx context.Context) (Totals, error)
	// UDPDropped reads how many datagrams the UDP sockets dropped because
	// their receive buffers were full (a cumulative count); nil leaves the
	// counter out.
	UDPDropped func() uint64
	// Sync reads the counters of the fleet's Node at each scrape (the
	// series trackd_sync_*); nil (sync off) leaves them out.
	Sync func() fleet.Stats
	// WSRelay reads the counts of the WebSocket relay across the fleet at
	// each scrape (the series trackd_ws_relay_*); nil (sync or
	// WebTorrent off) leaves them out.
	WSRelay func() relay.Stats
}

// New builds the collectors and registers them, with the Go runtime and
// process collectors, in a registry of its own (no global state).
func New(opts Options) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "trackd", Name: "requests_total",
		Help: "Requests answered, by protocol, action and result (ok, client_error: refused for what the client sent, server_error: the tracker failed).",
	}, []string{"protocol", "action", "result"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "trackd", Name: "request_duration_seconds",
		Help: "Time from a request's arrival (parsed) to its reply being ready, by protocol and action.",
		// 10 µs to 0.65 s
		Buckets: prometheus.ExponentialBuckets(10e-6, 4, 9),
	}, []string{"protocol", "action"})
	m.fullScrapes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "trackd", Name: "full_scrapes_total",
		Help: "Full (all torrents) scrapes served.",
	})
	m.errorsVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "trackd", Name: "errors_total",
		Help: "Server-side errors by kind, every one counted although the log shows only the first of a kind and then a count every 10 s: " +
			"store (the store failed a request), overload (a request refused at max_pending or at max_memory), write (a UDP reply not sent), " +
			"accept (a connection not accepted), store_background (a round of the store's background work failed), " +
			"sync (a call to the sync bus failed), sync_batch (a batch read from the sync bus did not decode).",
	}, []string{"kind"})
	m.errors = make(map[string]prometheus.Counter, len(ratelog.Kinds))
	for _, k := range ratelog.Kinds {
		m.errors[k] = m.errorsVec.WithLabelValues(k)
	}
	for p := range numProtocols {
		for a := range numActions {
			if a == Connect && p != UDP {
				continue // only UDP connects; no empty series for the others
			}
			if p != WS { // WSMessage has no duration to observe
				m.latency[p][a] = latency.WithLabelValues(p.String(), a.String())
			}
			for r := range numResults {
				m.requests[p][a][r] = requests.WithLabelValues(p.String(), a.String(), r.String())
			}
		}
	}
	evicted := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "trackd", Name: "http_connections_evicted_total",
		Help: "Idle keep-alive HTTP connections closed to admit a new one, by the bound reached (max_conns, per_ip: max_conns_per_ip).",
	}, []string{"reason"})
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "trackd", Name: "http_connections_refused_total",
		Help: "New HTTP connections closed at once, by the bound reached (per_ip: max_conns_per_ip, with no idle connection of the address to evict).",
	}, []string{"reason"})
	for r := range numConnReasons {
		m.evicted[r] = evicted.WithLabelValues(r.String())
	}
	m.refused[PerIP] = refused.WithLabelValues(PerIP.String())
	m.reg.MustRegister(m.ws.init(&m.requests[WS], &m.perProtocol[WS])...)
	m.reg.MustRegister(requests, latency, m.fullScrapes, evicted, refused, m.errorsVec,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if opts.Totals != nil {
		m.reg.MustRegister(&totalsCollector{read: opts.Totals})
	}
	if opts.Sync != nil {
		m.reg.MustRegister(&statsCollector[fleet.Stats]{read: opts.Sync, series: syncSeries})
	}
	if opts.WSRelay != nil {
		m.reg.MustRegister(&statsCollector[relay.Stats]{read: opts.WSRelay, series: relaySeries})
	}
	if opts.UDPDropped != nil {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "trackd", Name: "udp_packets_dropped_total",
			Help: "UDP datagrams the kernel dropped at trackd's sockets because their receive buffers were full: load shed.",
		}, func() float64 { return float64(opts.UDPDropped()) }))
	}
	return m
}

// Request records one request: its protocol, action, result and how long
// it took.
func (m *Metrics) Request(p Protocol, a Action, r Result, d time.Duration) {
	if m == nil {
		return
	}
	m.perProtocol[p].Add(1)
	if c := m.requests[p][a][r]; c != nil {
		c.Inc()
		if o := m.latency[p][a]; o != nil {
			o.Observe(d.Seconds())
		}
	}
}

// FullScrape records a full scrape served.
func (m *Metrics) FullScrape() {
	if m != nil {
		m.fullScrapes.Inc()
	}
}

// ConnReason is the bound that made a server evict or refuse a
// connection.
type ConnReason uint8

const (
	MaxConns ConnReason = iota // the bound on all open connections
	PerIP                      // the bound on one address's connections
	numConnReasons
)

var connReasonNames = [numConnReasons]string{"max_conns", "per_ip"}

func (r ConnReason) String() string { return connReasonNames[r] }

// ConnEvicted records an idle HTTP connection closed to admit a new one.
func (m *Metrics) ConnEvicted(r ConnReason) {
	if m != nil {
		m.evicted[r].Inc()
	}
}

// ConnRefused records a new HTTP connection closed at once.
func (m *Metrics) ConnRefused(r ConnReason) {
	if m != nil && m.refused[r] != nil {
		m.refused[r].Inc()
	}
}

// OpenConns adds a gauge of the open connections of an HTTP listener
// ("http" or "https", its label listener), read from open at each
// scrape. Call it once per listener.
func (m *Metrics) OpenConns(listener string, open func() int) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "trackd", Name: "http_connections_open",
		Help:        "Open HTTP connections of a listener (http: plain HTTP, https: over TLS).",
		ConstLabels: prometheus.Labels{"listener": listener},
	}, func() float64 { return float64(open()) }))
}

// Error counts one error of kind (one of ratelog.Kinds): it is
// ratelog.Options.Count.
func (m *Metrics) Error(kind string) {
	if m == nil {
		return
	}
	if c, ok := m.errors[kind]; ok {
		c.Inc()
		return
	}
	m.errorsVec.WithLabelValues(kind).Inc() // a kind of another package's own
}

// Requests returns the requests recorded for p since start.
func (m *Metrics) Requests(p Protocol) uint64 {
	if m == nil {
		return 0
	}
	return m.perProtocol[p].Load()
}

// Registry returns the registry, for more collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// totalsCollector reads the store's totals once per scrape of /metrics.
type totalsCollector struct {
	read func(ctx context.Context) (Totals, error)
}

var (
	torrentsDesc = prometheus.NewDesc("trackd_torrents", "Torrents with at least one peer.", nil, nil)
	seedersDesc  = prometheus.NewDesc("trackd_seeders", "Peers with the whole torrent, by address family.", []string{"family"}, nil)
	leechersDesc = prometheus.NewDesc("trackd_leechers", "Peers still downloading, by address family.", []string{"family"}, nil)
	expiredDesc  = prometheus.NewDesc("trackd_peers_expired_total", "Peers dropped because they did not announce within the peer lifetime.", nil, nil)
	upDesc       = prometheus.NewDesc("trackd_store_up", "1 when the store answered the last read of its totals, else 0.", nil, nil)

	memBytesDesc = prometheus.NewDesc("trackd_store_memory_bytes", "Memory the in-memory store's torrents and peers use: what max_memory bounds.", nil, nil)
	memHeldDesc  = prometheus.NewDesc("trackd_store_memory_held_bytes", "Memory the in-memory store holds: trackd_store_memory_bytes and what it freed but has not given back yet (reused first).", nil, nil)
	memLimitDesc = prometheus.NewDesc("trackd_store_memory_limit_bytes", "The in-memory store's bound (max_memory); 0 for none.", nil, nil)
	evictedDesc  = prometheus.NewDesc("trackd_store_evicted_torrents_total", "Torrents of at most one peer evicted to keep the store under max_memory.", nil, nil)
	refusedDesc  = prometheus.NewDesc("trackd_store_refused_announces_total", "Announces refused because the store was at max_memory (a new torrent from 95% of it, a new peer at 100%).", nil, nil)
	sheddingDesc = prometheus.NewDesc("trackd_store_shedding", "1 while the store evicts or refuses to stay under max_memory (and 30 s after), else 0.", nil, nil)
)

func (c *totalsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- torrentsDesc
	ch <- seedersDesc
	ch <- leechersDesc
	ch <- expiredDesc
	ch <- upDesc
	for _, d := range memDescs {
		ch <- d
	}
}

var memDescs = []*prometheus.Desc{memBytesDesc, memHeldDesc, memLimitDesc, evictedDesc, refusedDesc, sheddingDesc}

func (c *totalsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t, err := c.read(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(torrentsDesc, prometheus.GaugeValue, float64(t.Torrents))
	ch <- prometheus.MustNewConstMetric(seedersDesc, prometheus.GaugeValue, float64(t.Seeders4), "ipv4")
	ch <- prometheus.MustNewConstMetric(seedersDesc, prometheus.GaugeValue, float64(t.Seeders6), "ipv6")
	ch <- prometheus.MustNewConstMetric(leechersDesc, prometheus.GaugeValue, float64(t.Leechers4), "ipv4")
	ch <- prometheus.MustNewConstMetric(leechersDesc, prometheus.GaugeValue, float64(t.Leechers6), "ipv6")
	if t.PeersExpiredObserved {
		ch <- prometheus.MustNewConstMetric(expiredDesc, prometheus.CounterValue, float64(t.PeersExpired))
	}
	if m := t.Memory; t.MemoryObserved {
		shedding := 0.0
		if m.Shedding {
			shedding = 1
		}
		ch <- prometheus.MustNewConstMetric(memBytesDesc, prometheus.GaugeValue, float64(m.Bytes))
		ch <- prometheus.MustNewConstMetric(memHeldDesc, prometheus.GaugeValue, float64(m.Held))
		ch <- prometheus.MustNewConstMetric(memLimitDesc, prometheus.GaugeValue, float64(m.Limit))
		ch <- prometheus.MustNewConstMetric(evictedDesc, prometheus.CounterValue, float64(m.Evicted))
		ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(m.Refused))
		ch <- prometheus.MustNewConstMetric(sheddingDesc, prometheus.GaugeValue, shedding)
	}
}
