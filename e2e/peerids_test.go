package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"trackd/config"
)

// TestHTTPPeerIDs checks the peer_ids option end to end: a non-compact
// HTTP reply carries each peer's peer id when trackd keeps them, and no
// "peer id" at all when it does not (the default).
func TestHTTPPeerIDs(t *testing.T) {
	for _, ids := range []bool{false, true} {
		t.Run(fmt.Sprintf("peer_ids=%v", ids), func(t *testing.T) {
			srv := startTracker(t, func(c *config.Config) { c.PeerIDs = ids })
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			hc := &http.Client{Timeout: 10 * time.Second}
			base := "http://" + srv.HTTPAddr().String()
			ih := [20]byte{'p', 'e', 'e', 'r', 'i', 'd', 's'}
			httpAnnounce{infoHash: ih, port: 54001, compact: true}.do(ctx, t, hc, base)
			r := httpAnnounce{infoHash: ih, port: 54002, left: 1}.do(ctx, t, hc, base)
			list, ok := r["peers"].([]any)
			if !ok || len(list) != 1 {
				t.Fatalf("peers = %#v, want a list of one", r["peers"])
			}
			d, _ := list[0].(map[string]any)
			id, has := d["peer id"]
			if has != ids {
				t.Fatalf("peer_ids %v: peer %v", ids, d)
			}
			// httpAnnounce sends the peer id -E2E6- and the port.
			if want := fmt.Sprintf("-E2E6-%014d", 54001); has && id != want {
				t.Errorf("peer id %q, want %q", id, want)
			}
		})
	}
}
