package wsserver

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"trackd/httpserver"
)

// The opening handshake (RFC 6455 §4.2): a GET with "Upgrade: websocket",
// "Connection: upgrade", "Sec-WebSocket-Version: 13" and a
// Sec-WebSocket-Key of 16 bytes in base64, answered with 101 Switching
// Protocols and the key's Sec-WebSocket-Accept. No subprotocol and no
// extension (permessage-deflate) is agreed: the transport speaks plain
// frames, whatever the client offers.

// handshakeGUID is RFC 6455's constant, appended to the key.
const handshakeGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// upgradeError is why an upgrade request is refused: the HTTP status and
// a text for the body.
type upgradeError struct {
	status int
	text   string
}

var (
	errUpgradeMethod     = &upgradeError{http.StatusBadRequest, "WebSocket upgrade: not a GET request"}
	errUpgradeConnection = &upgradeError{http.StatusBadRequest, "WebSocket upgrade: Connection has no \"upgrade\""}
	errUpgradeKey        = &upgradeError{http.StatusBadRequest, "WebSocket upgrade: missing or invalid Sec-WebSocket-Key"}
	errUpgradeVersion    = &upgradeError{http.StatusUpgradeRequired, "WebSocket upgrade: Sec-WebSocket-Version must be 13"}
	errUpgradeClosed     = &upgradeError{http.StatusServiceUnavailable, "WebSocket upgrade: the server is shutting down"}
)

// hasToken reports whether the comma-separated list v holds token,
// compared without regard to ASCII case.
func hasToken(v, token string) bool {
	for v != "" {
		var t string
		t, v, _ = strings.Cut(v, ",")
		if strings.EqualFold(strings.TrimSpace(t), token) {
			return true
		}
	}
	return false
}

// checkHandshake checks an upgrade request (one with "Upgrade:
// websocket") and returns its Sec-WebSocket-Accept.
func checkHandshake(method string, connection []string, version, key string) (string, *upgradeError) {
	if method != http.MethodGet {
		return "", errUpgradeMethod
	}
	upgrade := false
	for _, v := range connection {
		if hasToken(v, "upgrade") {
			upgrade = true
			break
		}
	}
	if !upgrade {
		return "", errUpgradeConnection
	}
	if strings.TrimSpace(version) != "13" {
		return "", errUpgradeVersion
	}
	key = strings.TrimSpace(key)
	var raw [18]byte
	if len(key) != 24 {
		return "", errUpgradeKey
	}
	if n, err := base64.StdEncoding.Decode(raw[:], []byte(key)); err != nil || n != 16 {
		return "", errUpgradeKey
	}
	return acceptKey(key), nil
}

// acceptKey is the Sec-WebSocket-Accept of a Sec-WebSocket-Key.
func acceptKey(key string) string {
	var b [24 + len(handshakeGUID)]byte
	n := copy(b[:], key)
	n += copy(b[n:], handshakeGUID)
	sum := sha1.Sum(b[:n])
	return base64.StdEncoding.EncodeToString(sum[:])
}

// Upgrade returns a handler for httpserver (ws:// on trackd's HTTP port,
// on any path) that takes WebSocket upgrade requests, those with
// "Upgrade: websocket", and passes every other request to next. A valid
// upgrade is answered with 101 Switching Protocols and the connection
// taken over (httpserver.Response.Takeover: it leaves httpserver's
// MaxConns and MaxConnsPerIP for this Server's own); an invalid one gets
// 400, or 426 with "Sec-WebSocket-Version: 13" for another version, and
// one while the Server shuts down 503.
func (s *Server) Upgrade(next httpserver.Handler) httpserver.Handler {
	return httpserver.HandlerFunc(func(ctx context.Context, w *httpserver.Response, r *httpserver.Request) {
		if !hasToken(r.Header("Upgrade"), "websocket") {
			next.Respond(ctx, w, r)
			return
		}
		var conn [4]string
		accept, uerr := checkHandshake(r.Method, r.AppendValues(conn[:0], "Connection"),
			r.Header("Sec-WebSocket-Version"), r.Header("Sec-WebSocket-Key"))
		if uerr == nil && s.closing.Load() {
			uerr = errUpgradeClosed
		}
		if uerr != nil {
			w.Status = uerr.status
			if uerr == errUpgradeVersion {
				w.AddHeader("Sec-WebSocket-Version", "13")
			}
			w.Body = append(w.Body, uerr.text...)
			return
		}
		var xff [4]string
		remote := s.clientAddr(r.Remote, r.Header("X-Real-IP"), r.AppendValues(xff[:0], "X-Forwarded-For"))
		w.Status = http.StatusSwitchingProtocols
		w.AddHeader("Upgrade", "websocket")
		w.AddHeader("Connection", "Upgrade")
		w.AddHeader("Sec-WebSocket-Accept", accept)
		w.Takeover = func(c net.Conn) {
			var rest []byte
			if b, ok := c.(interface {
				Buffered() []byte
				NetConn() net.Conn
			}); ok {
				rest = b.Buffered()
				c = b.NetConn()
			}
			s.serve(c, rest, remote)
		}
	})
}

// clientAddr is the address a connection is counted and known by: its
// peer's, or, when the peer is in Options.TrustedProxies, the one the
// proxy names: X-Real-IP, else the last X-Forwarded-For entry that is
// not itself a trusted proxy (its port is then 0).
func (s *Server) clientAddr(peer netip.AddrPort, realIP string, xff []string) netip.AddrPort {
	if len(s.opts.TrustedProxies) == 0 || !s.trusted(peer.Addr()) {
		return peer
	}
	if a, err := netip.ParseAddr(strings.TrimSpace(realIP)); err == nil {
		return netip.AddrPortFrom(a.Unmap(), 0)
	}
	for i := len(xff) - 1; i >= 0; i-- {
		v := xff[i]
		for v != "" {
			var t string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				t, v = v[j+1:], v[:j]
			} else {
				t, v = v, ""
			}
			a, err := netip.ParseAddr(strings.TrimSpace(t))
			if err != nil {
				return peer
			}
			if !s.trusted(a) {
				return netip.AddrPortFrom(a.Unmap(), 0)
			}
		}
	}
	return peer
}

func (s *Server) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.opts.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
