package loadgen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"trackd/bencode"
	"trackd/httpserver"
	"trackd/mmsg"
)

// The canned server's fixed answers.
const (
	cannedConnID   = 0x74726b64636e6e64 // "trkdcnnd"
	cannedPeers    = 30                 // most peers in a reply
	cannedInterval = 1800
	cannedSeeders  = 20
	cannedLeechers = 10
	cannedDone     = 100
)

// Canned is a stateless tracker that answers every connect, announce and
// scrape with a valid fixed reply, as cheaply as it can: UDP with the same
// batched I/O as the generator (one SO_REUSEPORT socket per CPU), HTTP
// on trackd's own lean server (httpserver: epoll loops, keep-alive and
// pipelining, or close when asked). Loading it measures the generator's
// own ceiling, and what trackd's transports cost without a tracker behind
// them.
type Canned struct {
	udp  []*mmsg.Conn // by mmsg.Take, as trackd's UDP sockets
	addr net.Addr     // of the UDP sockets; nil if none
	http *httpserver.Server

	wg      sync.WaitGroup
	bodies  [cannedPeers + 1][]byte // announce reply with n peers
	udpPeer [cannedPeers * 18]byte
}

// StartCanned starts a canned server on the given addresses ("" for
// none). Like the generator's targets, they must be loopback addresses
// unless allowRemote is set.
func StartCanned(udpAddr, httpAddr string, allowRemote bool) (*Canned, error) {
	if udpAddr == "" && httpAddr == "" {
		return nil, errors.New("give -udp and/or -http addresses to listen on")
	}
	c := &Canned{}
	for i := range cannedPeers {
		// 127.1.0.x:6881+x, repeated for IPv6 as ::ffff:127.1.0.x.
		copy(c.udpPeer[6*i:], []byte{127, 1, 0, byte(i + 1), byte((6881 + i) >> 8), byte(6881 + i)})
	}
	for n := range c.bodies {
		b := append([]byte(nil), 'd')
		b = bencode.AppendString(b, "complete")
		b = bencode.AppendInt(b, cannedSeeders)
		b = bencode.AppendString(b, "incomplete")
		b = bencode.AppendInt(b, cannedLeechers)
		b = bencode.AppendString(b, "interval")
		b = bencode.AppendInt(b, cannedInterval)
		b = bencode.AppendString(b, "min interval")
		b = bencode.AppendInt(b, cannedInterval/2)
		b = bencode.AppendString(b, "peers")
		b = bencode.AppendBytes(b, c.udpPeer[:6*n])
		c.bodies[n] = append(b, 'e')
	}
	if udpAddr != "" {
		t, err := resolveTarget("udp", udpAddr, allowRemote)
		if err != nil {
			return nil, err
		}
		if err := c.listenUDP(t); err != nil {
			c.Close()
			return nil, err
		}
	}
	if httpAddr != "" {
		t, err := resolveTarget("http", httpAddr, allowRemote)
		if err != nil {
			c.Close()
			return nil, err
		}
		hs, err := httpserver.Listen(t.addr.String(), c, httpserver.Options{
			ReadHeaderTimeout: time.Minute, IdleTimeout: time.Minute, WriteTimeout: time.Minute,
		})
		if err != nil {
			c.Close()
			return nil, err
		}
		c.http = hs
	}
	return c, nil
}

func (c *Canned) listenUDP(t target) error {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		if cerr := rc.Control(func(fd uintptr) { err = setReusePort(fd) }); cerr != nil {
			return cerr
		}
		return err
	}}
	addr := t.addr.String()
	for i := range runtime.GOMAXPROCS(0) {
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			if i > 0 {
				break // no SO_REUSEPORT here: one socket will do
			}
			// Try again without SO_REUSEPORT.
			if pc, err = net.ListenPacket("udp", addr); err != nil {
				return err
			}
		}
		conn := pc.(*net.UDPConn)
		conn.SetReadBuffer(4 << 20)
		conn.SetWriteBuffer(4 << 20)
		c.addr = conn.LocalAddr()
		addr = c.addr.String() // the same port for the next ones
		// The same I/O as trackd's UDP frontend, so that the ceiling
		// is the transport's, not a slower one's.
		mc, err := mmsg.Take(conn, cannedBatch, 2048)
		if err != nil {
			conn.Close()
			return err
		}
		c.udp = append(c.udp, mc)
		peerSize := 6
		if t.addr.Addr().Is6() {
			peerSize = 18
		}
		c.wg.Go(func() { c.serveUDP(mc, peerSize) })
	}
	return nil
}

// UDPAddr returns the UDP address served, or nil.
func (c *Canned) UDPAddr() net.Addr {
	return c.addr
}

// HTTPAddr returns the HTTP address served, or nil.
func (c *Canned) HTTPAddr() net.Addr {
	if c.http == nil {
		return nil
	}
	return c.http.Addr()
}

// Close stops the server and waits for its goroutines.
func (c *Canned) Close() error {
	for _, u := range c.udp {
		u.Close()
	}
	if c.http != nil {
		c.http.Close()
	}
	c.wg.Wait()
	return nil
}

const cannedBatch = 64

