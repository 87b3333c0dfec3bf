package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"trackd/bencode"
	"trackd/internal/redistest"
)

// announceEvent announces peer port of hash to srv with event (none if
// ""); left 0 makes it a seeder.
func announceEvent(t *testing.T, srv *Server, hash string, port, left int, event string) {
	t.Helper()
	u := fmt.Sprintf("http://%s/announce?info_hash=%s&peer_id=-TD0001-%012d&port=%d&left=%d&compact=1&numwant=0&event=%s",
		srv.HTTPAddr(), hash, port, port, left, event)
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if strings.Contains(string(body), "failure reason") {
		t.Fatalf("announce to %s: %q", srv.HTTPAddr(), body)
	}
}

// scrapeCounts returns the seeders, leechers and downloads of hash on
// srv, as its scrape says.
func scrapeCounts(t *testing.T, srv *Server, hash string) [3]int64 {
	t.Helper()
	res, err := http.Get(fmt.Sprintf("http://%s/scrape?info_hash=%s", srv.HTTPAddr(), url.QueryEscape(hash)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	v, err := bencode.Decode(body)
	d, _ := v.(map[string]any)
	files, _ := d["files"].(map[string]any)
	f, _ := files[hash].(map[string]any)
	if err != nil || f == nil {
		t.Fatalf("scrape of %s: %q", srv.HTTPAddr(), body)
	}
	c, _ := f["complete"].(int64)
	i, _ := f["incomplete"].(int64)
	n, _ := f["downloaded"].(int64)
	return [3]int64{c, i, n}
}

// TestJoin, on a real redis-server: an instance started beside a running
// one serves every swarm of the fleet as soon as it serves at all
// (peers, seeders and leechers, downloads) and stays in step; one
// restarted with its state file prefers the running instance's swarms,
// fresher; one started alone, or with Redis down, starts from its state
// file. The downloads are counted once per session throughout: on
// several instances, through a join and a restart.
func TestJoin(t *testing.T) {
	rs := redistest.Start(t)
	dir := t.TempDir()
	hashes := []string{"jjjjjjjjjjjjjjjjjjj1", "jjjjjjjjjjjjjjjjjjj2", "jjjjjjjjjjjjjjjjjjj3"}
	want := make(map[string][3]int64)
	check := func(what string, srvs ...*Server) {
		t.Helper()
		for k, srv := range srvs {
			for _, h := range hashes {
				if got := scrapeCounts(t, srv, h); got != want[h] {
					t.Errorf("%s: instance %d: %s counts %v (seeders, leechers, downloads), want %v", what, k, h, got, want[h])
				}
			}
		}
	}
	eventuallySame := func(what string, srvs ...*Server) {
		t.Helper()
		waitFor(t, what, func() bool {
			for _, srv := range srvs {
				for _, h := range hashes {
					if scrapeCounts(t, srv, h) != want[h] {
						return false
					}
				}
			}
			return true
		})
	}

	// A, alone: no one answers, it starts empty.
	began := time.Now()
	cfgA := syncConfig(rs.URL())
	a, logsA := start(t, cfgA)
	if a.sync.joined || !strings.Contains(logsA.String(), "no running instance answered") {
		t.Errorf("A joined with no one to join (%v):\n%s", a.sync.joined, logsA.String())
	}
	t.Logf("A, alone, served after %v", time.Since(began).Round(time.Millisecond))
	// Two leechers and a seeder per torrent; one leecher completes (and
	// announces completed twice, as a client may).
	for k, h := range hashes {
		announceEvent(t, a, h, 1000+k, 100, "started")
		announceEvent(t, a, h, 1100+k, 100, "started")
		announceEvent(t, a, h, 1200+k, 0, "started")
		announceEvent(t, a, h, 1000+k, 0, "completed")
		announceEvent(t, a, h, 1000+k, 0, "completed")
		want[h] = [3]int64{2, 1, 1}
	}

	// B joins: it has every swarm at once.
	cfgB := syncConfig(rs.URL())
	cfgB.State = filepath.Join(dir, "b.state")
	began = time.Now()
	b, logsB := start(t, cfgB)
	if !b.sync.joined {
		t.Fatalf("B did not join:\n%s", logsB.String())
	}
	t.Logf("B joined and served after %v", time.Since(began).Round(time.Millisecond))
	check("B right after its join", a, b)

	// Completions on both, one of a session that moved from A to B: each
	// session counts once, everywhere.
	announceEvent(t, b, hashes[0], 1100, 0, "completed") // A's leecher, now on B
	announceEvent(t, a, hashes[1], 1101, 0, "completed")
	announceEvent(t, b, hashes[2], 2002, 0, "completed") // a new session on B
	want[hashes[0]] = [3]int64{3, 0, 2}
	want[hashes[1]] = [3]int64{3, 0, 2}
	want[hashes[2]] = [3]int64{3, 1, 2}
	eventuallySame("A and B count the completions once", a, b)

	// B stops (its state file written), the fleet goes on without it,
	// and B restarts with the file: it takes A's swarms, fresher.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	announceEvent(t, a, hashes[2], 1102, 0, "completed")
	announceEvent(t, a, hashes[2], 2002, 0, "stopped")
	want[hashes[2]] = [3]int64{3, 0, 3}
	b2, logsB2 := start(t, cfgB)
	if !b2.sync.joined || !strings.Contains(logsB2.String(), "state file not read") {
		t.Fatalf("B restarted with its state file did not prefer a running instance:\n%s", logsB2.String())
	}
	check("B restarted with its state file", a, b2)

	// C, a third instance, joins while announces and completions go on.
	c, _ := start(t, syncConfig(rs.URL()))
	announceEvent(t, c, hashes[1], 3001, 100, "started")
	announceEvent(t, c, hashes[1], 3001, 0, "completed")
	announceEvent(t, b2, hashes[0], 3002, 0, "completed")
	want[hashes[1]] = [3]int64{4, 0, 3}
	want[hashes[0]] = [3]int64{4, 0, 3}
	eventuallySame("A, B and C in step after C's join", a, b2, c)

	// Redis down: D starts at once from B's state file, written at B's
	// stop, and says why.
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	if err := b2.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	rs.Stop()
	cfgD := cfgB
	began = time.Now()
	d, logsD := start(t, cfgD)
	took := time.Since(began)
	if d.sync.joined || !strings.Contains(logsD.String(), "could not join") || !strings.Contains(logsD.String(), "state loaded") {
		t.Fatalf("D, Redis down:\n%s", logsD.String())
	}
	if took > 3*time.Second {
		t.Errorf("D took %v to start with Redis down", took)
	}
	check("D from B's state file", d)
	rs.Restart()
}
