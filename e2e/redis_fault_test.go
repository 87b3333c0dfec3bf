package e2e

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"trackd/config"
	"trackd/internal/redistest"
	"trackd/server"
	"trackd/store"
)

// TestRedisFaultLogsAndReadiness: under steady announce load over HTTP and
// UDP, Redis fails in two ways: killed, then alive but refusing writes
// (maxmemory reached with noeviction, PING still answered). For each fault
//
//   - the log holds at most a few lines per error kind (the first failure
//     at once, then a count per interval), not a line per request;
//   - trackd_errors_total counts every failed request;
//   - /readyz is 503 during the fault and 200 within a few seconds after
//     the store serves again.
func TestRedisFaultLogsAndReadiness(t *testing.T) {
	rs := redistest.Start(t)
	ctx := deadline(t, 120*time.Second)
	logs := &recordingHandler{}
	cfg := config.Default()
	cfg.HTTP, cfg.UDP, cfg.Admin = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.UDPSockets = 2
	cfg.Store = rs.URL()
	cfg.RedisTimeout = 300 * time.Millisecond
	srv, err := server.New(cfg, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	hc := newLoopbackHTTPClient(t)
	base := "http://" + srv.HTTPAddr().String()
	admin := "http://" + srv.AdminAddr().String()
	ih := [20]byte{0: 'F', 1: 'L', 2: 'T'}

	var ok, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const workers = 3
	for w := range workers {
		wg.Add(2)
		go func() { // HTTP
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				port := 47000 + w*100 + i%100
				q := base + "/announce?info_hash=" + url.QueryEscape(string(ih[:])) + "&peer_id=" +
					url.QueryEscape(fmt.Sprintf("-E2EFLT-%012d", port)) + fmt.Sprintf("&port=%d&left=1&compact=1", port)
				code, body, err := rawGet(ctx, t, hc, q)
				switch {
				case err != nil || code != 200:
					t.Errorf("HTTP announce: status %d, err %v", code, err)
					return
				case strings.Contains(string(body), "failure reason"):
					failed.Add(1)
				default:
					ok.Add(1)
				}
			}
		}()
		go func() { // UDP
			defer wg.Done()
			uc := dialUDP(t, srv)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				errMsg, err := uc.announce(ih, uint16(48000+w*100+i%100))
				switch {
				case err != nil:
					t.Errorf("UDP announce: %v", err)
					return
				case errMsg != "":
					failed.Add(1)
				default:
					ok.Add(1)
				}
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()

	readyz := func() int {
		code, _, err := rawGet(ctx, t, hc, admin+"/readyz")
		if err != nil {
			t.Fatalf("/readyz: %v", err)
		}
		return code
	}
	waitReady := func(what string, want int, within time.Duration) time.Duration {
		start := time.Now()
		wctx, cancel := context.WithTimeout(ctx, within)
		defer cancel()
		for {
			if readyz() == want {
				return time.Since(start)
			}
			select {
			case <-wctx.Done():
				t.Errorf("%s: /readyz not %d within %v", what, want, within)
				return within
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	// succeeding waits until announces succeed again (and none fail).
	succeeding := func(what string) {
		waitFor(ctx, t, what, func() (bool, string) {
			o, f := ok.Load(), failed.Load()
			time.Sleep(300 * time.Millisecond)
			return ok.Load() > o && failed.Load() == f, "announces still fail"
		})
	}

	// Longer than ratelog.DefaultInterval, so that a second line of a
	// kind, with its count, is due within the fault.
	const faultFor = 12 * time.Second
	fault := func(name string, start, end func()) {
		t.Run(name, func(t *testing.T) {
			succeeding("announces before the fault")
			if code := readyz(); code != 200 {
				t.Errorf("/readyz %d before the fault", code)
			}
			errs0 := storeErrors(ctx, t, hc, admin)
			f0 := failed.Load()
			from := time.Now()
			start()
			d503 := waitReady("fault", 503, 5*time.Second)
			for time.Since(from) < faultFor {
				time.Sleep(time.Second)
				if code := readyz(); code != 503 {
					t.Errorf("/readyz %d %v into the fault, want 503", code, time.Since(from).Round(time.Second))
				}
			}
			o := ok.Load()
			end()
			d200 := waitReady("recovery", 200, 5*time.Second)
			succeeding("announces after the fault")
			// Counted once the requests of the fault are answered.
			fails := failed.Load() - f0
			errs := storeErrors(ctx, t, hc, admin) - errs0
			window := time.Since(from)
			lines := logs.since(from)
			t.Logf("%s: %d failed announces, trackd_errors_total +%v; /readyz 503 after %v, 200 %v after recovery; %d log lines (WARN or worse) in %v",
				name, fails, errs, d503.Round(time.Millisecond), d200.Round(time.Millisecond), len(lines), window.Round(time.Second))
			if fails == 0 {
				t.Fatalf("no announce failed during the fault (%d succeeded)", ok.Load()-o)
			}
			if errs != float64(fails) {
				t.Errorf("trackd_errors_total{kind=store|overload} went up by %v, want %d: one per failed announce", errs, fails)
			}
			// At most 3 lines per error kind per 10 s started.
			limit := 3 * int((window+10*time.Second-1)/(10*time.Second))
			perKind := map[string]int{}
			for _, r := range lines {
				perKind[r.key()]++
				t.Logf("log: %s %s %q kind=%s repeated=%s", r.at.Sub(from).Round(time.Millisecond), r.level, r.msg, r.kind, r.repeated)
			}
			keys := make([]string, 0, len(perKind))
			for k := range perKind {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if perKind[k] > limit {
					t.Errorf("%d log lines %s in %v, want at most %d", perKind[k], k, window.Round(time.Second), limit)
				} else {
					t.Logf("%d log lines %s", perKind[k], k)
				}
			}
		})
	}
	fault("killed", rs.Stop, rs.Restart)
	rc := rs.Client()
	fault("maxmemory", func() {
		if err := rc.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
			t.Fatal(err)
		}
		if err := rc.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
			t.Fatal(err)
		}
	}, func() {
		if err := rc.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
			t.Fatal(err)
		}
	})
}

// storeErrors reads from /metrics how many requests failed on the store
// or for overload: trackd_errors_total of kinds store and overload.
func storeErrors(ctx context.Context, t *testing.T, hc *http.Client, admin string) float64 {
	t.Helper()
	code, body, err := rawGet(ctx, t, hc, admin+"/metrics")
	if err != nil || code != 200 {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	var n float64
	found := false
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		line := sc.Text()
		for _, kind := range []string{"store", "overload"} {
			if v, ok := strings.CutPrefix(line, `trackd_errors_total{kind="`+kind+`"} `); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("/metrics: %q", line)
				}
				n += f
				found = true
			}
		}
	}
	if !found {
		t.Errorf("/metrics has no trackd_errors_total{kind=\"store\"}")
	}
	return n
}

