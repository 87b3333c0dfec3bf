package server

import (
	"trackd/httpserver"
	"trackd/metrics"
	"trackd/wsserver"
)

// connMetrics counts the HTTP server's evicted and refused connections
// (httpserver.Metrics) in trackd's metrics.
type connMetrics struct{ m *metrics.Metrics }

func (c connMetrics) ConnEvicted(b httpserver.Bound) { c.m.ConnEvicted(connReason(b)) }
func (c connMetrics) ConnRefused(b httpserver.Bound) { c.m.ConnRefused(connReason(b)) }

func connReason(b httpserver.Bound) metrics.ConnReason {
	if b == httpserver.BoundPerIP {
		return metrics.PerIP
	}
	return metrics.MaxConns
}

// wsConnMetrics counts the WebSocket transport's evicted connections
// (wsserver.Metrics) in trackd's metrics.
type wsConnMetrics struct{ m *metrics.Metrics }

func (c wsConnMetrics) ConnEvicted(b wsserver.Bound) {
	r := metrics.MaxConns
	if b == wsserver.BoundPerIP {
		r = metrics.PerIP
	}
	c.m.WSConnEvicted(r)
}
