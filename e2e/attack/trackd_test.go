package attack

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// trackdBin is the trackd binary TestMain builds once for every test.
var trackdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "trackd-attack-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	trackdBin = filepath.Join(dir, "trackd")
	// The test runs in e2e/attack, in the module trackd/e2e; trackd's module
	// is two levels up. The binary is built there, from trackd's own go.mod
	// (GOWORK=off), as a user builds it: the e2e module's build list also
	// holds the test clients' requirements, which could raise the version of
	// a module trackd shares with them.
	build := exec.Command("go", "build", "-C", "../..", "-o", trackdBin, "./cmd/trackd")
	build.Env = append(os.Environ(), "GOWORK=off")
	out, err := build.CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build trackd: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// baseFlags are the flags every trackd of the suite runs with: loopback
// listeners on ephemeral ports (the addresses are read from its log) and a
// short read_header_timeout, so that a connection that never completes a
// request is closed within the test's time.
var baseFlags = []string{
	"-http", "127.0.0.1:0", "-udp", "127.0.0.1:0", "-admin", "127.0.0.1:0",
	"-udp-sockets", "2",
	"-read-header-timeout", readHeaderTimeout.String(),
}

const readHeaderTimeout = 2 * time.Second

// trackd is a trackd process serving on loopback.
type trackd struct {
	cmd        *exec.Cmd
	http       string // host:port of the HTTP announce listener
	udp        string // host:port of the UDP listener
	admin      string // host:port of /metrics
	https      string // host:port of the HTTPS listener, if -https
	mu         sync.Mutex
	tail       []string // its last log lines
	tailDumped bool
}

// startTrackd runs the trackd binary with baseFlags and extra (later flags
// win), waits until it logs its listeners, and kills it when the test
// ends. A trackd that exits or logs no listener within 15 s fails t.
func startTrackd(t testing.TB, extra ...string) *trackd {
	t.Helper()
	d := &trackd{cmd: exec.Command(trackdBin, append(append([]string{}, baseFlags...), extra...)...)}
	wantHTTPS := slices.Contains(extra, "-https")
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-exited
		if t.Failed() {
			d.dumpTail(t)
		}
	})
	listening := make(chan struct{})
	go func() {
		defer close(exited)
		re := regexp.MustCompile(`protocol=(https|http|udp|admin) addr=(\S+)`)
		served := false
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			d.mu.Lock()
			if m := re.FindStringSubmatch(line); m != nil {
				switch m[1] {
				case "http":
					d.http = m[2]
				case "udp":
					d.udp = m[2]
				case "admin":
					d.admin = m[2]
				case "https":
					d.https = m[2]
				}
				if d.http != "" && d.udp != "" && d.admin != "" && (d.https != "" || !wantHTTPS) && !served {
					close(listening)
					served = true
				}
			}
			d.tail = append(d.tail, line)
			if len(d.tail) > 40 {
				d.tail = d.tail[len(d.tail)-20:]
			}
			d.mu.Unlock()
		}
		io.Copy(io.Discard, stderr)
		d.cmd.Wait()
	}()
	select {
	case <-listening:
	case <-exited:
		d.dumpTail(t)
		t.Fatalf("trackd %s exited before serving: %v", strings.Join(d.cmd.Args[1:], " "), d.cmd.ProcessState)
	case <-time.After(15 * time.Second):
		d.dumpTail(t)
		t.Fatal("trackd logged no HTTP, UDP and admin listener within 15s")
	}
	return d
}

func (d *trackd) dumpTail(t testing.TB) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tailDumped {
		return
	}
	d.tailDumped = true
	t.Logf("trackd's last log lines:\n%s", strings.Join(d.tail[max(0, len(d.tail)-10):], "\n"))
}

// rss is trackd's resident memory (VmRSS) in bytes.
func (d *trackd) rss() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("trackd's memory: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", d.cmd.Process.Pid)
}

// metric is the value of the unlabelled metric name on trackd's /metrics.
func (d *trackd) metric(t testing.TB, name string) float64 {
	t.Helper()
	v, ok := d.metricValue(t, name)
	if !ok {
		t.Fatalf("/metrics has no %s", name)
	}
	return v
}

// metricValue reads trackd's /metrics for the line of series (a name, and
// its labels as /metrics writes them) and reports whether there is one.
func (d *trackd) metricValue(t testing.TB, series string) (float64, bool) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	res, err := c.Get("http://" + d.admin + "/metrics")
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if f := strings.Fields(string(line)); len(f) == 2 && f[0] == series {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatalf("/metrics: %s: %v", line, err)
			}
			return v, true
		}
	}
	return 0, false
}

// loopbackDialer dials from the loopback address src (any port), so that
// trackd sees the connection come from src.
func loopbackDialer(src string, timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
}
