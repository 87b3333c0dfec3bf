// Package wsserver is the contract between trackd's WebSocket transport
// and what speaks over it: a Handler opens a Session for each connection
// and gets its text messages one at a time; it answers (and relays to
// other connections) through Conn.Send, which never blocks.
//
// The transport (upgrade, framing, ping/pong, timeouts, bounded write
// queues) serves connections that httpserver hands over after a
// WebSocket upgrade (httpserver.Response.Takeover), over plain TCP
// (ws://) or TLS (wss://): see Server and Server.Upgrade.
//
// What it accepts of RFC 6455, for a protocol of JSON text messages:
//   - Client frames must be masked; reserved bits (no extension is
//     agreed) and reserved opcodes, a fragmented or longer than 125
//     bytes control frame, a continuation without a message to continue,
//     and a length not in its shortest form close the connection with
//     1002 (protocol error).
//   - Text messages, in one frame or fragmented, up to
//     Options.MaxMessageBytes (else 1009, message too big). A text
//     message must be UTF-8 (else 1007, as the RFC says): WebTorrent's
//     "binary strings" (each byte a character U+0000-U+00FF, JSON-escaped
//     or not) are valid UTF-8, so this refuses nothing a client sends
//     that JSON.stringify could make.
//   - Binary messages are refused with 1003 (unsupported data): the
//     protocol is JSON text, and browsers send strings as text frames.
//   - A ping is answered with a pong carrying its payload; a pong, like
//     any frame, counts as a sign of life (Options.IdleTimeout). The
//     client's close frame is answered with its status code, a close
//     with an invalid code or reason with 1002 or 1007.
//   - The server's own closes: Conn.Close 1000, Shutdown 1001 (going
//     away), a message not whole within Options.MessageTimeout 1008
//     (policy violation), a connection evicted for a new one at
//     MaxConns or MaxConnsPerIP 1013 (try again later), and a new one
//     with no connection to evict 1013, right after its handshake. A
//     connection whose write queue overflows (Options.MaxQueueBytes) is
//     shut down without a close frame: its client does not read.
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
