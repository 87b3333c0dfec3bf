package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"trackd/config"
	"trackd/server"
)

// Tests with Debian's BitTorrent clients as child processes: aria2c (package
// aria2) and libtorrent through its Python binding (python3-libtorrent,
// driven by testdata/lt_client.py). Each pair is one seeder and one
// downloader on 127.0.0.1, each on its own port, finding each other only
// through trackd's announce URL (HTTP or UDP): DHT, peer exchange and local peer
// discovery are off in both.

// externalTimeout bounds one external-client test from start to end.
const externalTimeout = 100 * time.Second

// aria2Args are the options every aria2c here runs with.
func aria2Args(dir string, port int) []string {
	return []string{
		"--no-conf=true",
		"--dir=" + dir,
		// Peers only from the tracker.
		"--enable-dht=false",
		"--enable-dht6=false",
		"--enable-peer-exchange=false",
		"--bt-enable-lpd=false",
		// Loopback, IPv4, its own port; aria2 needs no setting to accept
		// or dial other peers at 127.0.0.1.
		"--interface=127.0.0.1",
		"--disable-ipv6=true",
		"--listen-port=" + strconv.Itoa(port),
		"--dht-listen-port=" + strconv.Itoa(port),
		"--file-allocation=none",
		"--summary-interval=0",
		"--console-log-level=info",
		"--show-console-readout=false",
		// Exit if the test binary dies without killing us.
		"--stop-with-process=" + strconv.Itoa(os.Getpid()),
	}
}

// startLibtorrent starts testdata/lt_client.py in mode "seed" or "download".
func startLibtorrent(ctx context.Context, t *testing.T, python, mode string, tf torrentFile, dir string) *proc {
	script, err := filepath.Abs(filepath.Join("testdata", "lt_client.py"))
	if err != nil {
		t.Fatal(err)
	}
	timeout := time.Until(mustDeadline(ctx)).Seconds()
	return startProcess(ctx, t, python, "-u", script, mode, tf.Path, dir,
		strconv.Itoa(freePort(t)), fmt.Sprintf("%.0f", timeout))
}

func mustDeadline(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		panic("context without a deadline")
	}
	return d
}

// waitForCompletedCount waits until trackd has counted n completed
// downloads of tf (the downloader's "completed" announce).
func waitForCompletedCount(ctx context.Context, t *testing.T, srv *server.Server, tf torrentFile, n uint32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	waitFor(ctx, t, "trackd to count the completed download", func() (bool, string) {
		s := swarmStats(ctx, t, srv, tf.InfoHash)
		return s.Downloaded == n, fmt.Sprintf("swarm counts %+v", s)
	})
}

// announceOver is the tracker protocol that the clients of a test announce
// over.
type announceOver struct {
	config    func(*config.Config)                              // the tracker's listeners
	url       func(*server.Server) string                       // the torrent's only announce URL
	aria2Args func(t *testing.T, dir string, port int) []string // aria2c's options for it
}

var (
	overHTTP = announceOver{
		url:       announceURL,
		aria2Args: func(_ *testing.T, dir string, port int) []string { return aria2Args(dir, port) },
	}
	overUDP = announceOver{config: udpOnly, url: udpAnnounceURL, aria2Args: aria2UDPArgs}
)

// TestAria2SeedsLibtorrentDownloads: aria2c seeds, libtorrent downloads.
func TestAria2SeedsLibtorrentDownloads(t *testing.T) {
	aria2SeedsLibtorrentDownloads(t, overHTTP, "aria2-to-libtorrent.bin", 4<<20+777)
}

// TestLibtorrentSeedsAria2Downloads: libtorrent seeds, aria2c downloads.
func TestLibtorrentSeedsAria2Downloads(t *testing.T) {
	libtorrentSeedsAria2Downloads(t, overHTTP, "libtorrent-to-aria2.bin", 4<<20+555)
}

func aria2SeedsLibtorrentDownloads(t *testing.T, over announceOver, name string, size int) {
	aria2 := requireProgram(t, "aria2c")
	python := requireLibtorrentPython(t)
	ctx := deadline(t, externalTimeout)
	srv := startTracker(t, over.config)
	seedDir, dlDir := t.TempDir(), t.TempDir()
	tf := makeTorrent(t, seedDir, name, size, 256<<10, over.url(srv))

	seeder := startProcess(ctx, t, aria2, append(over.aria2Args(t, seedDir, freePort(t)),
		"--check-integrity=true",
		"--bt-hash-check-seed=true",
		// Seed for ever: the test kills it.
		"--seed-ratio=0.0",
		tf.Path,
	)...)
	waitForSeeder(ctx, t, srv, tf.InfoHash)
	dl := startLibtorrent(ctx, t, python, "download", tf, dlDir)
	dl.wait(ctx, t)
	if done, err := seeder.exited(); done {
		t.Fatalf("aria2c seeder exited during the test: %v", err)
	}
	checkDownloaded(t, filepath.Join(dlDir, tf.Name), tf)
	waitForCompletedCount(ctx, t, srv, tf, 1)
}

func libtorrentSeedsAria2Downloads(t *testing.T, over announceOver, name string, size int) {
	aria2 := requireProgram(t, "aria2c")
	python := requireLibtorrentPython(t)
	ctx := deadline(t, externalTimeout)
	srv := startTracker(t, over.config)
	seedDir, dlDir := t.TempDir(), t.TempDir()
	tf := makeTorrent(t, seedDir, name, size, 256<<10, over.url(srv))

	seeder := startLibtorrent(ctx, t, python, "seed", tf, seedDir)
	waitForSeeder(ctx, t, srv, tf.InfoHash)
	dl := startProcess(ctx, t, aria2, append(over.aria2Args(t, dlDir, freePort(t)),
		// Seed for 3 s after the download, then exit. With
		// --seed-time=0 aria2 stops at once and sends only "stopped",
		// never "completed", so trackd would count no download.
		"--seed-time=0.05",
		// Re-announce every few seconds rather than after trackd's
		// interval (a minute), in case the first announce raced the
		// seeder's.
		"--bt-tracker-interval=3",
		tf.Path,
	)...)
	dl.wait(ctx, t)
	if done, err := seeder.exited(); done {
		t.Fatalf("libtorrent seeder exited during the test: %v", err)
	}
	checkDownloaded(t, filepath.Join(dlDir, tf.Name), tf)
	waitForCompletedCount(ctx, t, srv, tf, 1)
}
