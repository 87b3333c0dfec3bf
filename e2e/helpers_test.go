package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"trackd/bencode"
	"trackd/bittorrent"
	"trackd/config"
	"trackd/internal/external"
	"trackd/server"
	"trackd/tracker"
)

// missingExternal skips t, or fails it when TRACKD_REQUIRE_EXTERNAL=1, for
// a prerequisite this machine lacks.
func missingExternal(t testing.TB, format string, args ...any) {
	t.Helper()
	external.Missing(t, format, args...)
}

// requireProgram returns the path of the program name, or skips t (fails
// it under TRACKD_REQUIRE_EXTERNAL=1) when it is not on PATH.
func requireProgram(t testing.TB, name string) string {
	t.Helper()
	return external.Program(t, name)
}

// requireLibtorrentPython returns a python interpreter that can import
// libtorrent. The Debian package python3-libtorrent installs the module for
// /usr/bin/python3, which a pyenv (or venv) python3 first on PATH cannot
// see, so /usr/bin/python3 is tried first.
func requireLibtorrentPython(t testing.TB) string {
	t.Helper()
	candidates := []string{"/usr/bin/python3"}
	for _, name := range []string{"python3", "python"} {
		if p, err := exec.LookPath(name); err == nil {
			candidates = append(candidates, p)
		}
	}
	var tried []string
	for _, py := range candidates {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, py, "-c", "import libtorrent; print(libtorrent.__version__)").CombinedOutput()
		cancel()
		if err == nil {
			t.Logf("using %s with libtorrent %s", py, strings.TrimSpace(string(out)))
			return py
		}
		tried = append(tried, py)
	}
	missingExternal(t, "no python that can import libtorrent (tried %s; Debian package python3-libtorrent)", strings.Join(tried, ", "))
	return ""
}

// testWriter sends a logger's output to the test log until the test ends;
// afterwards (a goroutine logging late) it drops it, since t.Log would
// panic.
type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func newTestWriter(t testing.TB) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// testLogger is a slog.Logger writing to the test log at level and above.
func testLogger(t testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: level}))
}

// startTracker starts an in-process trackd on ephemeral loopback ports,
// HTTP and UDP (or on cfg.HTTP and cfg.UDP as mutate leaves them), and
// shuts it down when the test ends.
func startTracker(t testing.TB, mutate func(*config.Config)) *server.Server {
	t.Helper()
	cfg := config.Default()
	cfg.HTTP = "127.0.0.1:0"
	cfg.UDP = "127.0.0.1:0"
	cfg.UDPSockets = 2
	cfg.Admin = "127.0.0.1:0"
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := server.New(cfg, testLogger(t, slog.LevelInfo))
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-srv.Err():
			t.Errorf("server failed while serving: %v", err)
		default:
		}
	})
	return srv
}

// announceURL is the HTTP announce URL of srv.
func announceURL(srv *server.Server) string {
	return "http://" + srv.HTTPAddr().String() + "/announce"
}

// udpAnnounceURL is the UDP announce URL of srv (BEP 15; the path goes to
// the tracker as BEP 41 URL data).
func udpAnnounceURL(srv *server.Server) string {
	return "udp://" + srv.UDPAddr().String() + "/announce"
}

// swarmStats asks srv's core tracker (not the wire) for one torrent's
// counts.
func swarmStats(ctx context.Context, t testing.TB, srv *server.Server, ih [20]byte) bittorrent.Stats {
	t.Helper()
	var resp tracker.ScrapeResponse
	if err := srv.Tracker().Scrape(ctx, []bittorrent.InfoHash{ih}, &resp); err != nil {
		t.Fatalf("Tracker().Scrape: %v", err)
	}
	return resp.Files[0]
}

// waitFor polls cond every 100 ms until it holds or ctx ends, in which case
// the test fails with what and cond's last explanation.
func waitFor(ctx context.Context, t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, why := cond()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s: %s", what, why)
		case <-tick.C:
		}
	}
}

// waitForSeeder waits until trackd counts at least one seeder of ih.
func waitForSeeder(ctx context.Context, t testing.TB, srv *server.Server, ih [20]byte) {
	t.Helper()
	waitFor(ctx, t, "the seeder's announce to reach trackd", func() (bool, string) {
		s := swarmStats(ctx, t, srv, ih)
		return s.Seeders >= 1, fmt.Sprintf("swarm counts %+v", s)
	})
}

// torrentFile is a single-file torrent made by makeTorrent.
type torrentFile struct {
	Path     string   // the .torrent file
	Name     string   // the file's name inside the torrent
	DataPath string   // the data, in the seeder's directory
	Size     int64    // bytes of data
	InfoHash [20]byte // SHA-1 of the bencoded info dictionary
	SHA256   [32]byte // of the data
}

