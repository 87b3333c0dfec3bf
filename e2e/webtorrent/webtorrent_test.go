//go:build linux

package webtorrent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Time bounds of the Node scripts (their --timeout); the test gives each
// scriptGrace more before it kills the script.
const (
	clientTimeout   = 60 * time.Second
	transferTimeout = 120 * time.Second
	scriptGrace     = 15 * time.Second
)

// transferSize is the bytes webtorrent seeds and downloads: a few MiB, and
// not a whole number of pieces.
const transferSize = 4<<20 + 12345

// forEachTracker runs f in a subtest per launcher and scheme (ws, wss),
// with a fresh tracker.
func forEachTracker(t *testing.T, f func(t *testing.T, l launcher, tr tracker)) {
	for _, l := range launchers {
		for _, tls := range []bool{false, true} {
			scheme := "ws"
			if tls {
				scheme = "wss"
			}
			t.Run(l.name+"/"+scheme, func(t *testing.T) {
				requireNetns(t)
				requireNode(t)
				tr := l.start(t, tls)
				checkUpgrade(t, tr)
				f(t, l, tr)
			})
		}
	}
}

// TestClient: bittorrent-tracker's Client, three of them in processes of
// their own, announce one torrent over the tracker: its offers and answers
// are relayed and every pair connects over WebRTC; scrapes count
// seeders and leechers through "completed", "stopped" and a closed socket
// (testdata/client.mjs says what is checked).
func TestClient(t *testing.T) {
	forEachTracker(t, func(t *testing.T, l launcher, tr tracker) {
		args := []string{"--announce", tr.announce, "--clients", "3", "--timeout", seconds(clientTimeout)}
		if l.countsDownloads {
			args = append(args, "--expect-downloaded")
		}
		res := runScript(t, tr, "client.mjs", clientTimeout, args...)
		steps, _ := res["steps_ms"].(map[string]any)
		t.Logf("client.mjs: 3 clients connected pairwise %v after start, all checks done in %v",
			ms(steps["connected"]), ms(res["elapsed_ms"]))
	})
}

// TestTransfer: webtorrent seeds transferSize random bytes; a second
// webtorrent, in another process, downloads them over WebRTC, having found
// the seeder through the tracker alone; the data's SHA-256 matches
// (testdata/transfer.mjs).
func TestTransfer(t *testing.T) {
	forEachTracker(t, func(t *testing.T, l launcher, tr tracker) {
		res := runScript(t, tr, "transfer.mjs", transferTimeout,
			"--announce", tr.announce, "--size", strconv.Itoa(transferSize), "--timeout", seconds(transferTimeout))
		// transfer.mjs checks these; so does the test, from its report.
		if res["received_bytes"] != float64(transferSize) || res["received_sha256"] != res["sha256"] {
			t.Fatalf("received %v bytes with SHA-256 %v; seeded %d bytes with %v",
				res["received_bytes"], res["received_sha256"], transferSize, res["sha256"])
		}
		t.Logf("transfer.mjs: %d bytes over WebRTC in %v (whole run %v)", transferSize, ms(res["download_ms"]), ms(res["elapsed_ms"]))
	})
}

// runScript runs node testdata/script args, bounded by timeout plus
// scriptGrace, and returns the JSON object of its last stdout line. It
// fails t unless the script exited 0 reporting "ok": true for tr's URL.
func runScript(t *testing.T, tr tracker, script string, timeout time.Duration, args ...string) map[string]any {
	t.Helper()
	node := requireNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout+scriptGrace)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{script}, args...)...)
	cmd.Dir = testdata
	cmd.Env = os.Environ()
	if tr.caFile != "" {
		cmd.Env = append(cmd.Env, "NODE_EXTRA_CA_CERTS="+tr.caFile)
	}
	// The script forks its clients: kill the whole process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr := newTail(t, script)
	cmd.Stderr = stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	last := lines[len(lines)-1]
	t.Logf("%s (%v): %s", script, took.Round(time.Millisecond), last)
	var res map[string]any
	if jerr := json.Unmarshal([]byte(last), &res); jerr != nil {
		stderr.dump()
		t.Fatalf("%s printed no JSON result (%v; exit: %v); stdout:\n%s", script, jerr, err, stdout.String())
	}
	if err != nil || res["ok"] != true {
		stderr.dump()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("%s did not end within %v", script, timeout+scriptGrace)
		}
		t.Fatalf("%s failed (exit: %v): %v", script, err, res["error"])
	}
	if res["announce"] != tr.announce {
		t.Fatalf("%s reports announce %v, want %s", script, res["announce"], tr.announce)
	}
	return res
}

func seconds(d time.Duration) string { return strconv.Itoa(int(d / time.Second)) }

// ms is a JSON number of milliseconds as a duration.
func ms(v any) time.Duration {
	f, _ := v.(float64)
	return time.Duration(f) * time.Millisecond
}
