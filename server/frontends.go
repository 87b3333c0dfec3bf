package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"trackd/admin"
	"trackd/config"
	udpfrontend "trackd/frontend/udp"
	"trackd/httpserver"
)

// A listener is what Start has bound for one frontend (or the admin
// endpoint), whatever its protocol: the one shape in which Start serves
// it, logs it and closes it when a later one cannot be bound, Shutdown
// stops it, and the address accessors find it.
type listener interface {
	// Addr is the address it is bound to.
	Addr() net.Addr
	// serve starts serving in the background, once every listener is
	// bound (one that serves from the moment it is bound does nothing);
	// fail reports a failure while serving.
	serve(fail func(error))
	// Shutdown stops accepting and waits for the requests in flight until
	// ctx ends.
	Shutdown(ctx context.Context) error
	// Close closes it at once.
	Close() error
}

// A frontend is a listener the configuration may turn on.
type frontend struct {
	// name is the protocol, in logs and errors: "http", "udp" ...
	name string
	// addr is its address from the configuration; empty: off.
	addr string
	// listen binds addr.
	listen func(addr string) (listener, error)
	// logAttrs, if not nil, is what the "serving" log line says beside
	// the address; nil says the announce URL, name://addr/announce.
	logAttrs func(addr string) []any
	// operator marks the admin endpoint, which Shutdown stops after the
	// frontends so that /metrics and /readyz answer while they drain.
	operator bool
}

// frontends lists what Start binds, in order. Adding a frontend is one
// entry here and its listen method below (beside its package and its
// options in config).
func (s *Server) frontends() []frontend {
	return []frontend{
		{name: "http", addr: s.cfg.HTTP, listen: s.listenHTTP, logAttrs: s.announceAttrs("http", "ws")},
		{name: "udp", addr: s.cfg.UDP, listen: s.listenUDP},
		{name: "https", addr: s.cfg.HTTPS, listen: s.listenHTTPS, logAttrs: s.announceAttrs("https", "wss")},
		{name: "admin", addr: s.cfg.Admin, listen: s.listenAdmin, operator: true, logAttrs: func(addr string) []any {
			return []any{"stats", "http://" + addr + "/stats", "metrics", "http://" + addr + "/metrics"}
		}},
	}
}

// announceAttrs is what the "serving" line of an HTTP listener says: its
// announce URL and, with WebSocket on, the WebTorrent one (scheme ws).
func (s *Server) announceAttrs(scheme, ws string) func(addr string) []any {
	return func(addr string) []any {
		attrs := []any{"announce", scheme + "://" + addr + "/announce"}
		if s.wsHandler != nil {
			attrs = append(attrs, "webtorrent", ws+"://"+addr+"/announce")
		}
		return attrs
	}
}

// bound is a frontend Start has bound.
type bound struct {
	frontend
	listener
}

// listenHTTP binds trackd's own HTTP/1.1 server, for plain HTTP.
func (s *Server) listenHTTP(addr string) (listener, error) {
	return s.listenLean(addr, nil)
}

// listenHTTPS binds trackd's own HTTP/1.1 server over TLS: the same
// handler, bounds and timeouts as HTTP, each connection on a goroutine of
// its own through crypto/tls, with the certificate the Loader holds
// (reloaded on SIGHUP).
func (s *Server) listenHTTPS(addr string) (listener, error) {
	cfg := s.cert.Config()
	cfg.NextProtos = []string{"http/1.1"} // HTTP/2 is not spoken
	return s.listenLean(addr, cfg)
}

// listenLean binds trackd's own HTTP/1.1 server, over TLS if tlsConfig is
// not nil, with WebSocket upgrades (ws:// or wss://) on the same port
// when WebTorrent is served.
func (s *Server) listenLean(addr string, tlsConfig *tls.Config) (listener, error) {
	goroutinePerConn, _ := servingModel(s.store, s.cfg.UDPSockets)
	trustedProxies, _ := config.ParsePrefixes(s.cfg.TrustedProxies) // valid: checked by New
	var h httpserver.Handler = s.httpHandler
	if s.ws != nil {
		h = s.ws.Upgrade(h) // WebSocket on the same port, any path
	}
	hs, err := httpserver.Listen(addr, h, httpserver.Options{
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		MaxConns:          s.cfg.MaxConns,
		MaxConnsPerIP:     s.cfg.MaxConnsPerIP,
		TrustedProxies:    trustedProxies,
		GoroutinePerConn:  goroutinePerConn,
		TLSConfig:         tlsConfig,
		Logger:            s.log,
		Metrics:           connMetrics{s.metrics},
		Errors:            s.errs,
	})
	if err != nil {
		return nil, err
	}
	listenerName := "http"
	if tlsConfig != nil {
		listenerName = "https"
	}
	s.metrics.OpenConns(listenerName, hs.OpenConns)
	return httpListener{hs}, nil
}

