// Package wsserver is the contract between trackd's WebSocket transport
// and what speaks over it: a Handler opens a Session for each connection
// and gets its text messages one at a time; it answers (and relays to
// other connections) through Conn.Send, which never blocks.
//
// The transport (upgrade, framing, ping/pong, timeouts, bounded write
// queues) serves connections that httpserver hands over after a
// WebSocket upgrade (httpserver.Response.Takeover), or that net/http
// hijacks (wss:// through the TLS listener).
package wsserver

import (
	"context"
	"net/netip"
)

// A Conn is an open WebSocket connection as a Handler sees it. Its methods
// are safe for concurrent use: a Session relays to other connections'
// Conns from its own goroutine.
type Conn interface {
	// Send queues msg as one text message; msg is copied, so the caller
	// may reuse it. Send never blocks: it reports false if the message
	// was not queued, because the connection is closed or its write
	// queue is full; a connection whose queue is full is closed, so that
	// a client that does not read cannot hold the others' relays.
	Send(msg []byte) bool
	// Close closes the connection; the Session's Closed follows.
	Close()
	// RemoteAddr is the client's address: the connection's peer, or the
	// address a trusted proxy gave in the upgrade request.
	RemoteAddr() netip.AddrPort
}

// A Handler opens a Session for each connection once its handshake is
// done.
type Handler interface {
	Open(c Conn) Session
}

// A Session receives one connection's messages, one at a time and never
// concurrently, in the order they came.
type Session interface {
	// Message handles one whole text message. msg belongs to the
	// transport and is valid only during the call. Message must not
	// block: it answers through Conn.Send.
	Message(ctx context.Context, msg []byte)
	// Closed is called once, when the connection is gone (closed by
	// either side, or timed out); no Message follows it.
	Closed()
}