// makeTorrent writes size random bytes to dataDir/name and a single-file
// .torrent for them, announcing to announce, in a fresh directory. It uses
// only trackd's own bencode package, so that no client under test has a
// hand in the metainfo.
func makeTorrent(t testing.TB, dataDir, name string, size, pieceLen int, announce string) torrentFile {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	dataPath := filepath.Join(dataDir, name)
	if err := os.WriteFile(dataPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var pieces []byte
	for off := 0; off < len(data); off += pieceLen {
		h := sha1.Sum(data[off:min(off+pieceLen, len(data))])
		pieces = append(pieces, h[:]...)
	}
	info := map[string]any{
		"name":         name,
		"length":       int64(size),
		"piece length": int64(pieceLen),
		"pieces":       pieces,
	}
	infoBytes, err := bencode.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := bencode.Marshal(map[string]any{
		"announce":      announce,
		"announce-list": []any{[]any{announce}},
		"created by":    "trackd e2e",
		"creation date": time.Now().Unix(),
		"info":          info,
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name+".torrent")
	if err := os.WriteFile(path, meta, 0o644); err != nil {
		t.Fatal(err)
	}
	return torrentFile{
		Path:     path,
		Name:     name,
		DataPath: dataPath,
		Size:     int64(size),
		InfoHash: sha1.Sum(infoBytes),
		SHA256:   sha256.Sum256(data),
	}
}

// checkDownloaded fails t unless path holds exactly tf's data.
func checkDownloaded(t testing.TB, path string, tf torrentFile) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("downloaded file: %v", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	if n != tf.Size {
		t.Fatalf("%s has %d bytes, want %d", path, n, tf.Size)
	}
	if got := h.Sum(nil); !bytes.Equal(got, tf.SHA256[:]) {
		t.Fatalf("%s: sha256 %x, want %x (the seeded data)", path, got, tf.SHA256)
	}
	t.Logf("%s: %d bytes, sha256 %x matches the seeded data", filepath.Base(path), n, tf.SHA256)
}

// freePort returns a loopback port that was free a moment ago, for TCP and
// UDP alike (clients may bind both).
func freePort(t testing.TB) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port))
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		return port
	}
	t.Fatal("no free loopback port found in 20 tries")
	return 0
}

// syncBuffer is a bytes.Buffer safe for a child's stdout and stderr
// copiers and a reader at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a child process started by startProcess.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  syncBuffer
	done chan struct{} // closed once the process has exited
	err  error         // Wait's result, valid after done
}

// startProcess runs a program in the background. It is killed when ctx ends
// or the test ends, whichever is first; if the test failed, its output goes
// to the test log.
func startProcess(ctx context.Context, t testing.TB, name string, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	p := &proc{name: filepath.Base(name), done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, name, args...)
	p.cmd.Stdin = nil
	p.cmd.Stdout = &p.out
	p.cmd.Stderr = &p.out
	// Ask politely first (clients send their "stopped" announce), then
	// kill after WaitDelay, which also bounds the wait for output pipes a
	// grandchild might hold.
	p.cmd.Cancel = func() error { return p.cmd.Process.Signal(syscall.SIGTERM) }
	p.cmd.WaitDelay = 5 * time.Second
	t.Logf("starting %s", strings.Join(p.cmd.Args, " "))
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			t.Errorf("%s (pid %d) did not exit after being killed", p.name, p.cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("output of %s (%v):\n%s", p.name, p.err, tail(p.out.String(), 24<<10))
		}
	})
	return p
}

// exited reports whether p has exited, and with what error.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// wait waits for p to exit by itself, failing t if ctx ends first or p
// fails.
func (p *proc) wait(ctx context.Context, t testing.TB) {
	t.Helper()
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("%s failed: %v", p.name, p.err)
		}
	case <-ctx.Done():
		t.Fatalf("%s did not finish in time: %v", p.name, ctx.Err())
	}
}

// tail returns at most the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}

// deadline returns a context for a whole test: it ends at d from now, or a
// little before the go test -timeout, whichever is first.
func deadline(t *testing.T, d time.Duration) context.Context {
	end := time.Now().Add(d)
	if td, ok := t.Deadline(); ok && td.Add(-5*time.Second).Before(end) {
		end = td.Add(-5 * time.Second)
	}
	ctx, cancel := context.WithDeadline(context.Background(), end)
	t.Cleanup(cancel)
	return ctx
}
