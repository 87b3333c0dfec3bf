package httpserver

import (
	"net"
	"time"
)

// Taking over a connection (Response.Takeover): the reply is written,
// and the connection handed over, on a goroutine of the connection's own,
// so that neither an event loop nor Shutdown waits for it.

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

// NetConn returns the connection under c, for a taker that serves it
// by its descriptor (wsserver's event loops); Buffered's bytes come
// first.
func (c *takenConn) NetConn() net.Conn { return c.Conn }

// Buffered returns the bytes read past the request head that Read has
// not returned yet.
func (c *takenConn) Buffered() []byte { return c.buffered }