// recordingHandler is a slog.Handler that keeps the records of level WARN
// and above, with their time.
type recordingHandler struct {
	mu      sync.Mutex
	records []logRecord
}

type logRecord struct {
	at    time.Time
	level slog.Level
	msg   string
	kind  string // the "kind" attribute, if any
	// the "repeated" attribute, if any
	repeated string
}

// key groups records: by message and kind.
func (r logRecord) key() string {
	if r.kind != "" {
		return fmt.Sprintf("%q kind=%s", r.msg, r.kind)
	}
	return fmt.Sprintf("%q", r.msg)
}

func (h *recordingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{at: time.Now(), level: r.Level, msg: r.Message}
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "kind":
			rec.kind = a.Value.String()
		case "repeated":
			rec.repeated = a.Value.String()
		}
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, rec)
	return nil
}

// WithAttrs and WithGroup share the record list: the test counts every
// line, whichever logger derived from the root wrote it.
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

// since returns the records from t on.
func (h *recordingHandler) since(t time.Time) []logRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []logRecord
	for _, r := range h.records {
		if !r.at.Before(t) {
			out = append(out, r)
		}
	}
	return out
}

// TestRedisReadyWithoutTraffic: /readyz does not stay at 503 when a load
// balancer, seeing it, stops sending requests: after a failed announce
// (Redis refusing writes) and no request since, it is 200 again within
// store.FailureHold of the store serving.
func TestRedisReadyWithoutTraffic(t *testing.T) {
	rs := redistest.Start(t)
	ctx := deadline(t, 60*time.Second)
	srv := startRedisTracker(t, rs.URL(), nil)
	hc := newLoopbackHTTPClient(t)
	admin := "http://" + srv.AdminAddr().String()
	rc := rs.Client()
	if err := rc.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	ih := [20]byte{0: 'N', 1: 'O', 2: 'T'}
	q := "http://" + srv.HTTPAddr().String() + "/announce?info_hash=" + url.QueryEscape(string(ih[:])) +
		"&peer_id=-E2ENOT-000000046101&port=46101&left=1&compact=1"
	if code, body, err := rawGet(ctx, t, hc, q); err != nil || code != 200 || !strings.Contains(string(body), "internal tracker error") {
		t.Fatalf("announce with Redis at maxmemory: %d %q %v, want internal tracker error", code, body, err)
	}
	if code, body, _ := rawGet(ctx, t, hc, admin+"/readyz"); code != 503 {
		t.Errorf("/readyz %d %q with Redis refusing writes, want 503", code, body)
	}
	if err := rc.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	// No request from here on.
	start := time.Now()
	waitFor(ctx, t, "/readyz 200 without traffic", func() (bool, string) {
		code, body, _ := rawGet(ctx, t, hc, admin+"/readyz")
		return code == 200, fmt.Sprintf("%d %q", code, body)
	})
	if d := time.Since(start); d > store.FailureHold+2*time.Second {
		t.Errorf("/readyz 200 only %v after Redis served again, want within %v", d, store.FailureHold)
	} else {
		t.Logf("/readyz 200 %v after Redis served again, without traffic", d.Round(time.Millisecond))
	}
}
