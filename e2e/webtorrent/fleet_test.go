//go:build linux

package webtorrent

import (
	"testing"

	"trackd/internal/redistest"
)

// TestClientAcrossFleet is TestClient across a fleet: two trackd
// binaries keep their swarms in step through one real redis-server
// (-sync), and bittorrent-tracker's Clients alternate between them (four:
// two on each). Every pair connects over WebRTC, so the offers and
// answers crossed from one instance to the other both ways; the scrapes,
// made on the first instance, count the second's peers, its "completed",
// its "stopped" and its closed socket.
func TestClientAcrossFleet(t *testing.T) {
	requireNetns(t)
	requireNode(t)
	rs := redistest.Start(t)
	one := startTrackdWith(t, false, "-sync", rs.URL())
	two := startTrackdWith(t, false, "-sync", rs.URL())
	checkUpgrade(t, one)
	checkUpgrade(t, two)
	// --settle: a new peer reaches the other instance about 50 ms (the
	// relay's batching) and a Pub/Sub message later; the next client's
	// offers must find it there.
	res := runScript(t, one, "client.mjs", clientTimeout, "--announce", one.announce, "--announce-odd", two.announce,
		"--clients", "4", "--settle", "1000", "--timeout", seconds(clientTimeout), "--expect-downloaded")
	if res["announce_odd"] != two.announce {
		t.Fatalf("client.mjs reports announce_odd %v, want %s", res["announce_odd"], two.announce)
	}
	steps, _ := res["steps_ms"].(map[string]any)
	t.Logf("client.mjs: 4 clients on 2 instances connected pairwise %v after start, all checks done in %v",
		ms(steps["connected"]), ms(res["elapsed_ms"]))
}
