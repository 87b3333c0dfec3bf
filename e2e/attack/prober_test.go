package attack

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"trackd/internal/race"
)

// The well-behaved client. It announces every probeEvery over HTTP (a new
// connection each time, as most clients do) and over UDP (a new socket, a
// connect and an announce), from its own address, on a torrent that also
// has a resident seeder, and counts as a failure any announce that is not
// answered with a valid reply holding that seeder within probeTimeout.
const (
	proberAddr   = "127.0.0.2" // no attack comes from here
	residentAddr = "127.0.0.4" // the probed swarm's seeder
	probeEvery   = 500 * time.Millisecond
	probeTimeout = 5 * time.Second
)

// slowestBound is what the slowest probe may take. An announce on loopback
// is answered in well under a millisecond; the bound leaves room for a
// shared 2-vCPU machine (other builds and tests, the attack itself
// competing for the CPU, GC pauses) and is still far below the stalls the
// attacks caused (seconds, or no answer). Under the race detector the
// test's own clients (not trackd, built without it) are several times
// slower: the bound is three times as long there.
var slowestBound = func() time.Duration {
	if race.Enabled {
		return 3 * time.Second
	}
	return time.Second
}()

var probeHash = id20("attack-probe-torrent")

// probeResult is what one kind of probe saw.
type probeResult struct {
	name     string
	n        int
	failures int
	slowest  time.Duration
	errs     []string // the first few failures
}

func (r *probeResult) record(d time.Duration, err error) {
	r.n++
	r.slowest = max(r.slowest, d)
	if err != nil {
		r.failures++
		if len(r.errs) < 5 {
			r.errs = append(r.errs, fmt.Sprintf("after %v: %v", d.Round(time.Millisecond), err))
		}
	}
}

func (r *probeResult) String() string {
	return fmt.Sprintf("%s: %d announces, %d failed, slowest %v", r.name, r.n, r.failures, r.slowest.Round(time.Millisecond))
}

// prober is a running well-behaved client.
type prober struct {
	stopc     chan struct{}
	done      chan struct{}
	mu        sync.Mutex
	http, udp probeResult
}

// seedProbedSwarm announces the probed torrent's resident seeder.
func seedProbedSwarm(t testing.TB, d *trackd) {
	t.Helper()
	q := announceQuery(string(probeHash[:]), id20s("resident-seeder"), 6881, "0", "event=started")
	if _, err := httpAnnounce(residentAddr, d.http, q, probeTimeout); err != nil {
		t.Fatalf("resident seeder: %v", err)
	}
}

// startProber seeds the probed swarm and starts announcing to d; stop ends
// it.
func startProber(t testing.TB, d *trackd) *prober {
	t.Helper()
	seedProbedSwarm(t, d)
	p := &prober{stopc: make(chan struct{}), done: make(chan struct{}),
		http: probeResult{name: "HTTP prober"}, udp: probeResult{name: "UDP prober"}}
	httpQuery := announceQuery(string(probeHash[:]), id20s("http-prober"), 6882, "1000", "")
	udpReq := udpAnnounceReq{hash: probeHash, peerID: id20("udp-prober"), left: 1000, numWant: 50, port: 6883}
	go func() {
		defer close(p.done)
		var wg sync.WaitGroup
		tick := time.NewTicker(probeEvery)
		defer tick.Stop()
		for {
			wg.Add(2)
			go func() {
				defer wg.Done()
				start := time.Now()
				n, err := httpAnnounce(proberAddr, d.http, httpQuery, probeTimeout)
				if err == nil && n == 0 {
					err = fmt.Errorf("no peer in the reply: the resident seeder is gone")
				}
				p.mu.Lock()
				p.http.record(time.Since(start), err)
				p.mu.Unlock()
			}()
			go func() {
				defer wg.Done()
				start := time.Now()
				n, err := udpAnnounce(proberAddr, d.udp, &udpReq, probeTimeout)
				if err == nil && n == 0 {
					err = fmt.Errorf("no peer in the reply: the resident seeder is gone")
				}
				p.mu.Lock()
				p.udp.record(time.Since(start), err)
				p.mu.Unlock()
			}()
			select {
			case <-tick.C:
			case <-p.stopc:
				wg.Wait()
				return
			}
		}
	}()
	t.Cleanup(p.stop)
	return p
}

// stop ends the probes (waiting at most probeTimeout for the last ones).
func (p *prober) stop() {
	select {
	case <-p.stopc:
	default:
		close(p.stopc)
	}
	<-p.done
}

// check stops p and fails t unless every probe succeeded within bound
// (slowestBound unless an attack says why not); it logs what the probes
// saw either way.
func (p *prober) check(t testing.TB, bound time.Duration) {
	t.Helper()
	p.stop()
	for _, r := range []*probeResult{&p.http, &p.udp} {
		t.Log(r)
		if r.failures > 0 {
			t.Errorf("%s: %d of %d announces failed (want 0); first: %s", r.name, r.failures, r.n, strings.Join(r.errs, "; "))
		}
		if r.slowest > bound {
			t.Errorf("%s: slowest announce took %v, want at most %v", r.name, r.slowest.Round(time.Millisecond), bound)
		}
	}
}
