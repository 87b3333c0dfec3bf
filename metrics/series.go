package metrics

import "github.com/prometheus/client_golang/prometheus"

// series is one series a statsCollector reports: its description, whether
// it is a gauge (else a counter), and its value in a reading of S.
type series[S any] struct {
	desc  *prometheus.Desc
	gauge bool
	value func(*S) float64
}

// statsCollector reads a component's counts (an S) once per scrape of
// /metrics and reports them as its series: how the fleet's counters
// (syncSeries) and the WebSocket relay's (relaySeries) are exported.
type statsCollector[S any] struct {
	read   func() S
	series []series[S]
}

func (c *statsCollector[S]) Describe(ch chan<- *prometheus.Desc) {
	for _, s := range c.series {
		ch <- s.desc
	}
}

func (c *statsCollector[S]) Collect(ch chan<- prometheus.Metric) {
	st := c.read()
	for _, s := range c.series {
		t := prometheus.CounterValue
		if s.gauge {
			t = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(s.desc, t, s.value(&st))
	}
}
