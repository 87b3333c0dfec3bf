package server

import (
	"trackd/frontend/ws"
	"trackd/metrics"
)

// wsMetrics is frontend/ws's Metrics over package metrics: each of
// frontend/ws's values maps to package metrics' value of the same name
// (TestWSMetricsNames pins the names), with no allocation per call. One
// pointer wide, it is stored in the interface as is.
type wsMetrics struct{ m *metrics.Metrics }

var _ ws.Metrics = wsMetrics{}

// newWSMetrics returns the ws.Metrics of m, for ws.Options.Metrics.
func newWSMetrics(m *metrics.Metrics) ws.Metrics { return wsMetrics{m} }

var (
	wsActions = [...]metrics.WSAction{
		ws.ActionInvalid:  metrics.WSActionInvalid,
		ws.ActionAnnounce: metrics.WSActionAnnounce,
		ws.ActionAnswer:   metrics.WSActionAnswer,
		ws.ActionScrape:   metrics.WSActionScrape,
	}
	wsResults = [...]metrics.WSResult{
		ws.ResultOK:         metrics.WSResultOK,
		ws.ResultRefused:    metrics.WSResultRefused,
		ws.ResultOverloaded: metrics.WSResultOverloaded,
		ws.ResultDropped:    metrics.WSResultDropped,
	}
	wsRelays = [...]metrics.WSRelay{
		ws.RelayOffer:  metrics.WSRelayOffer,
		ws.RelayAnswer: metrics.WSRelayAnswer,
	}
	wsDrops = [...]metrics.WSDrop{
		ws.DropNoPeer:      metrics.WSDropNoPeer,
		ws.DropNotMember:   metrics.WSDropNotMember,
		ws.DropRateLimited: metrics.WSDropRateLimited,
		ws.DropSendFailed:  metrics.WSDropSendFailed,
	}
)

// Message implements ws.Metrics.
func (w wsMetrics) Message(a ws.Action, r ws.Result) {
	if int(a) < len(wsActions) && int(r) < len(wsResults) {
		w.m.WSMessage(wsActions[a], wsResults[r])
	}
}

// Relayed implements ws.Metrics.
func (w wsMetrics) Relayed(r ws.Relay, n int) {
	if int(r) < len(wsRelays) {
		w.m.WSRelayed(wsRelays[r], n)
	}
}

// Dropped implements ws.Metrics.
func (w wsMetrics) Dropped(d ws.Drop, n int) {
	if int(d) < len(wsDrops) {
		w.m.WSDropped(wsDrops[d], n)
	}
}
