package metrics

import (
	"testing"

	"trackd/fleet/relay"
)

// TestWSRelay: the relay's counts show as trackd_ws_relay_*, and not at
// all without the relay.
func TestWSRelay(t *testing.T) {
	stats := relay.Stats{
		Instances: 1, RemotePeers: 2, ChangesSent: 3, ChangesDropped: 4, ChangesApplied: 5,
		Conflicts: 6, Full: 7, Relayed: 8, RelayDropped: 9, Delivered: 10, Undeliverable: 11,
		Stale: 12, Dumps: 13, DumpedPeers: 14, SendErrors: 15, Invalid: 16, Foreign: 17,
		InstancesGone: 18, TooManyInstances: 19,
	}
	m := New(Options{WSRelay: func() relay.Stats { return stats }})
	for name, want := range map[string]float64{
		"trackd_ws_relay_instances":                1,
		"trackd_ws_relay_remote_peers":             2,
		"trackd_ws_relay_changes_sent_total":       3,
		"trackd_ws_relay_changes_dropped_total":    4,
		"trackd_ws_relay_changes_applied_total":    5,
		"trackd_ws_relay_conflicts_total":          6,
		"trackd_ws_relay_full_total":               7,
		"trackd_ws_relay_relayed_total":            8,
		"trackd_ws_relay_relay_dropped_total":      9,
		"trackd_ws_relay_delivered_total":          10,
		"trackd_ws_relay_undeliverable_total":      11,
		"trackd_ws_relay_stale_total":              12,
		"trackd_ws_relay_dumps_total":              13,
		"trackd_ws_relay_dumped_peers_total":       14,
		"trackd_ws_relay_send_errors_total":        15,
		"trackd_ws_relay_invalid_total":            16,
		"trackd_ws_relay_foreign_total":            17,
		"trackd_ws_relay_instances_gone_total":     18,
		"trackd_ws_relay_too_many_instances_total": 19,
	} {
		if got := value(t, m, name, nil); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := value(t, New(Options{}), "trackd_ws_relay_instances", nil); got != -1 {
		t.Errorf("without the relay: trackd_ws_relay_instances = %v, want no series", got)
	}
}
