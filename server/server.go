// Package server wires trackd together from a config.Config: the store, the
// core tracker and the frontends, with their listeners. cmd/trackd runs one
// Server; end-to-end tests run them in-process.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"trackd/accesslist"
	"trackd/bittorrent"
	"trackd/config"
	"trackd/fleet"
	"trackd/fleet/relay"
	httpfrontend "trackd/frontend/http"
	udpfrontend "trackd/frontend/udp"
	wsfrontend "trackd/frontend/ws"
	"trackd/internal/ratelog"
	"trackd/metrics"
	"trackd/stats"
	"trackd/store"
	"trackd/tlscert"
	"trackd/tracker"
	"trackd/wsserver"
)

// Server is a configured trackd. Start it, then Shutdown it.
type Server struct {
	cfg     config.Config
	log     *slog.Logger
	store   store.Store
	health  *store.Health   // what /readyz reports
	errs    *ratelog.Logger // errors that can repeat per request
	tracker *tracker.Tracker

	access  *accesslist.Source
	state   *stateFile // nil without config.State
	sync    *fleetSync // nil without config.Sync
	metrics *metrics.Metrics
	stats   *stats.Recorder
	cert    *tlscert.Loader

	httpHandler *httpfrontend.Handler
	udpHandler  *udpfrontend.Handler
	// wsHandler speaks WebTorrent over the connections ws, the WebSocket
	// transport, takes from the HTTP and HTTPS listeners (config
	// WebSocket); ws exists from Start on.
	wsHandler *wsfrontend.Handler
	ws        *wsserver.Server
	// relay is wsHandler's registry with sync on: it spans the WebTorrent
	// swarms across the fleet (wsRegistry); nil otherwise.
	relay *relay.Registry
	// listeners are the frontends and the admin endpoint Start has
	// bound, in the order of frontends (frontends.go).
	listeners []bound
	serveErr  chan error
	ready     chan struct{}

	// background work (access list watch, stats samples, snapshots) runs
	// under bgCtx until Shutdown
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup

	shutdownOnce sync.Once
	shutdownErr  error
}

// New builds a Server from cfg. It opens the store but binds no listener.
// A Redis store that cannot be reached is an error at once; Open waits for
// it instead.
func New(cfg config.Config, log *slog.Logger) (*Server, error) {
	return build(context.Background(), cfg, log, openStore)
}

// Open is New for a long-running process: when the store cannot be
// reached (Redis down), it logs why and tries again every few seconds until
// ctx ends, rather than failing (and being restarted in a loop).
func Open(ctx context.Context, cfg config.Config, log *slog.Logger) (*Server, error) {
	return build(ctx, cfg, log, openStoreRetry)
}

// Validate reports every setting of cfg that cannot work: those of the
// store it names (the server's, as only the server knows the stores), then
// config.Config.Validate's. New and Open call it; cmd/trackd calls it
// after config.Load to refuse a bad configuration as a usage error.
func Validate(cfg config.Config) error {
	return errors.Join(checkStore(cfg), cfg.Validate())
}