func (c *Canned) serveUDP(mc *mmsg.Conn, peerSize int) {
	out := make([][]byte, cannedBatch)
	for i := range out {
		out[i] = make([]byte, 0, 2048)
	}
	for {
		n, err := mc.Read()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		for i := range n {
			req, from := mc.Message(i)
			reply := c.udpReply(req, out[i][:0], peerSize)
			if len(reply) == 0 {
				continue
			}
			mc.Queue(reply, from)
		}
		// A datagram the kernel refuses is skipped, the rest sent.
		if _, err := mc.Flush(); errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// udpReply appends the reply to req to out. An empty result means no
// reply (too short to carry a transaction id).
func (c *Canned) udpReply(req, out []byte, peerSize int) []byte {
	if len(req) < 16 {
		return out[:0]
	}
	tx := binary.BigEndian.Uint32(req[12:])
	id := binary.BigEndian.Uint64(req[0:])
	action := binary.BigEndian.Uint32(req[8:])
	fail := func(msg string) []byte {
		out = binary.BigEndian.AppendUint32(out[:0], actionError)
		out = binary.BigEndian.AppendUint32(out, tx)
		return append(out, msg...)
	}
	if action == actionConnect {
		if id != udpProtocolID {
			return fail("bad protocol id")
		}
		out = binary.BigEndian.AppendUint32(out[:0], actionConnect)
		out = binary.BigEndian.AppendUint32(out, tx)
		return binary.BigEndian.AppendUint64(out, cannedConnID)
	}
	if id != cannedConnID {
		return fail("bad connection id")
	}
	switch action {
	case actionAnnounce:
		if len(req) < udpAnnounceLen {
			return fail("short announce")
		}
		n := int(int32(binary.BigEndian.Uint32(req[92:])))
		if n < 0 || n > cannedPeers {
			n = cannedPeers
		}
		out = binary.BigEndian.AppendUint32(out[:0], actionAnnounce)
		out = binary.BigEndian.AppendUint32(out, tx)
		out = binary.BigEndian.AppendUint32(out, cannedInterval)
		out = binary.BigEndian.AppendUint32(out, cannedLeechers)
		out = binary.BigEndian.AppendUint32(out, cannedSeeders)
		if peerSize == 6 {
			return append(out, c.udpPeer[:6*n]...)
		}
		for i := range n {
			out = append(out, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff)
			out = append(out, c.udpPeer[6*i:6*i+6]...)
		}
		return out
	case actionScrape:
		k := (len(req) - udpScrapeHdrLen) / 20
		if k < 1 || (len(req)-udpScrapeHdrLen)%20 != 0 {
			return fail("bad scrape length")
		}
		out = binary.BigEndian.AppendUint32(out[:0], actionScrape)
		out = binary.BigEndian.AppendUint32(out, tx)
		for range k {
			out = binary.BigEndian.AppendUint32(out, cannedSeeders)
			out = binary.BigEndian.AppendUint32(out, cannedDone)
			out = binary.BigEndian.AppendUint32(out, cannedLeechers)
		}
		return out
	}
	return fail("unknown action")
}

// Respond answers an HTTP request (the canned server is an
// httpserver.Handler).
func (c *Canned) Respond(_ context.Context, w *httpserver.Response, r *httpserver.Request) {
	w.Status, w.Body = c.httpReply(r.Path, r.RawQuery, w.Body)
}

// httpReply returns the status and the body, appended to body, for a
// request's path and raw query.
func (c *Canned) httpReply(path, query string, body []byte) (int, []byte) {
	switch {
	case strings.HasSuffix(path, "/announce"):
		n := cannedPeers
		forEachParam(query, func(k, v string) {
			if k == "numwant" {
				if w, ok := parseUint([]byte(v), 10); ok {
					n = int(min(w, cannedPeers))
				}
			}
		})
		return 200, append(body, c.bodies[n]...)
	case strings.HasSuffix(path, "/scrape"):
		var hashes []string
		bad := false
		forEachParam(query, func(k, v string) {
			if k != "info_hash" {
				return
			}
			h, ok := unescape([]byte(v))
			if !ok || len(h) != 20 {
				bad = true
				return
			}
			hashes = append(hashes, string(h))
		})
		b := append(body, 'd')
		if bad || len(hashes) == 0 {
			b = bencode.AppendString(b, "failure reason")
			b = bencode.AppendString(b, "give 1 or more 20-byte info_hash values")
			return 200, append(b, 'e')
		}
		slices.Sort(hashes)
		hashes = slices.Compact(hashes)
		b = bencode.AppendString(b, "files")
		b = append(b, 'd')
		for _, h := range hashes {
			b = bencode.AppendString(b, h)
			b = append(b, 'd')
			b = bencode.AppendString(b, "complete")
			b = bencode.AppendInt(b, cannedSeeders)
			b = bencode.AppendString(b, "downloaded")
			b = bencode.AppendInt(b, cannedDone)
			b = bencode.AppendString(b, "incomplete")
			b = bencode.AppendInt(b, cannedLeechers)
			b = append(b, 'e')
		}
		return 200, append(b, 'e', 'e')
	}
	return 404, append(body, "not found"...)
}

// forEachParam calls fn for each key=value of a raw query.
func forEachParam(q string, fn func(k, v string)) {
	for len(q) > 0 {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(kv, "=")
		fn(k, v)
	}
}

// unescape percent-decodes a query value ('+' is a space).
func unescape(v []byte) ([]byte, bool) {
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '%':
			if i+2 >= len(v) {
				return nil, false
			}
			hi, ok1 := unhex(v[i+1])
			lo, ok2 := unhex(v[i+2])
			if !ok1 || !ok2 {
				return nil, false
			}
			out = append(out, hi<<4|lo)
			i += 2
		case '+':
			out = append(out, ' ')
		default:
			out = append(out, v[i])
		}
	}
	return out, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= lower(c) && lower(c) <= 'f':
		return lower(c) - 'a' + 10, true
	}
	return 0, false
}

// String describes the server for a log line.
func (c *Canned) String() string {
	s := "canned tracker on"
	if a := c.UDPAddr(); a != nil {
		s += fmt.Sprintf(" udp://%s (%d sockets)", a, len(c.udp))
	}
	if a := c.HTTPAddr(); a != nil {
		s += fmt.Sprintf(" http://%s/announce", a)
	}
	return s
}
