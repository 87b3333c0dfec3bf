package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"trackd/fleet"
)

func syncDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("trackd_sync_"+name, help, nil, nil)
}

// syncSeries are the series trackd_sync_* of a fleet Node's counters
// (fleet.Stats), there only when sync is on.
var syncSeries = []series[fleet.Stats]{
	{syncDesc("connected", "1 when the last call to the sync bus (Redis) succeeded, else 0: 0 is an outage, during which announces are answered from this instance's memory and its changes wait."), true, func(s *fleet.Stats) float64 {
		if s.Connected {
			return 1
		}
		return 0
	}},
	{syncDesc("last_contact_timestamp_seconds", "When a call to the sync bus last succeeded, in Unix seconds; 0 for never."), true, func(s *fleet.Stats) float64 {
		if s.LastContact.IsZero() {
			return 0
		}
		return float64(s.LastContact.UnixNano()) / 1e9
	}},
	{syncDesc("changes_published_total", "Changes (announces applied here) published to the other instances."), false, func(s *fleet.Stats) float64 { return float64(s.Published) }},
	{syncDesc("batches_published_total", "Batches of changes published."), false, func(s *fleet.Stats) float64 { return float64(s.Batches) }},
	{syncDesc("changes_applied_total", "Changes of other instances replayed into this instance's store."), false, func(s *fleet.Stats) float64 { return float64(s.Applied) }},
	{syncDesc("changes_refused_total", "Changes of other instances the store refused, at its memory bound (max_memory) as it refuses local announces."), false, func(s *fleet.Stats) float64 { return float64(s.Refused) }},
	{syncDesc("changes_dropped_total", "Changes of this instance dropped unpublished, because more were waiting than the pending bound while the bus was unreachable."), false, func(s *fleet.Stats) float64 { return float64(s.Dropped) }},
	{syncDesc("gaps_total", "Times a reader found batches of another instance missing (dropped by it, or trimmed from the stream before they were read)."), false, func(s *fleet.Stats) float64 { return float64(s.Gaps) }},
	{syncDesc("changes_lost_total", "Changes of other instances those gaps skipped."), false, func(s *fleet.Stats) float64 { return float64(s.Lost) }},
	{syncDesc("batches_duplicate_total", "Batches read a second time (a publication retried that had gone through), skipped."), false, func(s *fleet.Stats) float64 { return float64(s.Duplicates) }},
	{syncDesc("batches_garbage_total", "Batches read that did not decode (another format version, or not a batch), skipped."), false, func(s *fleet.Stats) float64 { return float64(s.Garbage) }},
	{syncDesc("bus_errors_total", "Calls to the sync bus that failed."), false, func(s *fleet.Stats) float64 { return float64(s.BusErrors) }},
	{syncDesc("pending_bytes", "Bytes of changes waiting to be published."), true, func(s *fleet.Stats) float64 { return float64(s.PendingBytes) }},
	{syncDesc("pending_batches", "Batches of changes waiting to be published, the open ones included."), true, func(s *fleet.Stats) float64 { return float64(s.PendingBatches) }},
}
