package loadgen

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config is one run of the generator. DefaultConfig gives the defaults
// that trackd-load's flags show.
type Config struct {
	// UDP and HTTP are the targets: "host:port", or a tracker URL
	// ("udp://host:port/announce", "http://host:port/announce"). At least
	// one is needed; with both, both are loaded at once and each gets its
	// own Result. Either may be a comma-separated list of up to
	// MaxTargets instances of one tracker (a fleet), which then share
	// that protocol's load: see Roam.
	UDP, HTTP string
	// Roam sends each simulated peer's successive announces to the
	// instances of a list in turn, as clients that resolve a DNS
	// round-robin name anew each time do. Without it each peer sticks to
	// one instance, as a client that resolved the name once: the workers
	// (sockets, connections) are dealt to the instances in turn (at least
	// one each; a multiple of the instances spreads the load evenly), and
	// a worker's peers announce only to its instance.
	Roam bool
	// WS is a WebSocket (WebTorrent) tracker: "host:port" or
	// "ws://host:port/path" (the path defaults to /). It is loaded alone.
	WS string
	// AllowRemote permits targets that are not loopback addresses.
	AllowRemote bool

	Torrents int // torrents in the workload
	Peers    int // simulated peers
	// Zipf, when positive, deals the peers to the torrents by Zipf's law
	// with this exponent (ZipfWeight, at most MaxZipf) instead of the
	// default model (Weight: a flat tail and an exponential hot head, as
	// aquatic's load test).
	Zipf    float64
	Seed    uint64  // derives every hash, peer id, port and seeder flag
	Seeders float64 // chance that a peer is a seeder (left=0)
	NumWant int     // numwant of every announce

	// Stopped is the chance that an announce after a peer's first is
	// event=stopped (the peer leaves; its next announce is started
	// again); Completed the chance that a leecher's other announce is
	// event=completed (with left=0). A peer's first announce of a run is
	// always started, the others have no event.
	Stopped, Completed float64

	ScrapeShare     float64 // share of requests that are scrapes
	ScrapeMaxHashes int     // a scrape asks for 1..ScrapeMaxHashes torrents

	Duration time.Duration // measured time
	Warmup   time.Duration // time before the measurement, not counted
	// MaxTime is the hard cap on the whole run; 0 picks
	// Warmup + Duration + Timeout + 30 s, or 30 minutes with Fill.
	MaxTime time.Duration
	Timeout time.Duration // a request unanswered this long is a timeout

	Sockets     int // UDP sockets, one goroutine each
	Conns       int // HTTP connections, one goroutine each
	Window      int // requests in flight per UDP socket / HTTP connection
	SourceAddrs int // distinct loopback source addresses (127.0.0.2, ...)

	// HTTPClose opens a new connection for every HTTP request (and sends
	// "Connection: close"), as opentracker requires.
	HTTPClose bool
	// HTTPS, when the HTTP target is an https:// URL: see tlsclient.go.
	// TLSResume keeps each connection's TLS session (a ticket) and resumes
	// it on the next connection, as clients with a session cache do.
	// TLSCurves are the key exchanges offered ("x25519,p256"; "" Go's
	// default, which puts the hybrid X25519MLKEM768 first). TLSVersion
	// caps the version ("1.2", "1.3"; "" the highest).
	TLSResume  bool
	TLSCurves  string
	TLSVersion string
	// Fill announces every simulated peer once (event=started) as fast as
	// the window allows, then stops.
	Fill bool
	// ConnIDRenew is the age at which a UDP connection id is renewed
	// (BEP 15 ids live two minutes).
	ConnIDRenew time.Duration

	// The WebSocket mode. WSConns connections, each a peer id announcing
	// on WSTorrents torrents of the workload (which then has
	// WSConns × WSTorrents peers; Peers is not used), with WSWindow
	// announces in flight, each carrying WSOffers offers with SDPs of
	// WSSDPBytes bytes. With WSIdle > 0 every connection announces once
	// and the connections are then held idle for WSIdle.
	WSConns    int
	WSTorrents int
	WSWindow   int
	WSOffers   int
	WSSDPBytes int
	WSIdle     time.Duration
	// WSPace is the least time between two announces of a connection (0:
	// the next goes out as soon as the window allows), for trackers that
	// limit announces with offers per socket: many paced connections
	// instead of a few fast ones.
	WSPace time.Duration
	// Converge is the number of convergence probes to run beside the
	// load, over the instances of the UDP target list (else the HTTP
	// one), after the warm-up and until the run ends (0: none); see
	// ConvergeResult. ConvergeWithin bounds each wait of a probe,
	// ConvergePoll is the period of its polls.
	Converge       int
	ConvergeWithin time.Duration
	ConvergePoll   time.Duration
	// Progress, if set, gets the line saying an idle run's connections
	// are all open and announced (trackd-load: stderr).
	Progress io.Writer
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Torrents:        1_000_000,
		Peers:           2_000_000,
		Seed:            1,
		Seeders:         0.75,
		NumWant:         30,
		ScrapeShare:     0.01,
		ScrapeMaxHashes: 10,
		Duration:        10 * time.Second,
		Warmup:          5 * time.Second,
		Timeout:         2 * time.Second,
		Sockets:         8,
		Conns:           32,
		Window:          32,
		SourceAddrs:     8,
		ConnIDRenew:     60 * time.Second,
		WSConns:         1000,
		WSTorrents:      2,
		WSWindow:        1,
		WSOffers:        5,
		WSSDPBytes:      2048,
		ConvergeWithin:  DefaultConvergeWithin,
		ConvergePoll:    DefaultConvergePoll,
	}
}

