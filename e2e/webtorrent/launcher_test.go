//go:build linux

package webtorrent

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"trackd/internal/external"
	"trackd/internal/testcert"
)

// A tracker is a WebSocket tracker serving on loopback for one test.
type tracker struct {
	// announce is its announce URL, ws:// or wss://.
	announce string
	// caFile, for wss://, is the PEM certificate Node must trust
	// (NODE_EXTRA_CA_CERTS).
	caFile string
}

// A launcher starts the WebSocket tracker under test. Each test runs its
// clients once per launcher, over ws:// and over wss://.
type launcher struct {
	name string
	// countsDownloads: its scrape replies carry "downloaded", which the
	// clients then check.
	countsDownloads bool
	// start starts a tracker, TLS (wss://) or not, that ends with the
	// test; it skips t when this launcher cannot run here.
	start func(t *testing.T, tls bool) tracker
}

// launchers are the trackers every test runs against:
//
//   - reference: bittorrent-tracker's own server (testdata/
//     reference-tracker.mjs), which the harness is proven against. Its
//     tests are tests of the harness: they stay, so that a failure of the
//     trackd launcher's tests can be told apart from a broken harness
//     (a new Node, webtorrent or wrtc) at once.
//   - trackd: the trackd binary, WebSocket on its HTTP listener (ws://)
//     and its HTTPS listener (wss://).
var launchers = []launcher{
	{name: "reference", start: startReference},
	{name: "trackd", countsDownloads: true, start: startTrackd},
}

// trackdFlags are the flags trackd runs with beyond its listeners
// (WebSocket is on by default).
var trackdFlags = []string{"-log-level", "info"}

// startTimeout bounds a tracker's start, until it serves.
const startTimeout = 30 * time.Second

// testdata is the directory of the Node scripts and their node_modules.
const testdata = "testdata"

// writeCert writes a test certificate for 127.0.0.1 and its key into a
// temporary directory.
func writeCert(t *testing.T) (certFile, keyFile string) {
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	testcert.Write(t, certFile, keyFile, 1)
	return certFile, keyFile
}

// startReference runs bittorrent-tracker's server with testdata/
// reference-tracker.mjs, which prints its announce URL as a JSON line.
func startReference(t *testing.T, tls bool) tracker {
	node := requireNode(t)
	var tr tracker
	args := []string{"reference-tracker.mjs", "--host", "127.0.0.1", "--port", "0"}
	if tls {
		cert, key := writeCert(t)
		tr.caFile = cert
		args = append(args, "--tls-cert", cert, "--tls-key", key)
	}
	cmd := exec.Command(node, args...)
	cmd.Dir = testdata
	// Its stdin stays open while the test runs; it exits when that closes.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	log := newTail(t, "bittorrent-tracker")
	cmd.Stderr = log
	lines := make(chan string, 1)
	exited := start(t, cmd, log, func() { stdin.Close() })
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	select {
	case line := <-lines:
		var out struct{ Announce string }
		if err := json.Unmarshal([]byte(line), &out); err != nil || out.Announce == "" {
			t.Fatalf("reference tracker printed %q, want {\"announce\": URL}", line)
		}
		tr.announce = out.Announce
	case <-exited:
		log.dump()
		t.Fatalf("the reference tracker exited before serving: %v", cmd.ProcessState)
	case <-time.After(startTimeout):
		log.dump()
		t.Fatalf("the reference tracker printed no announce URL within %v", startTimeout)
	}
	t.Logf("bittorrent-tracker serves %s", tr.announce)
	return tr
}

// startTrackd runs the trackd binary TestMain built, HTTP (and for wss://
// HTTPS, with a test certificate) on ephemeral loopback ports read from
// its log.
func startTrackd(t *testing.T, tls bool) tracker { return startTrackdWith(t, tls) }

// startTrackdWith is startTrackd with the flags extra as well.
func startTrackdWith(t *testing.T, tls bool, extra ...string) tracker {
	var tr tracker
	args := []string{"-http", "127.0.0.1:0", "-udp", "", "-admin", ""}
	if tls {
		cert, key := writeCert(t)
		tr.caFile = cert
		args = append(args, "-https", "127.0.0.1:0", "-tls-cert", cert, "-tls-key", key)
	}
	cmd := exec.Command(trackdBin, slices.Concat(args, trackdFlags, extra)...)
	log := newTail(t, "trackd")
	r, w := io.Pipe()
	cmd.Stderr = io.MultiWriter(log, w)
	exited := start(t, cmd, log, nil)
	go func() {
		<-exited
		w.Close()
	}()
	serving := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`protocol=(https?) addr=(\S+)`)
		want := "http"
		if tls {
			want = "https"
		}
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil && m[1] == want {
				serving <- m[2]
				break
			}
		}
		io.Copy(io.Discard, r)
	}()
	select {
	case addr := <-serving:
		if tls {
			tr.announce = "wss://" + addr + "/announce"
		} else {
			tr.announce = "ws://" + addr + "/announce"
		}
	case <-exited:
		log.dump()
		t.Fatalf("trackd %s exited before serving: %v", strings.Join(cmd.Args[1:], " "), cmd.ProcessState)
	case <-time.After(startTimeout):
		log.dump()
		t.Fatalf("trackd logged no listener within %v", startTimeout)
	}
	t.Logf("trackd serves %s", tr.announce)
	return tr
}