func build(ctx context.Context, cfg config.Config, log *slog.Logger,
	open func(context.Context, config.Config, *slog.Logger, *ratelog.Logger) (store.Store, error)) (*Server, error) {
	if err := Validate(cfg); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	trustedProxies, _ := config.ParsePrefixes(cfg.TrustedProxies)
	trustIPParam, _ := config.ParsePrefixes(cfg.TrustIPParam)
	mode, _ := accesslist.ParseMode(cfg.AccessList)
	access, err := accesslist.Open(mode, cfg.AccessListFile, log)
	if err != nil {
		return nil, err
	}
	var cert *tlscert.Loader
	if cfg.HTTPS != "" {
		if cert, err = tlscert.Load(cfg.TLSCert, cfg.TLSKey); err != nil {
			return nil, err
		}
	}

	// The metrics exist before the store, which counts its errors in
	// them; what they read of s, they read once build has returned.
	var s *Server
	mopts := metrics.Options{
		Totals:     func(ctx context.Context) (metrics.Totals, error) { return s.metricTotals(ctx) },
		UDPDropped: func() uint64 { return s.udpDropped() },
	}
	if cfg.Sync != "" {
		mopts.Sync = func() fleet.Stats { return s.sync.node.Stats() }
		if cfg.WebSocket && (cfg.HTTP != "" || cfg.HTTPS != "") {
			mopts.WSRelay = func() relay.Stats { return s.relay.Stats() }
		}
	}
	m := metrics.New(mopts)
	// One rate-limited log for the errors that can repeat per request,
	// whoever meets them; each is counted in trackd_errors_total.
	errs := ratelog.New(log, ratelog.Options{Count: m.Error})
	st, err := open(ctx, cfg, log, errs)
	if err != nil {
		return nil, err
	}
	var fsync *fleetSync
	if cfg.Sync != "" {
		if st, fsync, err = openSync(ctx, cfg, st, log, errs); err != nil {
			return nil, err
		}
	}
	health := store.NewHealth(st, nil)
	tcfg := tracker.Config{
		TargetAnnounceRate:  cfg.TargetAnnounceRate,
		MinInterval:         cfg.MinInterval,
		MaxInterval:         cfg.MaxInterval,
		MinAnnounceInterval: cfg.MinAnnounceInterval,
		DefaultNumWant:      cfg.DefaultNumWant,
		MaxNumWant:          cfg.MaxNumWant,
		RequireCompact:      cfg.RequireCompact,
		MaxScrapeHashes:     cfg.MaxScrapeHashes,
		PeerIDs:             cfg.PeerIDs,
		MaxPending:          cfg.MaxPending,
		RetryIn:             cfg.RetryIn,
		Health:              health,
	}
	if mode != accesslist.Off {
		tcfg.Access = access
	}
	tr := tracker.New(tcfg, st)
	s = &Server{cfg: cfg, log: log, store: st, sync: fsync, health: health, errs: errs, metrics: m, tracker: tr, access: access, cert: cert,
		serveErr: make(chan error, 1), ready: make(chan struct{})}
	if cfg.State != "" {
		if s.state, err = s.loadState(st); err != nil {
			s.closeSync()
			st.Close()
			return nil, fmt.Errorf("state file: %w", err)
		}
	}
	// After the state is read back: all of it is loaded, and what is over
	// the bound is shed by the store's sweeper.
	if mb, ok := st.(store.MemoryBounded); ok {
		mb.SetMemoryLimit(int64(cfg.MaxMemory))
		log.Info("store memory bound", "max_memory", cfg.MaxMemory.String(), "bytes", int64(cfg.MaxMemory))
	}
	s.bgCtx, s.bgCancel = context.WithCancel(context.Background())
	s.stats = stats.New(s.statCounts, stats.TopFromScrape(func(ctx context.Context, fn func(bittorrent.InfoHash, uint32, uint32) error) error {
		_, err := tr.ScrapeAll(ctx, func(h bittorrent.InfoHash, c bittorrent.Stats) error { return fn(h, c.Seeders, c.Leechers) })
		return err
	}), stats.Options{Logger: log, Version: BuildVersion()})
	if cfg.HTTP != "" || cfg.HTTPS != "" {
		s.httpHandler = httpfrontend.NewHandler(tr, httpfrontend.Options{
			FullScrape:         cfg.FullScrape,
			FullScrapeInterval: cfg.FullScrapeInterval,
			MaxQueryBytes:      cfg.MaxQueryBytes,
			TrustedProxies:     trustedProxies,
			TrustIPParam:       trustIPParam,
			Logger:             log,
			Errors:             errs,
			Metrics:            s.metrics,
		})
	}
	if cfg.WebSocket && (cfg.HTTP != "" || cfg.HTTPS != "") {
		s.wsHandler = wsfrontend.NewHandler(tr, wsfrontend.Options{
			Registry:     s.wsRegistry(),
			PeerLifetime: cfg.PeerLifetime,
			MaxPeers:     cfg.WSMaxPeers,
			Metrics:      newWSMetrics(s.metrics),
		})
		s.metrics.WSSwarms(s.wsHandler.Registry().Totals)
	}
	if cfg.UDP != "" {
		s.udpHandler = udpfrontend.NewHandler(tr, udpfrontend.Options{
			Secret:       []byte(cfg.UDPSecret),
			TrustIPParam: trustIPParam,
			Logger:       log,
			Errors:       errs,
			Metrics:      s.metrics,
		})
	}
	return s, nil
}

// Version is trackd's version, set at build time with
// -ldflags "-X trackd/server.Version=v1.2.3"; empty otherwise, and then
// BuildVersion reads what the Go toolchain recorded.
var Version string