// MaxTargets is the most instances in one target list.
const MaxTargets = 16

// target is a resolved target.
type target struct {
	proto string // "udp" or "http"
	addr  netip.AddrPort
	host  string // Host header
	path  string // HTTP announce path
	spath string // HTTP scrape path
	bind  bool   // bind client sockets to 127.x source addresses
	tls   bool   // HTTPS (an https:// URL)
}

// ErrNotLoopback refuses a target that is not a loopback address.
var ErrNotLoopback = errors.New("not a loopback address")

// resolveTarget parses s ("host:port" or a URL) and checks it is loopback
// unless remote targets are allowed. Without allowRemote no name lookup is
// made: only IP literals and "localhost" are accepted.
func resolveTarget(proto, s string, allowRemote bool) (target, error) {
	t := target{proto: proto, path: "/announce", spath: "/scrape"}
	if proto == "ws" {
		t.path = "/"
	}
	hostport := s
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return t, fmt.Errorf("-%s %q: %v", proto, s, err)
		}
		if proto == "http" && u.Scheme == "https" {
			t.tls = true
		} else if u.Scheme != proto {
			return t, fmt.Errorf("-%s %q: scheme must be %s://", proto, s, proto)
		}
		hostport = u.Host
		if proto == "ws" {
			t.path = "/"
			if u.Path != "" {
				t.path = u.EscapedPath()
			}
			if u.RawQuery != "" {
				t.path += "?" + u.RawQuery
			}
		}
		if proto == "http" && u.Path != "" && u.Path != "/" {
			t.path = u.Path
			i := strings.LastIndex(u.Path, "/")
			if !strings.HasPrefix(u.Path[i+1:], "announce") {
				return t, fmt.Errorf("-http %q: the path must end in /announce... to derive the scrape path (BEP 48)", s)
			}
			t.spath = u.Path[:i+1] + "scrape" + u.Path[i+1+len("announce"):]
		}
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return t, fmt.Errorf("-%s %q: %v", proto, s, err)
	}
	if host == "localhost" || host == "" {
		host = "127.0.0.1"
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		if !allowRemote {
			return t, fmt.Errorf("-%s %q: give an IP address (names are resolved only with -allow-remote)", proto, s)
		}
		ua, err := net.ResolveUDPAddr("udp", net.JoinHostPort(host, port))
		if err != nil {
			return t, fmt.Errorf("-%s %q: %v", proto, s, err)
		}
		ap := ua.AddrPort()
		a = ap.Addr()
	}
	a = a.Unmap()
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return t, fmt.Errorf("-%s %q: bad port", proto, s)
	}
	if !a.IsLoopback() && !allowRemote {
		return t, fmt.Errorf("-%s %s: refusing to send load to %s: %w; load a tracker on this machine (127.0.0.1, [::1]), or pass -allow-remote for a tracker you operate", proto, s, a, ErrNotLoopback)
	}
	t.addr = netip.AddrPortFrom(a, uint16(p))
	t.host = net.JoinHostPort(host, port)
	t.bind = a.Is4() && a.IsLoopback()
	return t, nil
}

