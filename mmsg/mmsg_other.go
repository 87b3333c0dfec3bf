//go:build !linux

package mmsg

import (
	"errors"
	"net"
	"net/netip"
	"os"
)

// slotExtra: ReadFromUDPAddrPort does not tell a datagram was cut, so a
// read buffer has one byte more than bufSize: a datagram that fills it
// was longer than bufSize.
const slotExtra = 1

// sys is the portable part of a Conn: one datagram per system call.
type sys struct {
	rlen  int
	rfrom netip.AddrPort

	wdata [][]byte
	wto   []netip.AddrPort
}

func (c *Conn) init() error {
	c.wdata = make([][]byte, c.batch)
	c.wto = make([]netip.AddrPort, c.batch)
	return nil
}

// take: a Conn made by Take is one made by New here.
func (c *Conn) take() error { return nil }

func (c *Conn) close() error { return c.c.Close() }

func (c *Conn) control(f func(fd uintptr)) error {
	rc, err := c.c.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(f)
}

func (c *Conn) read() (int, error) {
	n, from, err := c.c.ReadFromUDPAddrPort(c.bufs[:c.slot])
	if err != nil {
		return 0, err
	}
	c.rlen, c.rfrom = n, from
	return 1, nil
}

func (c *Conn) message(i int) ([]byte, netip.AddrPort) {
	l := min(c.rlen, c.bufSize)
	return c.bufs[:l:l], c.rfrom
}

func (c *Conn) truncated(i int) bool { return c.rlen > c.bufSize }

func (c *Conn) queue(i int, data []byte, to netip.AddrPort) {
	c.wdata[i], c.wto[i] = data, to
}

func (c *Conn) flush() (int, error) {
	sent := 0
	var first, stop error
	for i := range c.q {
		if stop != nil {
			c.errs[i] = stop
			continue
		}
		var err error
		if c.wto[i].IsValid() {
			_, err = c.c.WriteToUDPAddrPort(c.wdata[i], c.wto[i])
		} else {
			_, err = c.c.Write(c.wdata[i])
		}
		c.errs[i] = err
		switch {
		case err == nil:
			sent++
		case errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded):
			stop = err
		case first == nil:
			first = err
		}
	}
	clear(c.wdata[:c.q])
	if stop != nil {
		return sent, stop
	}
	return sent, first
}

func wrapSendErr(err error) error { return err }
