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
	"time"

	"trackd/config"
	httpfrontend "trackd/frontend/http"
	udpfrontend "trackd/frontend/udp"
	"trackd/store"
	"trackd/store/memory"
	"trackd/tracker"
)

// Server is a configured trackd. Start it, then Shutdown it.
type Server struct {
	cfg     config.Config
	log     *slog.Logger
	store   store.Store
	tracker *tracker.Tracker

	httpHandler *httpfrontend.Handler
	httpServer  *httpfrontend.Server
	udpHandler  *udpfrontend.Handler
	udpServer   *udpfrontend.Server
	serveErr    chan error
	ready       chan struct{}
}

// New builds a Server from cfg. It opens the store but binds no listener.
func New(cfg config.Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	trustedProxies, _ := config.ParsePrefixes(cfg.TrustedProxies)
	trustIPParam, _ := config.ParsePrefixes(cfg.TrustIPParam)

	st := memory.New(store.Options{PeerLifetime: cfg.PeerLifetime, PeerIDs: cfg.PeerIDs})
	tr := tracker.New(tracker.Config{
		TargetAnnounceRate:  cfg.TargetAnnounceRate,
		MinInterval:         cfg.MinInterval,
		MaxInterval:         cfg.MaxInterval,
		MinAnnounceInterval: cfg.MinAnnounceInterval,
		DefaultNumWant:      cfg.DefaultNumWant,
		MaxNumWant:          cfg.MaxNumWant,
		RequireCompact:      cfg.RequireCompact,
		MaxScrapeHashes:     cfg.MaxScrapeHashes,
		PeerIDs:             cfg.PeerIDs,
	}, st)
	s := &Server{cfg: cfg, log: log, store: st, tracker: tr, serveErr: make(chan error, 1), ready: make(chan struct{})}
	if cfg.HTTP != "" {
		s.httpHandler = httpfrontend.NewHandler(tr, httpfrontend.Options{
			FullScrape:         cfg.FullScrape,
			FullScrapeInterval: cfg.FullScrapeInterval,
			MaxQueryBytes:      cfg.MaxQueryBytes,
			TrustedProxies:     trustedProxies,
			TrustIPParam:       trustIPParam,
			Logger:             log,
		})
	}
	if cfg.UDP != "" {
		s.udpHandler = udpfrontend.NewHandler(tr, udpfrontend.Options{
			Secret:       []byte(cfg.UDPSecret),
			TrustIPParam: trustIPParam,
			Logger:       log,
		})
	}
	return s, nil
}

// Tracker returns the server's core tracker.
func (s *Server) Tracker() *tracker.Tracker { return s.tracker }

// Start binds the listeners and serves in the background. It logs one line
// per listener once it accepts requests. If one listener cannot be bound,
// none is left open.
func (s *Server) Start() error {
	if s.httpHandler != nil {
		hs, err := httpfrontend.Listen(s.cfg.HTTP, s.httpHandler, httpfrontend.ServerOptions{
			ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
			IdleTimeout:       s.cfg.IdleTimeout,
			WriteTimeout:      s.cfg.WriteTimeout,
			MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
			MaxConns:          s.cfg.MaxConns,
			Logger:            s.log,
		})
		if err != nil {
			return fmt.Errorf("http listener: %w", err)
		}
		s.httpServer = hs
	}
	if s.udpHandler != nil {
		us, err := udpfrontend.Listen(s.cfg.UDP, s.udpHandler, udpfrontend.ServeOptions{
			Sockets: s.cfg.UDPSockets,
			Logger:  s.log,
		})
		if err != nil {
			if s.httpServer != nil {
				s.httpServer.Close()
				s.httpServer = nil
			}
			return fmt.Errorf("udp listener: %w", err)
		}
		s.udpServer = us
	}
	if hs := s.httpServer; hs != nil {
		// Its loops are already at work.
		go func() {
			for err := range hs.Err() {
				select {
				case s.serveErr <- fmt.Errorf("http: %w", err):
				default:
				}
			}
		}()
		s.log.Info("serving", "protocol", "http", "addr", hs.Addr().String(),
			"announce", "http://"+hs.Addr().String()+"/announce")
	}
	if us := s.udpServer; us != nil {
		// The Server's readers are already at work.
		s.log.Info("serving", "protocol", "udp", "addr", us.Addr().String(),
			"announce", "udp://"+us.Addr().String()+"/announce")
	}
	close(s.ready)
	return nil
}

// Ready is closed once Start has bound every listener.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Err returns a channel that receives an error if a listener fails while
// serving.
func (s *Server) Err() <-chan error { return s.serveErr }

// UDPAddr returns the address of the UDP sockets, or nil if UDP is off. It
// is valid once Start has returned (or Ready is closed).
func (s *Server) UDPAddr() net.Addr {
	if s.udpServer == nil {
		return nil
	}
	return s.udpServer.Addr()
}

// HTTPAddr returns the address of the HTTP listener, or nil if HTTP is off.
// It is valid once Start has returned (or Ready is closed).
func (s *Server) HTTPAddr() net.Addr {
	if s.httpServer == nil {
		return nil
	}
	return s.httpServer.Addr()
}

// Shutdown stops accepting requests, waits for the ones in flight until ctx
// ends, and closes the store. The UDP sockets close at once: their readers
// finish the packets they hold, which takes no longer than the handler.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	if s.udpServer != nil {
		if err := s.udpServer.Close(); err != nil {
			errs = append(errs, fmt.Errorf("udp: %w", err))
		}
	}
	if s.httpServer != nil {
		if err := s.httpServer.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http: %w", err))
		}
	}
	errs = append(errs, s.store.Close())
	return errors.Join(errs...)
}

// shutdownGrace is how long cmd/trackd gives requests in flight to finish.
const shutdownGrace = 10 * time.Second

// Run starts s and serves until ctx is done or a listener fails, then shuts
// down gracefully.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(); err != nil {
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
