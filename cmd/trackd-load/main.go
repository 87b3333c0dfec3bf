// Command trackd-load is a load generator for BitTorrent trackers: it plays
// a population of simulated peers against a tracker over UDP (BEP 15) or
// HTTP, or a WebSocket (WebTorrent) tracker with the offers and answers of
// simulated browsers, checks every reply, and prints responses per second,
// latency percentiles and peers per announce. With -canned it is instead a
// stateless tracker with fixed replies, to measure the generator's own
// ceiling. Run trackd-load -h for the flags; the package trackd/loadgen
// documents the model.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"trackd/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the flags: a loadgen.Config and what to do with it.
type options struct {
	cfg        loadgen.Config
	canned     bool
	flood      bool
	rate       int
	probe      time.Duration
	json       bool
	cpuprofile string
}

func parse(args []string, stderr io.Writer) (*options, error) {
	o := &options{cfg: loadgen.DefaultConfig()}
	c := &o.cfg
	fs := flag.NewFlagSet("trackd-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage:
  trackd-load -udp 127.0.0.1:6969 [flags]      load a UDP tracker (BEP 15)
  trackd-load -http 127.0.0.1:6969 [flags]     load an HTTP tracker
  trackd-load -http https://127.0.0.1:443/announce [-tls-resume] [flags]   load an HTTPS tracker
  trackd-load -udp ... -http ... [flags]       load both at once
  trackd-load -udp ADDR1,ADDR2,... [-roam]     load the instances of a fleet (UDP, HTTP or both)
  trackd-load -udp A,B -converge 100           ... and measure how fast a peer announced to
                                               one instance is seen (and a stopped one
                                               is gone) on another
  trackd-load -fill -udp|-http ADDR [flags]    announce every peer once, then stop
  trackd-load -ws ws://127.0.0.1:8000/announce [flags]
                                               load a WebSocket (WebTorrent) tracker
  trackd-load -ws ADDR -ws-idle 60s -ws-conns N
                                               open N connections, announce once on each,
                                               hold them idle (memory per connection)
  trackd-load -canned -udp ADDR -http ADDR     serve fixed replies (the generator's ceiling)
  trackd-load -canned -ws ADDR                 the same for WebSocket: relays each offer and
                                               answer back to its sender
  trackd-load -flood -udp ADDR -rate N -duration D
                                               announce a new random info hash in every
                                               packet (N a second, for D), while a
                                               well-behaved client re-announces to a
                                               known swarm every -probe

Targets are "host:port" or tracker URLs (udp://host:port/announce,
http://host:port/announce, ws://host:port/path); they must be loopback addresses unless
-allow-remote is given. -udp and -http also take a comma-separated list of
the instances of one tracker, which share that protocol's load: each peer
sticks to one instance, or with -roam announces to each in turn. Every run
stops by itself after -warmup + -duration
(or the fill), and in any case after -max-time.

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.UDP, "udp", "", "UDP tracker `address` to load (with -canned: to serve)")
	fs.StringVar(&c.HTTP, "http", "", "HTTP tracker `address` or announce URL to load (with -canned: to serve)")
	fs.StringVar(&c.WS, "ws", "", "WebSocket tracker `address` or URL to load, alone (with -canned: to serve)")
	fs.IntVar(&c.WSConns, "ws-conns", c.WSConns, "WebSocket connections, one goroutine and one peer id each")
	fs.IntVar(&c.WSTorrents, "ws-torrents", c.WSTorrents, "torrents each WebSocket connection announces on in turn (the workload has ws-conns × ws-torrents peers; -peers is not used)")
	fs.IntVar(&c.WSWindow, "ws-window", c.WSWindow, "announces in flight per WebSocket connection")
	fs.IntVar(&c.WSOffers, "ws-offers", c.WSOffers, "offers per WebSocket announce (its numwant; bittorrent-tracker's client sends at most 5)")
	fs.IntVar(&c.WSSDPBytes, "ws-sdp", c.WSSDPBytes, "bytes of each fake SDP (offers and answers)")
	fs.DurationVar(&c.WSPace, "ws-pace", 0, "least time between two announces of a WebSocket connection (for trackers that rate-limit offers per socket: use more connections)")
	fs.DurationVar(&c.WSIdle, "ws-idle", 0, "WebSocket idle mode: announce once per connection, then hold the connections this long (prints a line on stderr when all are open)")
	fs.BoolVar(&o.canned, "canned", false, "serve valid fixed replies on -udp and -http instead of loading them")
	fs.BoolVar(&c.Roam, "roam", false, "with a list of instances: each peer's announces go to them in turn (DNS round-robin), instead of each peer sticking to one")
	fs.IntVar(&c.Converge, "converge", 0, "convergence probes to run beside the load over the instances of -udp (else -http): a fresh peer announced to one instance, polled for on the next until there, then stopped and polled for until gone")
	fs.DurationVar(&c.ConvergeWithin, "converge-within", c.ConvergeWithin, "a probe's peer not there (or not gone) this long after its announce never converged")
	fs.DurationVar(&c.ConvergePoll, "converge-poll", c.ConvergePoll, "period of a probe's polls")
	fs.BoolVar(&c.AllowRemote, "allow-remote", false, "allow addresses that are not loopback (only for trackers you operate)")
	fs.IntVar(&c.Torrents, "torrents", c.Torrents, "torrents in the workload")
	fs.IntVar(&c.Peers, "peers", c.Peers, "simulated peers, dealt to torrents by weight(i) = peers/torrents + exp(6.5 − 500·i/torrents)")
	fs.Float64Var(&c.Zipf, "zipf", c.Zipf, "deal the peers to torrents by Zipf's law with this exponent (torrent of rank i gets peers in proportion to 1/(i+1)^zipf) instead of the model of -peers (0)")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of every info hash, peer id, port and seeder flag (same seed, same peers)")
	fs.Float64Var(&c.Seeders, "seeders", c.Seeders, "chance that a peer is a seeder (announces left=0)")
	fs.IntVar(&c.NumWant, "numwant", c.NumWant, "numwant of every announce; replies with more peers are errors")
	fs.Float64Var(&c.Stopped, "stopped", c.Stopped, "chance that a peer's announce after its first is event=stopped (its next is then event=started)")
	fs.Float64Var(&c.Completed, "completed", c.Completed, "chance that a leecher's announce after its first is event=completed (sent with left=0)")
	fs.Float64Var(&c.ScrapeShare, "scrape", c.ScrapeShare, "share of requests that are scrapes")
	fs.IntVar(&c.ScrapeMaxHashes, "scrape-hashes", c.ScrapeMaxHashes, "a scrape asks for 1 to this many torrents")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "measured time")
	fs.DurationVar(&c.Warmup, "warmup", c.Warmup, "load before the measurement, not counted (first announces build the swarms)")
	fs.DurationVar(&c.MaxTime, "max-time", c.MaxTime, "hard cap on the run (0: warmup + duration + timeout + 30s; 30m for -fill; 10m for -canned)")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "a request unanswered this long counts as a timeout (no retransmission)")
	fs.IntVar(&c.Sockets, "sockets", c.Sockets, "UDP sockets, one goroutine each")
	fs.IntVar(&c.Conns, "conns", c.Conns, "HTTP connections, one goroutine each (with -http-close: concurrent requests)")
	fs.IntVar(&c.Window, "window", c.Window, "requests in flight per UDP socket / pipelined per HTTP connection")
	fs.IntVar(&c.SourceAddrs, "src-addrs", c.SourceAddrs, "distinct source addresses 127.0.0.2, 127.0.0.3, ... (at most -sockets/-conns; IPv4 loopback targets only)")
	fs.BoolVar(&c.HTTPClose, "http-close", c.HTTPClose, "a new HTTP connection per request, with Connection: close (as opentracker needs)")
	fs.BoolVar(&c.TLSResume, "tls-resume", c.TLSResume, "HTTPS (-http https://...): resume each connection's previous TLS session (tickets), as clients with a session cache do")
	fs.StringVar(&c.TLSCurves, "tls-curves", c.TLSCurves, "HTTPS: key exchanges to offer, comma-separated: x25519, p256, p384, x25519mlkem768 (default: Go's)")
	fs.StringVar(&c.TLSVersion, "tls-version", c.TLSVersion, "HTTPS: highest TLS version, 1.2 or 1.3 (default: 1.3)")
	fs.BoolVar(&c.Fill, "fill", c.Fill, "announce every simulated peer once (started) as fast as possible, print how many and how long, and stop")
	fs.DurationVar(&c.ConnIDRenew, "renew", c.ConnIDRenew, "renew a UDP connection id at this age (ids live 2m)")
	fs.BoolVar(&o.flood, "flood", false, "flood -udp with announces of random info hashes (a new torrent each) at -rate for -duration; print a line a second and what a well-behaved client saw")
	fs.IntVar(&o.rate, "rate", loadgen.DefaultFloodConfig().Rate, "with -flood: announces per second")
	fs.DurationVar(&o.probe, "probe", loadgen.DefaultFloodConfig().Probe, "with -flood: period of the well-behaved client's announce to a known swarm (0: none)")
	fs.BoolVar(&o.json, "json", false, "print the results as JSON, one line per target, on stdout (the text goes to stderr)")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write the generator's CPU profile to this `file` (to check it is not the bottleneck)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "trackd-load:", err)
		return 2
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			fmt.Fprintln(stderr, "trackd-load:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "trackd-load:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	if o.canned && o.cfg.WS != "" {
		return serveCannedWS(ctx, o, stderr)
	}
	if o.canned {
		return serveCanned(ctx, o, stderr)
	}
	if o.flood {
		return runFlood(ctx, o, stdout, stderr)
	}
	o.cfg.Progress = stderr
	results, err := loadgen.Run(ctx, o.cfg)
	if err != nil {
		fmt.Fprintln(stderr, "trackd-load:", err)
		return 1
	}
	text := stdout
	if o.json {
		text = stderr
	}
	code := 0
	for i := range results {
		r := &results[i]
		r.Format(text)
		if o.json {
			fmt.Fprintf(stdout, "%s\n", r.JSON())
		}
		if r.Responses == 0 && !(r.Mode == "idle" && r.IdleReady > 0) {
			code = 1
		}
	}
	return code
}

func serveCanned(ctx context.Context, o *options, stderr io.Writer) int {
	c, err := loadgen.StartCanned(o.cfg.UDP, o.cfg.HTTP, o.cfg.AllowRemote)
	if err != nil {
		fmt.Fprintln(stderr, "trackd-load:", err)
		return 1
	}
	limit := o.cfg.MaxTime
	if limit <= 0 {
		limit = 10 * time.Minute
	}
	fmt.Fprintf(stderr, "trackd-load: %s; stops after %s or on SIGINT/SIGTERM\n", c, limit)
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	<-ctx.Done()
	c.Close()
	return 0
}

func serveCannedWS(ctx context.Context, o *options, stderr io.Writer) int {
	if o.cfg.UDP != "" || o.cfg.HTTP != "" {
		fmt.Fprintln(stderr, "trackd-load: -canned -ws serves WebSocket alone (run another -canned for -udp and -http)")
		return 2
	}
	c, err := loadgen.StartCannedWS(o.cfg.WS, o.cfg.AllowRemote)
	if err != nil {
		fmt.Fprintln(stderr, "trackd-load:", err)
		return 1
	}
	limit := o.cfg.MaxTime
	if limit <= 0 {
		limit = 10 * time.Minute
	}
	fmt.Fprintf(stderr, "trackd-load: %s; stops after %s or on SIGINT/SIGTERM\n", c, limit)
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	<-ctx.Done()
	c.Close()
	return 0
}

func runFlood(ctx context.Context, o *options, stdout, stderr io.Writer) int {
	fc := loadgen.DefaultFloodConfig()
	fc.UDP, fc.AllowRemote = o.cfg.UDP, o.cfg.AllowRemote
	fc.Rate, fc.Duration, fc.Sockets, fc.Seed = o.rate, o.cfg.Duration, o.cfg.Sockets, o.cfg.Seed
	fc.Probe, fc.Timeout, fc.Progress = o.probe, o.cfg.Timeout, stderr
	r, err := loadgen.Flood(ctx, fc)
	if err != nil {
		fmt.Fprintln(stderr, "trackd-load:", err)
		return 1
	}
	if o.json {
		r.Format(stderr)
		fmt.Fprintf(stdout, "%s\n", r.JSON())
	} else {
		r.Format(stdout)
	}
	if r.ProbeFailures > 0 {
		return 1
	}
	return 0
}
