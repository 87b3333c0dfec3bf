package attack

import (
	"fmt"
	"testing"
	"time"
)

// TestRealClientNumbers: values real clients send must be understood. On
// main before issue 11 every left of 2^63 or more or negative was refused
// ("invalid left"), over UDP and HTTP, and so was event=empty over HTTP:
// WebTorrent's stopped peers stayed in their swarms. The empty event, BEP
// 21's paused and UDP event 4 were already accepted; they stay here so
// that they stay so.
func TestRealClientNumbers(t *testing.T) {
	d := startTrackd(t)

	// WebTorrent (Node, over UDP) sends left = 2^64−1, "unknown", on its
	// stopped announce: the peer must leave the swarm.
	t.Run("UDPStoppedLeftAllOnes", func(t *testing.T) {
		r := udpAnnounceReq{hash: id20("udp-stopped-all-ones"), peerID: id20("-WW0208-stopper"), left: 1000, event: eventStarted, numWant: 50, port: 7201}
		if _, err := udpAnnounce("127.0.0.1", d.udp, &r, probeTimeout); err != nil {
			t.Fatalf("started: %v", err)
		}
		if c, i, err := httpScrape(d.http, string(r.hash[:])); err != nil || c != 0 || i != 1 {
			t.Fatalf("after started: scrape %d complete, %d incomplete, %v; want one leecher", c, i, err)
		}
		r.left, r.event = 1<<64-1, eventStopped
		if _, err := udpAnnounce("127.0.0.1", d.udp, &r, probeTimeout); err != nil {
			t.Errorf("stopped with left=2^64-1: %v", err)
		}
		if c, i, err := httpScrape(d.http, string(r.hash[:])); err != nil || c != 0 || i != 0 {
			t.Errorf("after stopped with left=2^64-1: scrape %d complete, %d incomplete, %v; want the peer gone", c, i, err)
		}
	})

	// Over UDP, left of 2^63 or more is a leecher, and an event outside
	// 0–3 a regular announce.
	for _, tc := range []struct {
		name  string
		left  uint64
		event uint32
	}{
		{"UDPLeft2^63", 1 << 63, eventStarted},
		{"UDPLeftAllOnes", 1<<64 - 1, eventNone},
		{"UDPEvent4", 1000, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := udpAnnounceReq{hash: id20("udp-" + tc.name), peerID: id20("-WW0208-" + tc.name), left: tc.left, event: tc.event, numWant: 50, port: 7202}
			if _, err := udpAnnounce("127.0.0.1", d.udp, &r, probeTimeout); err != nil {
				t.Fatalf("announce: %v", err)
			}
			if c, i, err := httpScrape(d.http, string(r.hash[:])); err != nil || c != 0 || i != 1 {
				t.Errorf("scrape %d complete, %d incomplete, %v; want one leecher", c, i, err)
			}
		})
	}

	// Over HTTP, the same numbers as text, and BEP 3's event=empty ("the
	// same as not being present").
	for i, tc := range []struct {
		name, left, extra string
		leecher           bool
	}{
		{"HTTPLeftAllOnes", "18446744073709551615", "", true},
		{"HTTPLeft2^63", "9223372036854775808", "", true},
		{"HTTPLeftNegative", "-1", "", true},
		{"HTTPEventEmpty", "0", "event=empty", false},
		{"HTTPEventEmptyValue", "0", "event=", false},
		{"HTTPEventPaused", "0", "event=paused", false}, // BEP 21
	} {
		t.Run(tc.name, func(t *testing.T) {
			hash := id20s("http-" + tc.name)
			q := announceQuery(hash, id20s("-qB5010-"+tc.name), 7300+i, tc.left, tc.extra)
			if _, err := httpAnnounce("127.0.0.1", d.http, q, 5*time.Second); err != nil {
				t.Fatalf("announce %s: %v", q, err)
			}
			want := [2]int64{1, 0} // a seeder
			if tc.leecher {
				want = [2]int64{0, 1}
			}
			c, inc, err := httpScrape(d.http, hash)
			if err != nil || [2]int64{c, inc} != want {
				t.Errorf("scrape: %d complete, %d incomplete, %v; want %s", c, inc, err, fmt.Sprint(want))
			}
		})
	}
}