// BuildVersion returns Version or, when it was not set, the module version
// and VCS revision the binary was built from.
func BuildVersion() string {
	if Version != "" {
		return Version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	if v == "(devel)" || v == "" {
		v = "dev"
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev != "" {
		v += " " + rev[:min(12, len(rev))] + dirty
	}
	return v
}

// Tracker returns the server's core tracker.
func (s *Server) Tracker() *tracker.Tracker { return s.tracker }

// Start binds the listeners and serves in the background. It logs one line
// per listener once it accepts requests. If one listener cannot be bound,
// none is left open.
func (s *Server) Start() error {
	s.startWS()
	if err := s.bind(); err != nil {
		if s.ws != nil {
			s.ws.Close()
		}
		return err
	}
	s.serveAll()
	s.background()
	s.logListeners()
	close(s.ready)
	return nil
}

// servingModel decides how the frontends call st, from its abilities alone
// (never its type), and returns the HTTP server's model and the number of
// UDP sockets for udp_sockets = udpSockets. The epoll event loops and the
// UDP sockets' readers answer one request at a time each: right for a
// store.InProcess, which answers from memory, not for a store that waits on
// the network. That one gets a goroutine per HTTP connection and, unless
// udp_sockets says otherwise, networkStoreUDPSockets or one per CPU,
// whichever is more, so that more requests are in flight.
func servingModel(st store.Store, udpSockets int) (goroutinePerConn bool, sockets int) {
	if _, ok := st.(store.InProcess); ok {
		return false, udpSockets
	}
	if udpSockets == 0 {
		udpSockets = max(networkStoreUDPSockets, runtime.NumCPU())
	}
	return true, udpSockets
}

// networkStoreUDPSockets is the default number of UDP sockets with a store
// that waits on the network, one not store.InProcess (udp_sockets = 0).
const networkStoreUDPSockets = 32

// background starts the work that runs beside the listeners until
// Shutdown: watching the access list file, sampling the stats, writing the
// state file, keeping the swarms in step with the fleet (config.Sync).
func (s *Server) background() {
	s.bg.Add(3)
	go func() { defer s.bg.Done(); s.access.Watch(s.bgCtx, accessListPoll) }()
	go func() { defer s.bg.Done(); s.stats.Run(s.bgCtx) }()
	go func() { defer s.bg.Done(); s.errs.Run(s.bgCtx) }()
	if s.state != nil {
		s.bg.Add(1)
		go func() { defer s.bg.Done(); s.saveStatePeriodically(s.bgCtx) }()
	}
	if s.wsHandler != nil {
		s.bg.Add(1)
		go func() { defer s.bg.Done(); s.expireWS(s.bgCtx) }()
	}
	if s.sync != nil {
		s.bg.Add(1)
		go func() { defer s.bg.Done(); s.sync.node.Run(s.bgCtx) }()
	}
	if s.relay != nil {
		// Shutdown closes the Bus after bg.Wait: Run has said goodbye
		s.bg.Add(1)
		go func() { defer s.bg.Done(); s.relay.Run(s.bgCtx) }()
	}
}

// closeSync closes the Bus of the fleet's sync, if it is on, once its
// Node has stopped (or never ran).
func (s *Server) closeSync() {
	if s.sync == nil {
		return
	}
	if err := s.sync.bus.Close(); err != nil {
		s.log.Warn("sync: closing the bus", "err", err)
	}
}

// accessListPoll is how often the access list file is checked for changes.
const accessListPoll = 2 * time.Second

// Reload re-reads what an operator may change without a restart: the
// access list and the TLS certificate. cmd/trackd calls it on SIGHUP. A
// file that cannot be read is reported and the old one stays in force.
func (s *Server) Reload() error {
	var errs []error
	if err := s.access.Reload(); err != nil {
		errs = append(errs, err)
	}
	if s.cert != nil {
		if err := s.cert.Reload(); err != nil {
			s.log.Error("tls certificate not reloaded; the previous one stays in use", "err", err)
			errs = append(errs, err)
		} else {
			s.log.Info("tls certificate reloaded", "cert", s.cfg.TLSCert)
		}
	}
	return errors.Join(errs...)
}

// Metrics returns the server's metrics.
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// AdminAddr returns the address of the admin listener, or nil if it is off.
func (s *Server) AdminAddr() net.Addr { return s.addr("admin") }

// HTTPSAddr returns the address of the HTTPS listener, or nil if it is off.
func (s *Server) HTTPSAddr() net.Addr { return s.addr("https") }

// metricTotals reads the store's totals for the gauges.
func (s *Server) metricTotals(ctx context.Context) (metrics.Totals, error) {
	t, err := s.store.Totals(ctx)
	if err != nil {
		return metrics.Totals{}, err
	}
	mt := metrics.Totals{
		Torrents:  t.Torrents,
		Seeders4:  t.Seeders - t.Seeders6,
		Leechers4: t.Leechers - t.Leechers6,
		Seeders6:  t.Seeders6,
		Leechers6: t.Leechers6,
	}
	if e, ok := s.store.(store.ExpiryCounter); ok {
		mt.PeersExpired, mt.PeersExpiredObserved = e.Expired(), true
	}
	if mb, ok := s.store.(store.MemoryBounded); ok {
		mt.Memory, mt.MemoryObserved = mb.MemoryUsage(), true
	}
	return mt, nil
}

// udpDropped sums what the listeners that drop packets (UDP) have
// dropped.
func (s *Server) udpDropped() uint64 {
	var n uint64
	for _, b := range s.listeners {
		if d, ok := b.listener.(interface{ Dropped() uint64 }); ok {
			n += d.Dropped()
		}
	}
	return n
}

// statCounts reads what the stats page samples.
func (s *Server) statCounts(ctx context.Context) (stats.Counts, error) {
	t, err := s.store.Totals(ctx)
	if err != nil {
		return stats.Counts{}, err
	}
	var shedding bool
	if mb, ok := s.store.(store.MemoryBounded); ok {
		shedding = mb.MemoryUsage().Shedding
	}
	wsTotals := s.metrics.WSSwarmTotals()
	return stats.Counts{
		Shedding:     shedding,
		Torrents:     t.Torrents,
		Seeders:      t.Seeders,
		Leechers:     t.Leechers,
		Seeders6:     t.Seeders6,
		Leechers6:    t.Leechers6,
		HTTPRequests: s.metrics.Requests(metrics.HTTP),
		UDPRequests:  s.metrics.Requests(metrics.UDP),
		WSRequests:   s.metrics.Requests(metrics.WS),
		// the WebSocket figures, as wired with metrics.WSConns and WSSwarms
		WSConnections: uint64(max(s.metrics.WSConnsOpen(), 0)),
		WSTorrents:    wsTotals.Swarms,
		WSSeeders:     wsTotals.Seeders,
		WSLeechers:    wsTotals.Leechers,
	}, nil
}

// Ready is closed once Start has bound every listener.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Err returns a channel that receives an error if a listener fails while
// serving.
func (s *Server) Err() <-chan error { return s.serveErr }

// UDPAddr returns the address of the UDP sockets, or nil if UDP is off. It
// is valid once Start has returned (or Ready is closed).
func (s *Server) UDPAddr() net.Addr { return s.addr("udp") }

// HTTPAddr returns the address of the HTTP listener, or nil if HTTP is off.
// It is valid once Start has returned (or Ready is closed).
func (s *Server) HTTPAddr() net.Addr { return s.addr("http") }

// Shutdown stops accepting requests, waits for the ones in flight until ctx
// ends, and closes the store. The frontends stop together and drain side
// by side, the admin endpoint after them (it answers /metrics and /readyz
// meanwhile). The UDP sockets close at once: their readers finish the
// packets they hold, which takes no longer than the handler.
// With a state file, the last snapshot is written after the last request.
// Only the first call does anything; later ones return its result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { s.shutdownErr = s.shutdown(ctx) })
	return s.shutdownErr
}

func (s *Server) shutdown(ctx context.Context) error {
	errs := []error{s.shutdownListeners(ctx)}
	s.bgCancel()
	s.bg.Wait() // the sync's Node has published what it could
	s.closeSync()
	s.closeHandler()
	// nothing changes the swarms any more: the last snapshot is complete
	errs = append(errs, s.saveState("shutdown"))
	errs = append(errs, s.store.Close())
	return errors.Join(errs...)
}

// closeHandler stops the HTTP handler's full scrape builder, before the
// store it walks closes.
func (s *Server) closeHandler() {
	if s.httpHandler != nil {
		s.httpHandler.Close()
	}
}

// shutdownGrace is how long cmd/trackd gives requests in flight to finish.
const shutdownGrace = 10 * time.Second

// Run starts s and serves until ctx is done or a listener fails, then shuts
// down gracefully.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(); err != nil {
		s.closeHandler()
		s.closeSync()
		s.store.Close()
		return err
	}
	var err error
	select {
	case <-ctx.Done():
		s.log.Info("shutting down")
	case err = <-s.serveErr:
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	return errors.Join(err, s.Shutdown(sctx))
}
