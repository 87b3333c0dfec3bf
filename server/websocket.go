package server

import (
	"context"
	"time"

	"trackd/config"
	"trackd/fleet"
	"trackd/fleet/relay"
	"trackd/signaling"
	"trackd/wsserver"
)

// wsRegistry returns the registry of the WebSocket swarms: with sync on
// (config.Sync), a relay.Registry over the fleet's Bus, which s.relay
// keeps and background runs, so that an offer from a WebSocket peer
// connected here reaches one connected to another instance and its answer
// comes back; nil otherwise (the frontend's own signaling.Memory, this
// instance's peers alone). The relay holds the remote peers too: ws_max_peers
// bounds the fleet's peers held here, and its Totals, hence the interval
// policy and the stats, count the fleet's.
func (s *Server) wsRegistry() signaling.Registry {
	if s.sync == nil {
		return nil
	}
	// An id of its own, not the Node's: what is sent to one of them
	// directly (offers, answers, dumps) never reaches the other. Only the
	// broadcast channel is shared: the relay ignores (counts as foreign)
	// a message without its magic, and a listener of the fleet's own
	// must ignore the relay's, which begin with "wr\x01".
	self := fleet.NewInstance()
	s.relay = relay.New(s.sync.bus, relay.Options{
		Self:         self,
		PeerLifetime: s.cfg.PeerLifetime,
		MaxPeers:     s.cfg.WSMaxPeers,
		Logger:       s.log,
	})
	s.log.Info("sync: the WebTorrent swarms span the fleet", "ws_relay_instance", self.String())
	return s.relay
}

// startWS starts the WebSocket transport the HTTP and HTTPS listeners
// hand upgraded connections to, if the configuration serves WebTorrent.
func (s *Server) startWS() {
	if s.wsHandler == nil {
		return
	}
	trustedProxies, _ := config.ParsePrefixes(s.cfg.TrustedProxies) // valid: checked by New
	s.ws = wsserver.New(s.wsHandler, wsserver.Options{
		MaxMessageBytes: s.cfg.WSMaxMessageBytes,
		// A ping well before the idle timeout, so that a client that
		// answers pings is never closed as idle.
		PingInterval:   min(wsserver.DefaultPingInterval, s.cfg.WSIdleTimeout/3),
		IdleTimeout:    s.cfg.WSIdleTimeout,
		MaxConns:       noBoundIfZero(s.cfg.WSMaxConns),
		MaxConnsPerIP:  noBoundIfZero(s.cfg.WSMaxConnsPerIP),
		TrustedProxies: trustedProxies,
		Metrics:        wsConnMetrics{s.metrics},
		Logger:         s.log,
	})
	s.metrics.WSConns(s.ws.OpenConns)
}

// noBoundIfZero turns the configuration's "0: no bound" into wsserver's
// (negative; its zero means the default).
func noBoundIfZero(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// wsExpiry is how often the WebSocket swarms drop the peers that stopped
// announcing (peers past their lifetime are never picked or routed to
// even before that).
const wsExpiry = 30 * time.Second

// expireWS drops expired WebSocket peers every wsExpiry until ctx ends.
func (s *Server) expireWS(ctx context.Context) {
	t := time.NewTicker(wsExpiry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.wsHandler.Expire()
		}
	}
}
