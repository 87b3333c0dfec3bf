package server

import (
	"trackd/httpserver"
	"trackd/metrics"
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
