package metrics

import (
	"testing"
	"time"

	"trackd/fleet"
)

// TestSync: a fleet Node's counters show as trackd_sync_*, and not at all
// without sync.
func TestSync(t *testing.T) {
	at := time.Unix(1700000000, 500_000_000)
	stats := fleet.Stats{
		Published: 1, Batches: 2, Applied: 3, Refused: 4, Dropped: 5, Gaps: 6, Lost: 7,
		Duplicates: 8, Garbage: 9, BusErrors: 10, Connected: true, LastContact: at,
		PendingBatches: 11, PendingBytes: 12,
	}
	m := New(Options{Sync: func() fleet.Stats { return stats }})
	for name, want := range map[string]float64{
		"trackd_sync_connected":                      1,
		"trackd_sync_last_contact_timestamp_seconds": 1700000000.5,
		"trackd_sync_changes_published_total":        1,
		"trackd_sync_batches_published_total":        2,
		"trackd_sync_changes_applied_total":          3,
		"trackd_sync_changes_refused_total":          4,
		"trackd_sync_changes_dropped_total":          5,
		"trackd_sync_gaps_total":                     6,
		"trackd_sync_changes_lost_total":             7,
		"trackd_sync_batches_duplicate_total":        8,
		"trackd_sync_batches_garbage_total":          9,
		"trackd_sync_bus_errors_total":               10,
		"trackd_sync_pending_batches":                11,
		"trackd_sync_pending_bytes":                  12,
	} {
		if got := value(t, m, name, nil); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	stats = fleet.Stats{}
	if got := value(t, m, "trackd_sync_connected", nil); got != 0 {
		t.Errorf("disconnected: trackd_sync_connected = %v", got)
	}
	if got := value(t, m, "trackd_sync_last_contact_timestamp_seconds", nil); got != 0 {
		t.Errorf("never reached: last contact %v, want 0", got)
	}
	if got := value(t, New(Options{}), "trackd_sync_connected", nil); got != -1 {
		t.Errorf("without sync: trackd_sync_connected = %v, want no series", got)
	}
}
