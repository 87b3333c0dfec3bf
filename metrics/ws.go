package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"trackd/signaling"
)

// The WebSocket frontend's counts. Package frontend/ws has its own names
// for these (its Metrics interface); server maps them onto these, which
// are the label values /metrics shows.

// WSAction is what a WebSocket message asked for: the action label of
// trackd_ws_messages_total.
type WSAction uint8

const (
	WSActionInvalid  WSAction = iota // not parsed, or no known action
	WSActionAnnounce                 // an announce, with or without offers
	WSActionAnswer                   // an announce carrying an answer
	WSActionScrape
	numWSActions
)

var wsActionNames = [numWSActions]string{"invalid", "announce", "answer", "scrape"}

func (a WSAction) String() string { return wsActionNames[a] }

// WSResult is how a WebSocket message ended: the result label of
// trackd_ws_messages_total.
type WSResult uint8

const (
	WSResultOK         WSResult = iota
	WSResultRefused             // a failure reason for what the client sent
	WSResultOverloaded          // a failure reason for the tracker's state (full)
	WSResultDropped             // an answer that went nowhere (trackd_ws_dropped_total says why)
	numWSResults
)

var wsResultNames = [numWSResults]string{"ok", "refused", "overloaded", "dropped"}

func (r WSResult) String() string { return wsResultNames[r] }

// WSRelay is what was relayed to another WebSocket connection: the kind
// label of trackd_ws_relayed_total.
type WSRelay uint8

const (
	WSRelayOffer WSRelay = iota
	WSRelayAnswer
	numWSRelays
)

var wsRelayNames = [numWSRelays]string{"offer", "answer"}

func (r WSRelay) String() string { return wsRelayNames[r] }

// WSDrop is why an offer or answer was not relayed: the reason label of
// trackd_ws_dropped_total.
type WSDrop uint8

const (
	WSDropNoPeer      WSDrop = iota // an answer to a peer not in the swarm
	WSDropNotMember                 // an answer from a peer id not announced on its connection
	WSDropRateLimited               // offers of an announce over the connection's rate
	WSDropSendFailed                // the recipient's connection refused it (closed, or its queue full)
	numWSDrops
)

var wsDropNames = [numWSDrops]string{"no_peer", "not_member", "rate_limited", "send_failed"}

func (d WSDrop) String() string { return wsDropNames[d] }

// wsAsRequest is how a WebSocket message counts in trackd_requests_total
// (protocol "ws"): an answer is an announce message on the wire (action
// "announce"), an answer dropped was handled as the protocol says (ok;
// trackd_ws_dropped_total has the drops), refused is client_error,
// overloaded server_error. A message with no known action is not a
// request, as an HTTP path or a UDP action trackd does not serve is not.
var (
	wsAsAction = [numWSActions]Action{WSActionAnnounce: Announce, WSActionAnswer: Announce, WSActionScrape: Scrape}
	wsAsResult = [numWSResults]Result{WSResultOK: OK, WSResultRefused: ClientError, WSResultOverloaded: ServerError, WSResultDropped: OK}
)

// wsCounters are the WebSocket frontend's collectors, resolved at New.
type wsCounters struct {
	messages [numWSActions][numWSResults]prometheus.Counter
	// requests are the trackd_requests_total series each message also
	// counts in (nil for WSActionInvalid), perProtocol its count for
	// Requests(WS).
	requests    [numWSActions][numWSResults]prometheus.Counter
	perProtocol *atomic.Uint64
	relayed     [numWSRelays]prometheus.Counter
	dropped     [numWSDrops]prometheus.Counter
	evicted     [numConnReasons]prometheus.Counter

	conns  atomic.Pointer[func() int]
	totals atomic.Pointer[func() signaling.Totals]
}

// init builds the collectors; requests are the trackd_requests_total
// series of protocol ws. It returns what New registers.
func (w *wsCounters) init(requests *[numActions][numResults]prometheus.Counter, perProtocol *atomic.Uint64) []prometheus.Collector {
	messages := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "trackd", Name: "ws_messages_total",
		Help: "WebSocket messages handled, by action (announce, answer: an announce carrying an answer, scrape, invalid: no known action) " +
			"and result (ok, refused: a failure reason for what the client sent, overloaded: a failure reason for the tracker being full, " +
			"dropped: an answer that went nowhere, see trackd_ws_dropped_total).",
	}, []string{"action", "result"})
	relayed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "trackd", Name: "ws_relayed_total",
		Help: "WebRTC offers and answers relayed to another WebSocket peer's connection, by kind (offer, answer).",
	}, []string{"kind"})
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "trackd", Name: "ws_dropped_total",
		Help: "WebRTC offers and answers not relayed, by reason (no_peer: an answer to a peer not in the swarm, " +
			"not_member: an answer from a peer id not announced on its connection, rate_limited: offers over the connection's rate, " +
			"send_failed: the recipient's connection was closed or its write queue full).",
	}, []string{"reason"})
	evicted := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "trackd", Name: "ws_connections_evicted_total",
		Help: "WebSocket connections closed (1013) to admit a new one, the longest without a message first, by the bound reached (max_conns, per_ip: max_conns_per_ip).",
	}, []string{"reason"})
	for r := range numConnReasons {
		w.evicted[r] = evicted.WithLabelValues(r.String())
	}
	w.perProtocol = perProtocol
	for a := range numWSActions {
		for r := range numWSResults {
			w.messages[a][r] = messages.WithLabelValues(a.String(), r.String())
			if a != WSActionInvalid {
				w.requests[a][r] = requests[wsAsAction[a]][wsAsResult[r]]
			}
		}
	}
	for k := range numWSRelays {
		w.relayed[k] = relayed.WithLabelValues(k.String())
	}
	for d := range numWSDrops {
		w.dropped[d] = dropped.WithLabelValues(d.String())
	}
	conns := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "trackd", Name: "ws_connections_open",
		Help: "Open WebSocket connections (ws:// and wss://).",
	}, func() float64 { return float64(w.openConns()) })
	return []prometheus.Collector{messages, relayed, dropped, evicted, conns, &wsSwarmsCollector{w}}
}

