package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"trackd/fleet"
)

// syncCollector reads a fleet Node's counters (fleet.Stats) once per
// scrape of /metrics: the series trackd_sync_*, there only when sync is
// on.
type syncCollector struct {
	read func() fleet.Stats
}

func syncDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("trackd_sync_"+name, help, nil, nil)
}

var (
	syncConnectedDesc   = syncDesc("connected", "1 when the last call to the sync bus (Redis) succeeded, else 0: 0 is an outage, during which announces are answered from this instance's memory and its changes wait.")
	syncLastContactDesc = syncDesc("last_contact_timestamp_seconds", "When a call to the sync bus last succeeded, in Unix seconds; 0 for never.")
	syncPublishedDesc   = syncDesc("changes_published_total", "Changes (announces applied here) published to the other instances.")
	syncBatchesDesc     = syncDesc("batches_published_total", "Batches of changes published.")
	syncAppliedDesc     = syncDesc("changes_applied_total", "Changes of other instances replayed into this instance's store.")
	syncRefusedDesc     = syncDesc("changes_refused_total", "Changes of other instances the store refused, at its memory bound (max_memory) as it refuses local announces.")
	syncDroppedDesc     = syncDesc("changes_dropped_total", "Changes of this instance dropped unpublished, because more were waiting than the pending bound while the bus was unreachable.")
	syncGapsDesc        = syncDesc("gaps_total", "Times a reader found batches of another instance missing (dropped by it, or trimmed from the stream before they were read).")
	syncLostDesc        = syncDesc("changes_lost_total", "Changes of other instances those gaps skipped.")
	syncDuplicatesDesc  = syncDesc("batches_duplicate_total", "Batches read a second time (a publication retried that had gone through), skipped.")
	syncGarbageDesc     = syncDesc("batches_garbage_total", "Batches read that did not decode (another format version, or not a batch), skipped.")
	syncBusErrorsDesc   = syncDesc("bus_errors_total", "Calls to the sync bus that failed.")
	syncPendingDesc     = syncDesc("pending_bytes", "Bytes of changes waiting to be published.")
	syncPendingBatDesc  = syncDesc("pending_batches", "Batches of changes waiting to be published, the open ones included.")
	syncDescs           = []*prometheus.Desc{
		syncConnectedDesc, syncLastContactDesc, syncPublishedDesc, syncBatchesDesc, syncAppliedDesc,
		syncRefusedDesc, syncDroppedDesc, syncGapsDesc, syncLostDesc, syncDuplicatesDesc, syncGarbageDesc,
		syncBusErrorsDesc, syncPendingDesc, syncPendingBatDesc,
	}
)

func (c *syncCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range syncDescs {
		ch <- d
	}
}

func (c *syncCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.read()
	connected, last := 0.0, 0.0
	if s.Connected {
		connected = 1
	}
	if !s.LastContact.IsZero() {
		last = float64(s.LastContact.UnixNano()) / 1e9
	}
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge(syncConnectedDesc, connected)
	gauge(syncLastContactDesc, last)
	counter(syncPublishedDesc, s.Published)
	counter(syncBatchesDesc, s.Batches)
	counter(syncAppliedDesc, s.Applied)
	counter(syncRefusedDesc, s.Refused)
	counter(syncDroppedDesc, s.Dropped)
	counter(syncGapsDesc, s.Gaps)
	counter(syncLostDesc, s.Lost)
	counter(syncDuplicatesDesc, s.Duplicates)
	counter(syncGarbageDesc, s.Garbage)
	counter(syncBusErrorsDesc, s.BusErrors)
	gauge(syncPendingDesc, float64(s.PendingBytes))
	gauge(syncPendingBatDesc, float64(s.PendingBatches))
}