// resolveTargets resolves a comma-separated list of targets of one
// protocol (see resolveTarget). Each needs a port; with roam they must be
// of one address family (a UDP worker then sends to all from one socket).
// bind is set on every target only when all of them can bind (IPv4
// loopback).
func resolveTargets(proto, s string, allowRemote, roam bool) ([]target, error) {
	parts := strings.Split(s, ",")
	if len(parts) > MaxTargets {
		return nil, fmt.Errorf("-%s: %d targets, at most %d", proto, len(parts), MaxTargets)
	}
	if len(parts) > 1 && proto == "ws" {
		return nil, errors.New("-ws takes one target")
	}
	tgts := make([]target, 0, len(parts))
	bind := true
	for _, p := range parts {
		t, err := resolveTarget(proto, strings.TrimSpace(p), allowRemote)
		if err != nil {
			return nil, err
		}
		if t.addr.Port() == 0 {
			return nil, fmt.Errorf("-%s %q: port 0", proto, p)
		}
		if roam && len(tgts) > 0 && t.addr.Addr().Is4() != tgts[0].addr.Addr().Is4() {
			return nil, fmt.Errorf("-%s: with -roam the targets must all be IPv4 or all IPv6", proto)
		}
		bind = bind && t.bind
		tgts = append(tgts, t)
	}
	for i := range tgts {
		tgts[i].bind = bind
	}
	return tgts, nil
}

