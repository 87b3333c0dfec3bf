package server

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/tracker"
)

func announceVia(t *testing.T, srv *Server, ih bittorrent.InfoHash, port uint16, ev bittorrent.Event, left uint64) {
	t.Helper()
	req := tracker.AnnounceRequest{InfoHash: ih, Addr: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.7"), port),
		Event: ev, Left: left, NumWant: tracker.NumWantUnset, Compact: true}
	var resp tracker.AnnounceResponse
	if err := srv.Tracker().Announce(context.Background(), &req, &resp); err != nil {
		t.Fatal(err)
	}
}

func scrapeVia(t *testing.T, srv *Server, ih bittorrent.InfoHash) bittorrent.Stats {
	t.Helper()
	var resp tracker.ScrapeResponse
	if err := srv.Tracker().Scrape(context.Background(), []bittorrent.InfoHash{ih}, &resp); err != nil {
		t.Fatal(err)
	}
	return resp.Files[0]
}

func stop(t *testing.T, srv *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestStateSurvivesRestart: with -state, the swarms and download counts
// written at shutdown are there after a start.
func TestStateSurvivesRestart(t *testing.T) {
	cfg := loopbackConfig()
	cfg.State = filepath.Join(t.TempDir(), "state.snap")
	ih := bittorrent.InfoHash{0xaa}
	srv, logs := start(t, cfg)
	if !strings.Contains(logs.String(), "no state file yet") {
		t.Errorf("first start: log %q", logs.String())
	}
	announceVia(t, srv, ih, 6881, bittorrent.EventCompleted, 0)
	announceVia(t, srv, ih, 6882, bittorrent.EventStarted, 10)
	announceVia(t, srv, ih, 6883, bittorrent.EventCompleted, 0)
	announceVia(t, srv, ih, 6883, bittorrent.EventStopped, 0)
	want := bittorrent.Stats{Seeders: 1, Leechers: 1, Downloaded: 2}
	if got := scrapeVia(t, srv, ih); got != want {
		t.Fatalf("before the restart: %+v", got)
	}
	stop(t, srv)
	if !strings.Contains(logs.String(), "state written") {
		t.Errorf("shutdown did not write the state: %q", logs.String())
	}

	srv2, logs2 := start(t, cfg)
	if got := scrapeVia(t, srv2, ih); got != want {
		t.Errorf("after the restart: %+v, want %+v", got, want)
	}
	if !strings.Contains(logs2.String(), "state loaded") {
		t.Errorf("second start: log %q", logs2.String())
	}
}

// TestStatePeriodic: the snapshot is also written every state_interval.
func TestStatePeriodic(t *testing.T) {
	cfg := loopbackConfig()
	cfg.State = filepath.Join(t.TempDir(), "state.snap")
	cfg.StateInterval = 50 * time.Millisecond
	srv, _ := start(t, cfg)
	announceVia(t, srv, bittorrent.InfoHash{1}, 6881, bittorrent.EventStarted, 0)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if fi, err := os.Stat(cfg.State); err == nil && fi.Size() > 40 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no periodic snapshot within 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStateCorrupt: a state file that cannot be read is moved aside, not
// deleted, and trackd starts empty; the next snapshot goes to the path.
func TestStateCorrupt(t *testing.T) {
	dir := t.TempDir()
	cfg := loopbackConfig()
	cfg.State = filepath.Join(dir, "state.snap")
	garbage := []byte("trackd-snapshot\n\x00\x00\x00\x01 and then the disk filled up")
	os.WriteFile(cfg.State, garbage, 0o600)
	srv, logs := start(t, cfg)
	if !strings.Contains(logs.String(), "state file unreadable; moved aside") {
		t.Errorf("log %q", logs.String())
	}
	moved, _ := filepath.Glob(filepath.Join(dir, "state.snap.corrupt-*"))
	if len(moved) != 1 {
		t.Fatalf("moved aside: %v", moved)
	}
	if b, _ := os.ReadFile(moved[0]); string(b) != string(garbage) {
		t.Errorf("the moved file changed: %q", b)
	}
	announceVia(t, srv, bittorrent.InfoHash{2}, 6881, bittorrent.EventStarted, 0)
	stop(t, srv)
	srv2, _ := start(t, cfg)
	if got := scrapeVia(t, srv2, bittorrent.InfoHash{2}); got.Seeders != 1 {
		t.Errorf("after the corrupt start, the new state was not kept: %+v", got)
	}
}

// TestStateOlderVersion: a state file of format version 1 (the oldest,
// kept in snapshot/testdata) loads.
func TestStateOlderVersion(t *testing.T) {
	b, err := os.ReadFile("../snapshot/testdata/v1.snap")
	if err != nil {
		t.Fatal(err)
	}
	cfg := loopbackConfig()
	cfg.State = filepath.Join(t.TempDir(), "state.snap")
	cfg.PeerLifetime = 9 * time.Hour
	os.WriteFile(cfg.State, b, 0o600)
	srv, logs := start(t, cfg)
	if !strings.Contains(logs.String(), "state loaded") {
		t.Fatalf("log %q", logs.String())
	}
	// the file's swarm {1,2,3} has downloaded 7 and (until 2027) peers
	got := scrapeVia(t, srv, bittorrent.InfoHash{1, 2, 3})
	if got.Downloaded != 7 {
		t.Errorf("swarm from the version 1 file: %+v", got)
	}
	if time.Now().Before(time.Unix(1_800_000_000, 0).Add(-9*time.Hour)) && got.Seeders+got.Leechers != 3 {
		t.Errorf("peers from the version 1 file: %+v, want 3", got)
	}
}
