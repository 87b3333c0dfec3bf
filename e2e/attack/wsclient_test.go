package attack

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

// A WebSocket client written frame by frame (gobwas/ws's codec), so that
// the attacks can send what no library would and read the server's close
// codes.

// wsClient is one WebSocket connection to trackd.
type wsClient struct {
	c   net.Conn
	r   io.Reader // c, through the handshake's buffered reader if it kept bytes
	wmu sync.Mutex
}

// dialWS opens a WebSocket connection to ws://addr/announce from the
// loopback address src. control, if not nil, sets socket options before
// the connect.
func dialWS(src, addr string, timeout time.Duration, control func(fd uintptr)) (*wsClient, error) {
	return wsTarget{addr: addr}.dial(src, timeout, control, nil)
}

// wsTarget is where a WebSocket client connects: ws:// on the HTTP
// listener, or wss:// on the HTTPS listener when tls is set.
type wsTarget struct {
	addr string
	tls  *tls.Config
}

func (tg wsTarget) String() string {
	if tg.tls != nil {
		return "wss://" + tg.addr
	}
	return "ws://" + tg.addr
}

// dial opens a WebSocket connection to tg from the loopback address src;
// control, if not nil, sets socket options before the connect; header is
// added to the handshake's request.
func (tg wsTarget) dial(src string, timeout time.Duration, control func(fd uintptr), header http.Header) (*wsClient, error) {
	nd := loopbackDialer(src, timeout)
	if control != nil {
		nd.Control = func(_, _ string, rc syscall.RawConn) error { return rc.Control(control) }
	}
	d := ws.Dialer{Timeout: timeout, NetDial: nd.DialContext, TLSConfig: tg.tls}
	if header != nil {
		d.Header = ws.HandshakeHeaderHTTP(header)
	}
	c, br, _, err := d.Dial(context.Background(), tg.String()+"/announce")
	if err != nil {
		return nil, err
	}
	w := &wsClient{c: c, r: c}
	if br != nil { // the server's first frames came with its 101
		w.r = br
	}
	return w, nil
}

// smallWindow makes a socket whose peer can send it little before it
// reads: a small receive buffer and a small MSS (which keeps the server's
// send buffer small too), as a client that never reads can choose.
func smallWindow(fd uintptr) {
	syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 536)
}

// writeFrame writes one masked frame of op with payload p (not changed)
// in one write.
func (w *wsClient) writeFrame(op ws.OpCode, p []byte) error {
	f := ws.MaskFrameInPlace(ws.NewFrame(op, true, append([]byte(nil), p...)))
	b, err := ws.CompileFrame(f)
	if err != nil {
		return err
	}
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.c.SetWriteDeadline(time.Now().Add(probeTimeout))
	_, err = w.c.Write(b)
	return err
}

// send writes v as one JSON text message.
func (w *wsClient) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return w.writeFrame(ws.OpText, b)
}

// closedError is the server's close frame.
type closedError struct {
	code   ws.StatusCode
	reason string
}

func (e *closedError) Error() string {
	return fmt.Sprintf("closed by trackd: %d %q", e.code, e.reason)
}

// closeCode is the server's close code in err (0 for a close frame
// without one), or -1 when err is not a close frame.
func closeCode(err error) int {
	var ce *closedError
	if errors.As(err, &ce) {
		return int(ce.code)
	}
	return -1
}

// next returns the next text message, answering pings with pongs, until
// deadline. A close frame is returned as a *closedError.
func (w *wsClient) next(deadline time.Time) ([]byte, error) {
	w.c.SetReadDeadline(deadline)
	for {
		h, err := ws.ReadHeader(w.r)
		if err != nil {
			return nil, err
		}
		if h.Length > 1<<20 {
			return nil, fmt.Errorf("frame of %d bytes from trackd", h.Length)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(w.r, p); err != nil {
			return nil, err
		}
		if h.Masked {
			return nil, fmt.Errorf("masked frame from trackd")
		}
		switch h.OpCode {
		case ws.OpPing:
			if err := w.writeFrame(ws.OpPong, p); err != nil {
				return nil, err
			}
		case ws.OpPong:
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(p)
			return nil, &closedError{code, reason}
		case ws.OpText:
			if !h.Fin {
				return nil, fmt.Errorf("fragmented message from trackd")
			}
			return p, nil
		default:
			return nil, fmt.Errorf("frame with opcode %d from trackd", h.OpCode)
		}
	}
}

// nextJSON is next, decoded.
func (w *wsClient) nextJSON(deadline time.Time) (map[string]any, error) {
	b, err := w.next(deadline)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("not JSON: %q", truncate(b))
	}
	return m, nil
}

// closeCodeWithin reads w until the server closes it, at most until
// deadline: the close frame's code (0 without one), -1 for an end of
// stream without a close frame, or an error if w is still open (or the
// read failed otherwise).
func (w *wsClient) closeCodeWithin(deadline time.Time) (int, error) {
	for {
		_, err := w.next(deadline)
		if err == nil {
			continue
		}
		if c := closeCode(err); c >= 0 {
			return c, nil
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
			return -1, nil
		}
		return 0, err
	}
}

// wsAnnounce is an announce message; offers, if any, are n offers of sdp
// with ids made from offerPrefix.
func wsAnnounce(infoHash, peerID string, left int, numWant int, event string, n int, offerPrefix, sdp string) map[string]any {
	m := map[string]any{"action": "announce", "info_hash": infoHash, "peer_id": peerID,
		"numwant": numWant, "uploaded": 0, "downloaded": 0, "left": left}
	if event != "" {
		m["event"] = event
	}
	if n > 0 {
		offers := make([]any, n)
		for i := range offers {
			offers[i] = map[string]any{"offer_id": wsID(fmt.Sprintf("%s%d", offerPrefix, i)),
				"offer": map[string]any{"type": "offer", "sdp": sdp}}
		}
		m["offers"] = offers
	}
	return m
}

// wsID is s cut or padded with '-' to a 20-byte (ASCII) binary string.
func wsID(s string) string {
	if len(s) >= 20 {
		return s[len(s)-20:]
	}
	return s + strings.Repeat("-", 20-len(s))
}

// rawDial opens a TCP connection to tg from src, and completes the TLS
// handshake for wss://.
func (tg wsTarget) rawDial(src string, timeout time.Duration) (net.Conn, error) {
	c, err := loopbackDialer(src, timeout).Dial("tcp", tg.addr)
	if err != nil || tg.tls == nil {
		return c, err
	}
	cfg := tg.tls.Clone()
	cfg.ServerName, _, _ = net.SplitHostPort(tg.addr)
	tc := tls.Client(c, cfg)
	c.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return tc, nil
}

// handshake completes a WebSocket handshake by hand on c and reads the
// 101 reply: what a raw client does before it goes silent.
func handshake(c net.Conn, addr string, timeout time.Duration) (*bufio.Reader, error) {
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(c, "GET /announce HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr); err != nil {
		return nil, err
	}
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(status, "HTTP/1.1 101 ") {
		return nil, fmt.Errorf("handshake: %q", status)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if line == "\r\n" {
			return br, nil
		}
	}
}