// check validates c and fills in derived values.
func (c *Config) check() error {
	switch {
	case c.UDP == "" && c.HTTP == "" && c.WS == "":
		return errors.New("give a target: -udp and/or -http, or -ws")
	case c.WS != "" && (c.UDP != "" || c.HTTP != ""):
		return errors.New("-ws is loaded alone (not with -udp or -http)")
	case c.WS != "" && c.Fill:
		return errors.New("-fill is for -udp or -http (-ws-idle announces every connection once)")
	case c.WS != "" && (c.WSConns < 1 || c.WSConns > 1_000_000):
		return errors.New("-ws-conns must be between 1 and 1000000")
	case c.WS != "" && (c.WSTorrents < 1 || c.WSTorrents > 10000):
		return errors.New("-ws-torrents must be between 1 and 10000")
	case c.WS != "" && (c.WSWindow < 1 || c.WSWindow > 1024):
		return errors.New("-ws-window must be between 1 and 1024")
	case c.WS != "" && (c.WSOffers < 0 || c.WSOffers > wsMaxOffers):
		return fmt.Errorf("-ws-offers must be between 0 and %d", wsMaxOffers)
	case c.WS != "" && (c.WSSDPBytes < 0 || c.WSSDPBytes > 64<<10):
		return errors.New("-ws-sdp must be between 0 and 65536")
	case c.WSIdle < 0:
		return errors.New("-ws-idle cannot be negative")
	case c.WSPace < 0:
		return errors.New("-ws-pace cannot be negative")
	case c.Fill && c.UDP != "" && c.HTTP != "":
		return errors.New("-fill takes one target: -udp or -http")
	case c.Torrents < 1:
		return errors.New("-torrents must be at least 1")
	case c.Peers < 1:
		return errors.New("-peers must be at least 1")
	case c.Seeders < 0 || c.Seeders > 1:
		return errors.New("-seeders must be between 0 and 1")
	case c.NumWant < 0 || c.NumWant > 10000:
		return errors.New("-numwant must be between 0 and 10000")
	case c.Zipf < 0 || c.Zipf > MaxZipf || c.Zipf != c.Zipf:
		return fmt.Errorf("-zipf must be between 0 (the default model) and %g", MaxZipf)
	case !(c.Stopped >= 0 && c.Stopped <= 1) || !(c.Completed >= 0 && c.Completed <= 1):
		return errors.New("-stopped and -completed must be between 0 and 1")
	case c.Stopped+c.Completed > 1:
		return errors.New("-stopped plus -completed must be at most 1")
	case c.ScrapeShare < 0 || c.ScrapeShare > 1:
		return errors.New("-scrape must be between 0 and 1")
	case c.ScrapeMaxHashes < 1 || c.ScrapeMaxHashes > MaxScrapeHashes:
		return fmt.Errorf("-scrape-hashes must be between 1 and %d", MaxScrapeHashes)
	case c.ScrapeMaxHashes > c.Torrents && c.ScrapeShare > 0:
		return errors.New("-scrape-hashes exceeds -torrents")
	case !c.Fill && c.Duration <= 0:
		return errors.New("-duration must be positive")
	case c.Warmup < 0 || c.MaxTime < 0:
		return errors.New("-warmup and -max-time cannot be negative")
	case c.Timeout <= 0:
		return errors.New("-timeout must be positive")
	case c.Sockets < 1 || c.Sockets > 4096:
		return errors.New("-sockets must be between 1 and 4096")
	case c.Conns < 1 || c.Conns > 65536:
		return errors.New("-conns must be between 1 and 65536")
	case c.Window < 1 || c.Window > 4096:
		return errors.New("-window must be between 1 and 4096")
	case c.SourceAddrs < 1 || c.SourceAddrs > MaxSourceAddrs:
		return fmt.Errorf("-src-addrs must be between 1 and %d", MaxSourceAddrs)
	case c.Converge < 0 || c.Converge > MaxConverge:
		return fmt.Errorf("-converge must be between 0 and %d", MaxConverge)
	case c.Converge > 0 && (c.Fill || c.WS != ""):
		return errors.New("-converge runs beside a load of -udp or -http (not -fill, not -ws)")
	case c.Converge > 0 && (c.ConvergeWithin <= 0 || c.ConvergeWithin > time.Minute):
		return errors.New("-converge-within must be positive and at most 1m")
	case c.Converge > 0 && (c.ConvergePoll < time.Millisecond || c.ConvergePoll > c.ConvergeWithin):
		return errors.New("-converge-poll must be at least 1ms and at most -converge-within")
	case c.checkTLS() != nil:
		return c.checkTLS()
	case c.ConnIDRenew <= 0 || c.ConnIDRenew >= 2*time.Minute:
		return errors.New("-renew must be positive and under 2m (the life of a connection id)")
	}
	return nil
}

// workers returns the number of sockets or connections of a protocol.
func (c *Config) workers(proto string) int {
	switch proto {
	case "udp":
		return c.Sockets
	case "http":
		return c.Conns
	}
	return c.WSConns
}

func (c *Config) maxTime() time.Duration {
	switch {
	case c.MaxTime > 0:
		return c.MaxTime
	case c.Fill:
		return 30 * time.Minute
	case c.WS != "" && c.WSIdle > 0:
		return c.WSIdle + 10*time.Minute
	}
	return c.Warmup + c.Duration + c.Timeout + 30*time.Second
}
