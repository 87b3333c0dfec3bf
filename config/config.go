// Package config is trackd's configuration: one struct with defaults, read
// from an optional TOML file and then from command-line flags, which win.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"trackd/accesslist"
	httpfrontend "trackd/frontend/http"
	wsfrontend "trackd/frontend/ws"
	"trackd/httpserver"
	"trackd/store"
	"trackd/tracker"
	"trackd/wsserver"

	"github.com/BurntSushi/toml"
)

// Config is every setting of trackd. The TOML keys are the flag names with
// underscores for dashes; durations are strings such as "90s" or "30m".
type Config struct {
	// Listeners. An empty address turns a listener off.
	HTTP string `toml:"http"`
	UDP  string `toml:"udp"`

	// UDPSecret keys the UDP connection ids. Instances behind one address
	// must share it; empty means a random one made at start.
	UDPSecret string `toml:"udp_secret"`
	// UDPSockets is the number of UDP sockets sharing the port
	// (SO_REUSEPORT), each read by its own goroutine; 0 means one per CPU.
	UDPSockets int `toml:"udp_sockets"`

	// Store is where swarms live: "memory" (the default), or a Redis URL
	// (redis://, rediss://, redis+cluster://; see store/redis) that several
	// trackd instances share. server.Validate checks it: config does not
	// know the stores.
	Store string `toml:"store"`
	// RedisTimeout bounds one round trip to Redis: with the Redis store a
	// request that waits longer gets an error reply; with Sync a call of
	// the sync (never a request) that waits longer fails and is retried.
	RedisTimeout time.Duration `toml:"redis_timeout"`
	// Sync keeps the in-memory store's swarms in step with the other
	// instances of a fleet through Redis, at this URL (see package
	// fleet): every instance answers from its own memory. Empty: off.
	// Only with the memory store; server.Validate checks the URL.
	Sync string `toml:"sync"`
	// State is the file the in-memory store's swarms are written to
	// periodically and on shutdown, and read from at start (empty: none).
	State string `toml:"state"`
	// StateInterval is the period of the periodic snapshot.
	StateInterval time.Duration `toml:"state_interval"`
	// PeerLifetime is how long a peer that stopped announcing stays in
	// its swarm: with the memory store at most memory.MaxPeerLifetime
	// (9h; server.Validate checks it).
	PeerLifetime time.Duration `toml:"peer_lifetime"`
	// PeerIDs keeps each peer's peer_id so that non-compact HTTP replies
	// carry it (store.Options.PeerIDs). Off, the store keeps none, 20 bytes
	// less per peer, and those replies leave "peer id" out, as they do for
	// a client that sent no_peer_id=1.
	PeerIDs bool `toml:"peer_ids"`
	// MaxMemory bounds the memory of the in-memory store's torrents and
	// peers (store.MemoryBounded; see store/memory's bound.go): near it
	// the store evicts torrents of one peer, oldest first, then refuses
	// new torrents, then new peers. 0: no bound. The default ("auto") is
	// half of the machine's memory or of its cgroup's limit. Redis bounds
	// its own (maxmemory).
	MaxMemory Size `toml:"max_memory"`

	// Interval policy and replies (see tracker.Config).
	TargetAnnounceRate  float64       `toml:"target_announce_rate"`
	MinInterval         time.Duration `toml:"min_interval"`
	MaxInterval         time.Duration `toml:"max_interval"`
	MinAnnounceInterval time.Duration `toml:"min_announce_interval"`
	DefaultNumWant      int           `toml:"default_numwant"`
	MaxNumWant          int           `toml:"max_numwant"`
	RequireCompact      bool          `toml:"require_compact"`
	MaxScrapeHashes     int           `toml:"max_scrape_hashes"`

	// Full scrape (a scrape without info_hash).
	FullScrape         bool          `toml:"full_scrape"`
	FullScrapeInterval time.Duration `toml:"full_scrape_interval"`

	// Overload: at most MaxPending announces and scrapes at work at once;
	// more are refused with "retry in" RetryIn (BEP 31) and the interval
	// doubles for a minute. 0: no bound.
	MaxPending int           `toml:"max_pending"`
	RetryIn    time.Duration `toml:"retry_in"`

	// HTTP serving limits.
	MaxQueryBytes     int           `toml:"max_query_bytes"`
	MaxHeaderBytes    int           `toml:"max_header_bytes"`
	MaxConns          int           `toml:"max_conns"`
	MaxConnsPerIP     int           `toml:"max_conns_per_ip"`
	ReadHeaderTimeout time.Duration `toml:"read_header_timeout"`
	WriteTimeout      time.Duration `toml:"write_timeout"`
	IdleTimeout       time.Duration `toml:"idle_timeout"`

	// WebSocket serves WebTorrent's tracker protocol: ws:// on the HTTP
	// listener's port and wss:// on the HTTPS listener's, on any path.
	WebSocket bool `toml:"websocket"`
	// WebSocket limits (wsserver.Options, frontend/ws.Options); 0: no
	// bound.
	WSMaxConns        int           `toml:"ws_max_conns"`
	WSMaxConnsPerIP   int           `toml:"ws_max_conns_per_ip"`
	WSMaxMessageBytes int           `toml:"ws_max_message_bytes"`
	WSIdleTimeout     time.Duration `toml:"ws_idle_timeout"`
	WSMaxPeers        int           `toml:"ws_max_peers"`

	// TrustedProxies lists the CIDRs of reverse proxies whose
	// X-Forwarded-For / X-Real-IP headers name the client.
	TrustedProxies []string `toml:"trusted_proxies"`
	// TrustIPParam lists the CIDRs of clients whose "ip" announce
	// parameter is believed.
	TrustIPParam []string `toml:"trust_ip_param"`

	// HTTPS serves announce and scrape over TLS on this address (empty:
	// off) with the certificate and key in TLSCert and TLSKey, PEM files
	// re-read on SIGHUP.
	HTTPS   string `toml:"https"`
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`

	// AccessList is "off" (the default: every info hash is tracked),
	// "allow" (only the hashes in AccessListFile) or "deny" (all but
	// those). The file is re-read on SIGHUP and when it changes.
	AccessList     string `toml:"access_list"`
	AccessListFile string `toml:"access_list_file"`

	// Admin is the operator endpoint's address: /metrics, /stats,
	// /healthz, /readyz (empty: off). Pprof adds /debug/pprof/ there.
	Admin string `toml:"admin"`
	Pprof bool   `toml:"pprof"`

	// Logging.
	LogLevel  string `toml:"log_level"`  // debug, info, warn, error
	LogFormat string `toml:"log_format"` // text or json
}

// Default returns the configuration trackd runs with when given none. A
// setting a component has a default for takes it from the component
// (tracker.DefaultConfig, the HTTP frontend's Default constants); the
// rest are trackd's own and written only here.
func Default() Config {
	t := tracker.DefaultConfig()
	return Config{
		HTTP:               ":6969",
		UDP:                ":6969",
		Store:              "memory",
		RedisTimeout:       store.DefaultNetworkTimeout,
		StateInterval:      5 * time.Minute,
		AccessList:         "off",
		Admin:              "127.0.0.1:6970",
		PeerLifetime:       35 * time.Minute,
		MaxMemory:          Size(DefaultMaxMemory()),
		TargetAnnounceRate: t.TargetAnnounceRate,
		MinInterval:        t.MinInterval,
		MaxInterval:        t.MaxInterval,
		DefaultNumWant:     t.DefaultNumWant,
		MaxNumWant:         t.MaxNumWant,
		MaxScrapeHashes:    t.MaxScrapeHashes,
		FullScrape:         true,
		FullScrapeInterval: httpfrontend.DefaultFullScrapeInterval,
		MaxPending:         tracker.DefaultMaxPending,
		RetryIn:            t.RetryIn,
		MaxQueryBytes:      httpfrontend.DefaultMaxQueryBytes,
		MaxHeaderBytes:     httpserver.DefaultMaxHeaderBytes,
		MaxConns:           httpserver.DefaultMaxConns,
		MaxConnsPerIP:      httpserver.DefaultMaxConnsPerIP,
		ReadHeaderTimeout:  10 * time.Second,
		WriteTimeout:       15 * time.Second,
		IdleTimeout:        2 * time.Minute,
		WebSocket:          true,
		WSMaxConns:         wsserver.DefaultMaxConns,
		WSMaxConnsPerIP:    wsserver.DefaultMaxConnsPerIP,
		WSMaxMessageBytes:  wsserver.DefaultMaxMessageBytes,
		WSIdleTimeout:      wsserver.DefaultIdleTimeout,
		WSMaxPeers:         wsfrontend.DefaultMaxPeers,
		LogLevel:           "info",
		LogFormat:          "text",
	}
}

// ErrVersion is what Load returns for -version: the caller prints its
// version and exits.
var ErrVersion = errors.New("version requested")

// Load is Parse, then Validate.
func Load(args []string, out io.Writer) (Config, error) {
	cfg, err := Parse(args, out)
	if err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// Parse builds the configuration from command-line arguments: defaults,
// then the TOML file named by -config, then every flag given. Usage and
// errors go to out. It returns flag.ErrHelp for -h. It does not validate:
// cmd/trackd calls server.Validate, which adds the stores' checks to
// Validate's.
func Parse(args []string, out io.Writer) (Config, error) {
	cfg := Default()
	var file string
	fs := cfg.flagSet(&file, out)
	version := fs.Bool("version", false, "print trackd's version and exit")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if *version {
		return cfg, ErrVersion
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if file != "" {
		cfg = Default()
		md, err := toml.DecodeFile(file, &cfg)
		if err != nil {
			return cfg, fmt.Errorf("config file %s: %w", file, err)
		}
		if un := md.Undecoded(); len(un) > 0 {
			return cfg, fmt.Errorf("config file %s: unknown key %q", file, un[0].String())
		}
		// Flags given on the command line override the file.
		fs = cfg.flagSet(&file, io.Discard)
		fs.Bool("version", false, "")
		if err := fs.Parse(args); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// flagSet returns a flag set whose flags write into c.
func (c *Config) flagSet(file *string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("trackd", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "trackd: an open BitTorrent tracker.\n\nUsage: trackd [flags]\n\n"+
			"Every flag can also be set in the TOML file given by -config, as key = value with\n"+
			"underscores for dashes (e.g. max_numwant = 100); flags override the file.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(file, "config", "", "read settings from this TOML `file`")
	fs.StringVar(&c.HTTP, "http", c.HTTP, "serve HTTP announce and scrape on this `address` (empty: off)")
	fs.StringVar(&c.UDP, "udp", c.UDP, "serve the UDP tracker protocol (BEP 15) on this `address` (empty: off)")
	fs.StringVar(&c.UDPSecret, "udp-secret", c.UDPSecret, "`key` for UDP connection ids; instances behind one address must share it (empty: random at start)")
	fs.IntVar(&c.UDPSockets, "udp-sockets", c.UDPSockets, "UDP sockets sharing the port, each with its own reader (0: one per CPU; 32 with Redis)")
	fs.StringVar(&c.Store, "store", c.Store, "where swarms live: memory, or a Redis `URL` shared by several instances (redis://host:port/db, rediss://..., redis+cluster://host1:port1,host2:port2)")
	fs.DurationVar(&c.RedisTimeout, "redis-timeout", c.RedisTimeout, "longest wait for one Redis round trip (the Redis store: before a request gets an error; sync: before a call of the sync counts as failed)")
	fs.StringVar(&c.Sync, "sync", c.Sync, "keep the in-memory swarms in step with the other instances of a fleet through Redis at this `URL` (redis://host:port/db, rediss://..., redis+cluster://host1:port1,host2:port2); each answers from its own memory (empty: off)")
	fs.StringVar(&c.State, "state", c.State, "keep the in-memory swarms in this `file` across restarts: written periodically and on shutdown, read at start (empty: off)")
	fs.DurationVar(&c.StateInterval, "state-interval", c.StateInterval, "period of the snapshot written to -state")
	fs.DurationVar(&c.PeerLifetime, "peer-lifetime", c.PeerLifetime, "drop a peer this long after its last announce (at most 9h)")
	fs.Var(&c.MaxMemory, "max-memory", "bound the in-memory store's torrents and peers to this `size` (bytes, or 512MiB, 2GiB...; 0: none; auto: half of the machine's or cgroup's memory): near it, torrents of one peer are evicted oldest first, then new torrents and new peers refused")
	fs.BoolVar(&c.PeerIDs, "peer-ids", c.PeerIDs, "keep peer ids and send them in non-compact HTTP replies (20 bytes more per peer)")
	fs.Float64Var(&c.TargetAnnounceRate, "target-announce-rate", c.TargetAnnounceRate, "announces per second the interval policy aims at (interval = peers / rate)")
	fs.DurationVar(&c.MinInterval, "min-interval", c.MinInterval, "shortest announce interval handed out")
	fs.DurationVar(&c.MaxInterval, "max-interval", c.MaxInterval, "longest announce interval handed out")
	fs.DurationVar(&c.MinAnnounceInterval, "min-announce-interval", c.MinAnnounceInterval, "\"min interval\" sent to clients (0: half the interval)")
	fs.IntVar(&c.DefaultNumWant, "default-numwant", c.DefaultNumWant, "peers given when a client does not send numwant (at most max-numwant)")
	fs.IntVar(&c.MaxNumWant, "max-numwant", c.MaxNumWant, "most peers given in one reply")
	fs.BoolVar(&c.RequireCompact, "require-compact", c.RequireCompact, "refuse announces without compact=1 or no_peer_id=1")
	fs.IntVar(&c.MaxScrapeHashes, "max-scrape-hashes", c.MaxScrapeHashes, "most info_hash values in one scrape")
	fs.BoolVar(&c.FullScrape, "full-scrape", c.FullScrape, "answer a scrape without info_hash with every torrent")
	fs.DurationVar(&c.FullScrapeInterval, "full-scrape-interval", c.FullScrapeInterval, "compute the full scrape at most once per this period")
	fs.IntVar(&c.MaxPending, "max-pending", c.MaxPending, "most announces and scrapes at work at once; more are refused with \"retry in\" (0: no bound)")
	fs.DurationVar(&c.RetryIn, "retry-in", c.RetryIn, "how long a client refused for overload is told to wait (BEP 31, whole minutes)")
	fs.IntVar(&c.MaxQueryBytes, "max-query-bytes", c.MaxQueryBytes, "refuse longer query strings")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", c.MaxHeaderBytes, "most bytes of request line and headers")
	fs.IntVar(&c.MaxConns, "max-conns", c.MaxConns, "most open HTTP connections; at the bound the longest-idle keep-alive one is closed for a new one (0: no limit)")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", c.MaxConnsPerIP, "most open HTTP connections from one IPv4 address or IPv6 /64, trusted proxies exempt (0: no limit)")
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", c.ReadHeaderTimeout, "time a client has to send its request headers")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "time to write a reply (a client that does not read it is dropped)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "close keep-alive connections idle this long")
	fs.BoolVar(&c.WebSocket, "websocket", c.WebSocket, "serve WebTorrent: ws:// on the -http port, wss:// on the -https port, any path")
	fs.IntVar(&c.WSMaxConns, "ws-max-conns", c.WSMaxConns, "most open WebSocket connections (0: no limit)")
	fs.IntVar(&c.WSMaxConnsPerIP, "ws-max-conns-per-ip", c.WSMaxConnsPerIP, "most open WebSocket connections from one IPv4 address or IPv6 /64, trusted proxies exempt (0: no limit)")
	fs.IntVar(&c.WSMaxMessageBytes, "ws-max-message-bytes", c.WSMaxMessageBytes, "longest WebSocket message, whole or in fragments; a longer one closes the connection (1009)")
	fs.DurationVar(&c.WSIdleTimeout, "ws-idle-timeout", c.WSIdleTimeout, "close a WebSocket connection that sends no frame (nor pong to the pings) this long")
	fs.IntVar(&c.WSMaxPeers, "ws-max-peers", c.WSMaxPeers, "most WebSocket peers in all swarms together; beyond it a new one is refused (0: no limit)")
	fs.Var((*listFlag)(&c.TrustedProxies), "trusted-proxies", "comma-separated `CIDRs` of reverse proxies whose X-Forwarded-For/X-Real-IP are believed")
	fs.Var((*listFlag)(&c.TrustIPParam), "trust-ip-param", "comma-separated `CIDRs` of clients whose announce ip parameter is believed")
	fs.StringVar(&c.HTTPS, "https", c.HTTPS, "serve HTTP announce and scrape over TLS on this `address` (empty: off); needs -tls-cert and -tls-key")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "PEM certificate chain `file` for -https (re-read on SIGHUP)")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "PEM private key `file` for -https (re-read on SIGHUP)")
	fs.StringVar(&c.AccessList, "access-list", c.AccessList, "off (track every info hash), allow (only those in -access-list-file) or deny (all but those)")
	fs.StringVar(&c.AccessListFile, "access-list-file", c.AccessListFile, "`file` of info hashes, hex or base32, one a line, # comments; re-read on SIGHUP and when it changes")
	fs.StringVar(&c.Admin, "admin", c.Admin, "serve /metrics, /stats, /healthz and /readyz on this `address` (empty: off)")
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "also serve the Go profiler under /debug/pprof/ on the admin address")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text or json")
	return fs
}

// listFlag is a comma-separated list flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	*l = nil
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			*l = append(*l, f)
		}
	}
	return nil
}

// Validate reports every setting that cannot work, as far as config can
// tell without knowing the stores: what store names and what only one
// kind of store takes (a state file, the longest peer_lifetime) are
// checked where the store is chosen, by server.Validate, which calls
// Validate too.
func (c *Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, a ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, a...))
		}
	}
	check(c.PeerLifetime > 0, "peer_lifetime must be positive")
	check(c.MaxMemory == 0 || c.MaxMemory >= minMaxMemory, "max_memory must be 0 (no bound) or at least %v", Size(minMaxMemory))
	check(c.RedisTimeout > 0, "redis_timeout must be positive")
	check(c.Sync == "" || c.Store == "memory", "sync: only with the memory store (a Redis store is shared already)")
	check(c.StateInterval > 0, "state_interval must be positive")
	check(c.HTTPS == "" || (c.TLSCert != "" && c.TLSKey != ""), "https needs tls_cert and tls_key")
	check(c.HTTPS == "" || validListenAddr(c.HTTPS), "https %q: want host:port, such as :443", c.HTTPS)
	check(c.Admin == "" || validListenAddr(c.Admin), "admin %q: want host:port, such as 127.0.0.1:6970", c.Admin)
	mode, err := accesslist.ParseMode(c.AccessList)
	check(err == nil, "access_list: %v", err)
	check(mode == accesslist.Off || c.AccessListFile != "", "access_list %s needs access_list_file", c.AccessList)
	check(c.TargetAnnounceRate > 0, "target_announce_rate must be positive")
	check(c.MinInterval >= time.Second, "min_interval must be at least 1s")
	check(c.MaxInterval >= c.MinInterval, "max_interval must be at least min_interval")
	check(c.MinAnnounceInterval >= 0, "min_announce_interval must not be negative")
	check(c.MaxNumWant > 0, "max_numwant must be positive")
	check(c.DefaultNumWant > 0, "default_numwant must be positive")
	check(c.MaxScrapeHashes > 0, "max_scrape_hashes must be positive")
	check(c.FullScrapeInterval >= 0, "full_scrape_interval must not be negative")
	check(c.MaxQueryBytes > 0, "max_query_bytes must be positive")
	check(c.MaxHeaderBytes > c.MaxQueryBytes, "max_header_bytes must be larger than max_query_bytes, so that an oversize query gets a failure reason")
	check(c.MaxConns >= 0, "max_conns must not be negative")
	check(c.MaxConnsPerIP >= 0, "max_conns_per_ip must not be negative")
	check(c.WSMaxConns >= 0, "ws_max_conns must not be negative")
	check(c.WSMaxConnsPerIP >= 0, "ws_max_conns_per_ip must not be negative")
	check(c.WSMaxMessageBytes >= 1024, "ws_max_message_bytes must be at least 1024")
	check(c.WSIdleTimeout >= time.Second, "ws_idle_timeout must be at least 1s")
	check(c.WSMaxPeers >= 0, "ws_max_peers must not be negative")
	check(c.MaxPending >= 0, "max_pending must not be negative")
	check(c.RetryIn >= time.Minute, "retry_in must be at least 1m (BEP 31 counts whole minutes)")
	check(c.UDPSockets >= 0 && c.UDPSockets <= maxUDPSockets, "udp_sockets must be between 0 (one per CPU) and %d", maxUDPSockets)
	check(c.UDP == "" || validListenAddr(c.UDP), "udp %q: want host:port, such as :6969 or 127.0.0.1:6969", c.UDP)
	for _, p := range [][]string{c.TrustedProxies, c.TrustIPParam} {
		_, err := ParsePrefixes(p)
		check(err == nil, "%v", err)
	}
	var lvl slog.Level
	check(lvl.UnmarshalText([]byte(c.LogLevel)) == nil, "log_level %q: want debug, info, warn or error", c.LogLevel)
	check(c.LogFormat == "text" || c.LogFormat == "json", "log_format %q: want text or json", c.LogFormat)
	return errors.Join(errs...)
}

// minMaxMemory is the smallest max_memory: the in-memory store counts at
// least a page per shard once its shards are in use (4 MiB), which would be
// most of a smaller bound.
const minMaxMemory = 32 << 20

// maxUDPSockets bounds udp_sockets: far more than any machine has CPUs.
const maxUDPSockets = 1024

// validListenAddr reports whether addr has the form host:port, as a
// listener takes it.
func validListenAddr(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	_, err = net.LookupPort("udp", port)
	return err == nil
}

// ParsePrefixes parses CIDRs; a bare address counts as a single-address
// prefix.
func ParsePrefixes(ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range ss {
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("bad address or CIDR %q", s)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("bad CIDR %q", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Logger returns the logger the configuration asks for, writing to w.
func (c *Config) Logger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