func (w *wsCounters) openConns() int {
	if f := w.conns.Load(); f != nil {
		return (*f)()
	}
	return 0
}

func (w *wsCounters) swarmTotals() signaling.Totals {
	if f := w.totals.Load(); f != nil {
		return (*f)()
	}
	return signaling.Totals{}
}

// WSMessage records one WebSocket message: what it asked for and how it
// ended. Every message but an invalid one also counts in
// trackd_requests_total{protocol="ws"} and Requests(WS): an answer as an
// announce, refused as client_error, overloaded as server_error, dropped
// as ok.
func (m *Metrics) WSMessage(a WSAction, r WSResult) {
	if m == nil || a >= numWSActions || r >= numWSResults {
		return
	}
	w := &m.ws
	w.messages[a][r].Inc()
	if c := w.requests[a][r]; c != nil {
		c.Inc()
		w.perProtocol.Add(1)
	}
}

// WSRelayed records n offers or answers relayed to other connections.
func (m *Metrics) WSRelayed(k WSRelay, n int) {
	if m == nil || k >= numWSRelays || n <= 0 {
		return
	}
	m.ws.relayed[k].Add(float64(n))
}

// WSDropped records n offers or answers not relayed, and why.
func (m *Metrics) WSDropped(d WSDrop, n int) {
	if m == nil || d >= numWSDrops || n <= 0 {
		return
	}
	m.ws.dropped[d].Add(float64(n))
}

// WSConnEvicted records a WebSocket connection closed to admit a new
// one, at the bound r.
func (m *Metrics) WSConnEvicted(r ConnReason) {
	if m != nil {
		m.ws.evicted[r].Inc()
	}
}

// WSConns sets where trackd_ws_connections_open (and WSConnsOpen) reads
// the open WebSocket connections: open is called at each scrape of
// /metrics and each sample of the stats page. Before it is set the gauge
// shows 0; a later call replaces it.
func (m *Metrics) WSConns(open func() int) {
	if m != nil && open != nil {
		m.ws.conns.Store(&open)
	}
}

// WSSwarms sets where the WebSocket swarms' gauges (trackd_ws_torrents,
// trackd_ws_seeders, trackd_ws_leechers) and WSSwarmTotals read their
// counts: a signaling.Registry's Totals, typically. Before it is set they
// show 0; a later call replaces it.
func (m *Metrics) WSSwarms(totals func() signaling.Totals) {
	if m != nil && totals != nil {
		m.ws.totals.Store(&totals)
	}
}

// WSConnsOpen returns the open WebSocket connections, as the function
// given to WSConns reports them (0 before).
func (m *Metrics) WSConnsOpen() int {
	if m == nil {
		return 0
	}
	return m.ws.openConns()
}

// WSSwarmTotals returns the WebSocket swarms' counts, as the function
// given to WSSwarms reports them (zero before).
func (m *Metrics) WSSwarmTotals() signaling.Totals {
	if m == nil {
		return signaling.Totals{}
	}
	return m.ws.swarmTotals()
}

var (
	wsTorrentsDesc = prometheus.NewDesc("trackd_ws_torrents", "Torrents with at least one WebSocket (WebTorrent) peer: the WebSocket swarms, apart from the store's.", nil, nil)
	wsSeedersDesc  = prometheus.NewDesc("trackd_ws_seeders", "WebSocket peers with the whole torrent.", nil, nil)
	wsLeechersDesc = prometheus.NewDesc("trackd_ws_leechers", "WebSocket peers still downloading.", nil, nil)
)

// wsSwarmsCollector reads the WebSocket swarms' totals once per scrape.
type wsSwarmsCollector struct{ w *wsCounters }

func (c *wsSwarmsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- wsTorrentsDesc
	ch <- wsSeedersDesc
	ch <- wsLeechersDesc
}

func (c *wsSwarmsCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.w.swarmTotals()
	ch <- prometheus.MustNewConstMetric(wsTorrentsDesc, prometheus.GaugeValue, float64(t.Swarms))
	ch <- prometheus.MustNewConstMetric(wsSeedersDesc, prometheus.GaugeValue, float64(t.Seeders))
	ch <- prometheus.MustNewConstMetric(wsLeechersDesc, prometheus.GaugeValue, float64(t.Leechers))
}