// checkUpgrade fails t at once unless tr accepts an RFC 6455 WebSocket
// upgrade of a GET of its announce URL: the clients would only retry
// connecting until their timeout.
func checkUpgrade(t *testing.T, tr tracker) {
	t.Helper()
	u, err := url.Parse(tr.announce)
	if err != nil {
		t.Fatal(err)
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	var conn net.Conn
	if u.Scheme == "wss" {
		pem, rerr := os.ReadFile(tr.caFile)
		if rerr != nil {
			t.Fatal(rerr)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		conn, err = tls.DialWithDialer(d, "tcp", u.Host, &tls.Config{RootCAs: pool, ServerName: u.Hostname()})
	} else {
		conn, err = d.Dial("tcp", u.Host)
	}
	if err != nil {
		t.Fatalf("%s: %v", tr.announce, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	// The key and its accept value are RFC 6455's example (section 1.3).
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", u.RequestURI(), u.Host)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s: the WebSocket upgrade got no HTTP reply: %v", tr.announce, err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 200))
		t.Fatalf("%s: the WebSocket upgrade got %q (Sec-WebSocket-Accept %q) %q, want 101 Switching Protocols",
			tr.announce, res.Status, res.Header.Get("Sec-WebSocket-Accept"), body)
	}
}

// start starts cmd in a process group of its own, which is killed when
// the test ends (after stop, if not nil, has run); the channel closes when
// cmd has exited. log, cmd's stderr, is dumped if the test failed.
func start(t *testing.T, cmd *exec.Cmd, log *tail, stop func()) <-chan struct{} {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		if stop != nil {
			stop()
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if t.Failed() {
			log.dump()
		}
	})
	return exited
}

// requireNode returns the path of node, or skips t (fails it under
// TRACKD_REQUIRE_EXTERNAL=1) when node or the packages of testdata/
// package-lock.json are missing. The tests never install them.
func requireNode(t *testing.T) string {
	t.Helper()
	node := external.Program(t, "node")
	if err := checkNodeVersion(node); err != nil {
		missing(t, "%v", err)
	}
	install := "install them with: cd e2e/webtorrent/testdata && npm ci --ignore-scripts"
	for _, pkg := range []string{"bittorrent-tracker", "webtorrent", "@roamhq/wrtc"} {
		if _, err := os.Stat(filepath.Join(testdata, "node_modules", pkg, "package.json")); err != nil {
			missing(t, "the Node package %s is not installed (%v); %s", pkg, err, install)
		}
	}
	// webrtc-polyfill must be the local package over @roamhq/wrtc, not
	// the npm one (whose node-datachannel has no binary without its
	// install script).
	var pkg struct{ Version string }
	b, err := os.ReadFile(filepath.Join(testdata, "node_modules", "webrtc-polyfill", "package.json"))
	if err == nil {
		err = json.Unmarshal(b, &pkg)
	}
	if err != nil || !strings.HasSuffix(pkg.Version, "-wrtc") {
		missing(t, "node_modules/webrtc-polyfill is not testdata/wrtc-polyfill (version %q, %v); %s", pkg.Version, err, install)
	}
	return node
}

// minNode is the oldest Node the packages run on: bitfield 5 (of
// webtorrent) declares 20.19 (webtorrent 3 declares 22, yet its tests here
// pass on 20.20).
var minNode = [3]int{20, 19, 0}

// checkNodeVersion says whether node is at least minNode.
func checkNodeVersion(node string) error {
	nodeVersion.once.Do(func() {
		out, err := exec.Command(node, "--version").Output()
		if err != nil {
			nodeVersion.err = fmt.Errorf("%s --version: %v", node, err)
			return
		}
		v := strings.TrimSpace(string(out))
		var got [3]int
		if _, err := fmt.Sscanf(v, "v%d.%d.%d", &got[0], &got[1], &got[2]); err != nil {
			nodeVersion.err = fmt.Errorf("%s --version says %q", node, v)
			return
		}
		if slices.Compare(got[:], minNode[:]) < 0 {
			nodeVersion.err = fmt.Errorf("node %s is older than %d.%d.%d, which webtorrent's packages need", v, minNode[0], minNode[1], minNode[2])
		}
	})
	return nodeVersion.err
}

var nodeVersion struct {
	once sync.Once
	err  error
}

// missing skips t, or fails it under TRACKD_REQUIRE_EXTERNAL=1.
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	external.Missing(t, format, args...)
}

// A tail keeps the last lines a process wrote, for the test log when the
// test fails.
type tail struct {
	t       *testing.T
	name    string
	mu      sync.Mutex
	lines   []string
	partial string
	dumped  bool
}

func newTail(t *testing.T, name string) *tail { return &tail{t: t, name: name} }

func (l *tail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.partial + string(p)
	parts := strings.Split(s, "\n")
	l.partial = parts[len(parts)-1]
	l.lines = append(l.lines, parts[:len(parts)-1]...)
	if len(l.lines) > 200 {
		l.lines = l.lines[len(l.lines)-100:]
	}
	return len(p), nil
}

// dump logs the last lines, once.
func (l *tail) dump() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dumped {
		return
	}
	l.dumped = true
	lines := append(l.lines, l.partial)
	l.t.Logf("%s's last output:\n%s", l.name, strings.Join(lines[max(0, len(lines)-30):], "\n"))
}
