package httpserver

import (
	"net"
	"time"
)

// Taking over a connection
//
// A Handler that sets Response.Takeover takes the connection over once its
// reply is written: a WebSocket handler answers an upgrade request with
// 101 Switching Protocols and speaks WebSocket from then on. The Server
// writes the reply and stops serving the connection: it reads no more
// requests from it, its timeouts no longer run, it no longer counts
// against MaxConns and MaxConnsPerIP, and neither Shutdown nor Close
// closes it. Then it calls Takeover on a goroutine of its own (never on an
// event loop) with the connection as a net.Conn, its deadlines cleared. The
// bytes the client sent after the request head, which the Server may have
// read already (a client that does not wait for the 101), are the first
// the net.Conn's Read returns.
//
// From then on the taker owns the connection, as with net/http's
// Hijacker: it must bound what the client can hold (deadlines, a count of
// its own) and close it. If the reply cannot be written (the client is
// gone, or does not read it within WriteTimeout), the Server closes the
// connection and does not call Takeover.
//
// A reply with Takeover is written as any other but for the Connection
// field, which the Server leaves to the Handler (AddHeader("Connection",
// "Upgrade")); with a 1xx or 204 status it has no Content-Type or
// Content-Length. It may not have a Stream: one is closed unread.

// handOver writes reply to c, clears its deadlines and has take take it
// over, with rest (the bytes read past the request) to be read first. It
// closes c instead if the reply cannot be written within writeTimeout.
func handOver(c net.Conn, reply, rest []byte, writeTimeout time.Duration, take func(net.Conn)) {
	if len(reply) > 0 {
		setDeadline(c.SetWriteDeadline, writeTimeout)
		if _, err := c.Write(reply); err != nil {
			c.Close()
			return
		}
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		c.Close()
		return
	}
	if len(rest) > 0 {
		c = &takenConn{Conn: c, buffered: rest}
	}
	take(c)
}

// takenConn is a connection taken over with bytes already read from it:
// Read returns them first.
type takenConn struct {
	net.Conn
	buffered []byte
}

func (c *takenConn) Read(p []byte) (int, error) {
	if len(c.buffered) == 0 {
		return c.Conn.Read(p)
	}
	n := copy(p, c.buffered)
	c.buffered = c.buffered[n:]
	return n, nil
}

// CloseWrite shuts down the sending side, as *net.TCPConn's does.
func (c *takenConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