// httpListener is the HTTP server, whose loops are at work once it is
// bound.
type httpListener struct{ *httpserver.Server }

func (l httpListener) serve(fail func(error)) {
	go func() {
		for err := range l.Err() {
			fail(err)
		}
	}()
}

// listenUDP binds the UDP sockets.
func (s *Server) listenUDP(addr string) (listener, error) {
	_, sockets := servingModel(s.store, s.cfg.UDPSockets)
	us, err := udpfrontend.Listen(addr, s.udpHandler, udpfrontend.ServeOptions{
		Sockets: sockets,
		Logger:  s.log,
		Errors:  s.errs,
	})
	if err != nil {
		return nil, err
	}
	return udpListener{us}, nil
}

// udpListener is the UDP sockets, whose readers are at work once they
// are bound. It shuts down at once: the readers finish the packets they
// hold, which takes no longer than the handler.
type udpListener struct{ *udpfrontend.Server }

func (udpListener) serve(func(error)) {}

func (l udpListener) Shutdown(context.Context) error { return l.Close() }

// listenAdmin binds the operator endpoint.
func (s *Server) listenAdmin(addr string) (listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler: admin.NewHandler(admin.Options{
			Metrics: s.metrics.Handler(),
			Stats:   s.stats,
			Ready:   s.health.Check,
			Pprof:   s.cfg.Pprof,
		}),
		ReadHeaderTimeout: adminReadHeaderTimeout,
	}
	return netHTTPListener{srv, ln}, nil
}

// adminReadHeaderTimeout is the admin endpoint's read_header_timeout.
const adminReadHeaderTimeout = 10 * time.Second

// netHTTPListener is a net/http Server (the admin endpoint) on its
// listener, served once every listener is bound.
type netHTTPListener struct {
	srv *http.Server
	ln  net.Listener
}

func (l netHTTPListener) Addr() net.Addr { return l.ln.Addr() }

func (l netHTTPListener) serve(fail func(error)) {
	go func() {
		if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fail(err)
		}
	}()
}

func (l netHTTPListener) Shutdown(ctx context.Context) error { return l.srv.Shutdown(ctx) }

// Close closes the listener of a server that has not served yet.
func (l netHTTPListener) Close() error { return l.ln.Close() }

// bind binds every frontend cfg turns on, in order. If one cannot be
// bound, it closes those bound before it and returns why.
func (s *Server) bind() error { return s.bindAll(s.frontends()) }

func (s *Server) bindAll(fs []frontend) error {
	for _, f := range fs {
		if f.addr == "" {
			continue
		}
		l, err := f.listen(f.addr)
		if err != nil {
			for _, b := range s.listeners {
				b.Close()
			}
			s.listeners = nil
			return fmt.Errorf("%s listener: %w", f.name, err)
		}
		s.listeners = append(s.listeners, bound{f, l})
	}
	return nil
}

// serveAll starts serving every bound listener; a failure while serving
// reaches Err.
func (s *Server) serveAll() {
	for _, b := range s.listeners {
		b.serve(func(err error) {
			select {
			case s.serveErr <- fmt.Errorf("%s: %w", b.name, err):
			default:
			}
		})
	}
}

// logListeners logs one line per listener, once it serves.
func (s *Server) logListeners() {
	for _, b := range s.listeners {
		addr := b.Addr().String()
		attrs := []any{"protocol", b.name, "addr", addr}
		if b.logAttrs != nil {
			attrs = append(attrs, b.logAttrs(addr)...)
		} else {
			attrs = append(attrs, "announce", b.name+"://"+addr+"/announce")
		}
		s.log.Info("serving", attrs...)
	}
}

// shutdownListeners stops every listener: the frontends at once, each
// waiting for its requests in flight until ctx ends, then the admin
// endpoint. The errors name their listener.
func (s *Server) shutdownListeners(ctx context.Context) error {
	errs := make([]error, len(s.listeners))
	for _, operator := range []bool{false, true} {
		done := make(chan struct{})
		n := 0
		for i, b := range s.listeners {
			if b.operator != operator {
				continue
			}
			n++
			go func() {
				if err := b.Shutdown(ctx); err != nil {
					errs[i] = fmt.Errorf("%s: %w", b.name, err)
				}
				done <- struct{}{}
			}()
		}
		for range n {
			<-done
		}
		if !operator && s.ws != nil {
			// Upgraded connections left the HTTP servers, whose Shutdown
			// does not close them: once no new one can come, they are
			// told the server is going away (1001).
			if err := s.ws.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("websocket: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// addr returns the address of the listener named name, nil if it is off.
func (s *Server) addr(name string) net.Addr {
	for _, b := range s.listeners {
		if b.name == name {
			return b.Addr()
		}
	}
	return nil
}
