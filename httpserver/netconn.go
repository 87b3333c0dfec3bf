package httpserver

import (
	"errors"
	"io"
	"net"
	"os"
	"time"
)

// Writing to and lingering on a net.Conn: the portable Server's
// connections, and one taken over (handOver).

// copyStream copies length bytes of a streamed body (Response.Stream) to c,
// a chunk at a time, each chunk with a write deadline of its own: a
// client that reads a long body slowly gets it, one that stops reading is
// dropped after writeTimeout. It reports whether the body was written
// whole.
func copyStream(c net.Conn, stream io.Reader, length int64, writeTimeout time.Duration) bool {
	return copyChunks(stream, length, func(p []byte) error {
		for {
			setDeadline(c.SetWriteDeadline, writeTimeout)
			n, err := c.Write(p)
			if err == nil || n == 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
				return err
			}
			// Some of it went out before the deadline: progress, and the
			// timeout starts again.
			p = p[n:]
		}
	})
}

// copyChunks reads length bytes from stream, streamChunk at a time, and
// hands each chunk to write. It reports whether all of them were written.
func copyChunks(stream io.Reader, length int64, write func([]byte) error) bool {
	buf := make([]byte, min(length, streamChunk))
	for length > 0 {
		n, _ := io.ReadFull(stream, buf[:min(int64(len(buf)), length)])
		if n == 0 {
			return false // the body ended early, or failed
		}
		if err := write(buf[:n]); err != nil {
			return false
		}
		length -= int64(n)
	}
	return true
}

// setDeadline sets a deadline t from now, or none for t = 0.
func setDeadline(set func(time.Time) error, t time.Duration) {
	if t > 0 {
		set(time.Now().Add(t))
	} else {
		set(time.Time{})
	}
}

// linger shuts down the sending side and reads until the client closes
// or LingerTime passes: see batch.linger.
func linger(c net.Conn) {
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.SetReadDeadline(time.Now().Add(LingerTime))
	var buf [512]byte
	for {
		if _, err := c.Read(buf[:]); err != nil {
			return
		}
	}
}
