package loadgen

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"unicode/utf8"
)

// A small RFC 6455 implementation, enough for the generator (client side)
// and the canned server (server side): text messages, fragmentation,
// ping/pong, close. No extensions are offered or accepted. It is written
// here rather than taken from a library so that a connection costs one
// goroutine with its buffers and nothing else, and so that framing is
// never the generator's bottleneck (see the canned WebSocket server).

// WebSocket opcodes.
const (
	wsOpCont   = 0x0
	wsOpText   = 0x1
	wsOpBinary = 0x2
	wsOpClose  = 0x8
	wsOpPing   = 0x9
	wsOpPong   = 0xA
)

// wsGUID is the key suffix of the handshake (RFC 6455 section 1.3).
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// wsAccept returns the Sec-WebSocket-Accept value for a key.
func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// errWSClosed is returned once a close frame was received.
var errWSClosed = errors.New("connection closed by the peer (close frame)")

// wsCloseError carries the status of a close frame.
type wsCloseError struct {
	code   int
	reason string
}

func (e *wsCloseError) Error() string {
	if e.reason != "" {
		return fmt.Sprintf("closed by the peer: %d %s", e.code, e.reason)
	}
	return fmt.Sprintf("closed by the peer: %d", e.code)
}

func (e *wsCloseError) Unwrap() error { return errWSClosed }

// wsEndpoint frames messages over a connection. client is true on the
// generator's side: it masks what it sends and refuses masked frames; the
// server side the reverse. It is not safe for concurrent use.
type wsEndpoint struct {
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	client bool
	max    int    // largest message accepted
	msg    []byte // the message being read
	rd     wsReadState
	ctl    [125]byte
	rng    rng
	out    []byte // frame being built by writeMsg
}

// appendFrameHeader appends the header of a final frame of op with n bytes
// of payload; with mask, the 4-byte key follows it.
func appendFrameHeader(b []byte, op byte, n int, mask bool, key uint32) []byte {
	b = append(b, 0x80|op)
	mb := byte(0)
	if mask {
		mb = 0x80
	}
	switch {
	case n < 126:
		b = append(b, mb|byte(n))
	case n <= 0xFFFF:
		b = append(b, mb|126, byte(n>>8), byte(n))
	default:
		b = append(b, mb|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if mask {
		b = binary.BigEndian.AppendUint32(b, key)
	}
	return b
}

// maskBytes XORs b with the key, starting at key byte pos; it returns the
// next position.
func maskBytes(b []byte, key uint32, pos int) int {
	var k [4]byte
	binary.BigEndian.PutUint32(k[:], key)
	i := 0
	if pos&3 == 0 && len(b) >= 8 {
		k8 := uint64(binary.LittleEndian.Uint32(k[:]))
		k8 |= k8 << 32
		for ; i+8 <= len(b); i += 8 {
			binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^k8)
		}
	}
	for ; i < len(b); i++ {
		b[i] ^= k[(pos+i)&3]
	}
	return (pos + len(b)) & 3
}

// writeFrame queues one frame of op with payload p (copied, and masked on
// the client side) in the buffered writer.
func (e *wsEndpoint) writeFrame(op byte, p []byte) error {
	key := uint32(0)
	if e.client {
		key = uint32(e.rng.next())
	}
	e.out = appendFrameHeader(e.out[:0], op, len(p), e.client, key)
	hdr := len(e.out)
	e.out = append(e.out, p...)
	if e.client {
		maskBytes(e.out[hdr:], key, 0)
	}
	// Only whole frames wait in the buffer: a frame that does not fit goes
	// after a flush. Otherwise a frame's head could be sent and its tail
	// held back while this side waits to read, and the peer, holding its
	// own replies until it has read the whole frame, would wait too.
	if len(e.out) > e.bw.Available() && e.bw.Buffered() > 0 {
		if err := e.bw.Flush(); err != nil {
			return err
		}
	}
	_, err := e.bw.Write(e.out)
	return err
}

// writeText queues one text message.
func (e *wsEndpoint) writeText(p []byte) error { return e.writeFrame(wsOpText, p) }

// flush sends what is queued.
func (e *wsEndpoint) flush() error { return e.bw.Flush() }

// readMessage returns the next text message; it answers pings (queued
// and flushed), ignores pongs, and returns a *wsCloseError after a close
// frame (answered). The message is valid until the next call.
//
// It can be resumed: when a read fails with a timeout (the callers poll
// with short read deadlines) in the middle of a frame, what was read is
// kept, and the next call goes on from there.
func (e *wsEndpoint) readMessage() ([]byte, error) {
	if e.rd.done {
		e.msg = e.msg[:0]
		e.rd = wsReadState{}
	}
	r := &e.rd
	for {
		// The header: 2 bytes, then the extended length and the mask key.
		for r.hn < 2 || r.hn < r.need {
			want := max(2, r.need)
			n, err := e.br.Read(r.hdr[r.hn:want])
			r.hn += n
			if err != nil && r.hn < want {
				return nil, err
			}
			if r.hn >= 2 && r.need == 0 {
				r.need = 2
				switch r.hdr[1] & 0x7F {
				case 126:
					r.need += 2
				case 127:
					r.need += 8
				}
				if r.hdr[1]&0x80 != 0 {
					r.need += 4
				}
				if err := e.parseHeader(); err != nil {
					return nil, err
				}
			}
		}
		if !r.parsed {
			if err := e.parseLength(); err != nil {
				return nil, err
			}
		}
		// The payload.
		for r.got < r.n {
			var dst []byte
			if r.op >= wsOpClose {
				dst = e.ctl[r.got:r.n]
			} else {
				dst = e.msg[r.start+r.got : r.start+r.n]
			}
			n, err := e.br.Read(dst)
			r.got += n
			if err != nil && r.got < r.n {
				return nil, err
			}
		}
		fin, op := r.hdr[0]&0x80 != 0, r.op
		var p []byte
		if op >= wsOpClose {
			p = e.ctl[:r.n]
		} else {
			p = e.msg[r.start : r.start+r.n]
		}
		if r.masked {
			maskBytes(p, r.key, 0)
		}
		// The next frame.
		r.hn, r.need, r.got, r.parsed = 0, 0, 0, false
		switch op {
		case wsOpPing:
			if err := e.writeFrame(wsOpPong, p); err != nil {
				return nil, err
			}
			if err := e.flush(); err != nil {
				return nil, err
			}
			continue
		case wsOpPong:
			continue
		case wsOpClose:
			ce := &wsCloseError{code: 1005}
			if len(p) >= 2 {
				ce.code = int(binary.BigEndian.Uint16(p))
				ce.reason = string(p[2:])
			}
			var st [2]byte
			binary.BigEndian.PutUint16(st[:], 1000)
			e.writeFrame(wsOpClose, st[:])
			e.flush()
			r.done = true
			return nil, ce
		}
		if fin {
			r.done = true
			if !utf8.Valid(e.msg) {
				return nil, errors.New("text message is not UTF-8")
			}
			return e.msg, nil
		}
	}
}

// wsReadState is how far readMessage got.
type wsReadState struct {
	hdr    [14]byte
	hn     int  // header bytes read
	need   int  // header bytes needed, once the first two are in
	parsed bool // the header is parsed: op, n, key, start
	op     byte
	masked bool
	key    uint32
	n      int // payload bytes of the frame
	got    int // payload bytes read
	start  int // where the frame's payload goes in msg
	inMsg  bool
	done   bool // a message was returned: start the next one afresh
}

// parseHeader checks the first two bytes of a frame.
func (e *wsEndpoint) parseHeader() error {
	r := &e.rd
	h := r.hdr
	if h[0]&0x70 != 0 {
		return errors.New("frame with reserved bits set (no extension was agreed)")
	}
	r.masked = h[1]&0x80 != 0
	if r.masked == e.client {
		if e.client {
			return errors.New("masked frame from the server")
		}
		return errors.New("unmasked frame from the client")
	}
	op := h[0] & 0x0F
	fin := h[0]&0x80 != 0
	if op >= wsOpClose {
		if !fin || h[1]&0x7F > 125 {
			return errors.New("bad control frame")
		}
		if op != wsOpClose && op != wsOpPing && op != wsOpPong {
			return fmt.Errorf("unknown control opcode %#x", op)
		}
		return nil
	}
	switch {
	case op == wsOpBinary:
		return errors.New("binary message (the protocol uses text)")
	case op == wsOpText && r.inMsg, op == wsOpCont && !r.inMsg:
		return errors.New("bad fragmentation")
	case op != wsOpText && op != wsOpCont:
		return fmt.Errorf("unknown opcode %#x", op)
	}
	return nil
}

// parseLength reads the whole header's length and key, and makes room for
// the payload.
func (e *wsEndpoint) parseLength() error {
	r := &e.rd
	h := r.hdr[:r.need]
	r.op = h[0] & 0x0F
	n := uint64(h[1] & 0x7F)
	i := 2
	switch n {
	case 126:
		n = uint64(binary.BigEndian.Uint16(h[2:]))
		i = 4
	case 127:
		n = binary.BigEndian.Uint64(h[2:])
		i = 10
	}
	if r.masked {
		r.key = binary.BigEndian.Uint32(h[i:])
	}
	r.parsed = true
	if r.op >= wsOpClose {
		r.n = int(n)
		return nil
	}
	if n > uint64(e.max-len(e.msg)) {
		return fmt.Errorf("message over %d bytes", e.max)
	}
	r.inMsg = true
	r.n = int(n)
	r.start = len(e.msg)
	e.msg = append(e.msg, make([]byte, n)...)
	return nil
}

// wsClientHandshake sends the upgrade request for path on host and checks
// the reply; the key is derived from r.
func wsClientHandshake(conn net.Conn, br *bufio.Reader, bw *bufio.Writer, host, path string, r *rng) error {
	var k [16]byte
	binary.LittleEndian.PutUint64(k[:8], r.next())
	binary.LittleEndian.PutUint64(k[8:], r.next())
	key := base64.StdEncoding.EncodeToString(k[:])
	fmt.Fprintf(bw, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, host, key)
	if err := bw.Flush(); err != nil {
		return err
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return errors.New("handshake: " + errMsg(err))
	}
	f := strings.Fields(string(line))
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/1.") {
		return errors.New("handshake: not an HTTP reply")
	}
	if f[1] != "101" {
		return fmt.Errorf("handshake: HTTP status %s", f[1])
	}
	var accept string
	upgrade := false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return errors.New("handshake: " + errMsg(err))
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return errors.New("handshake: bad header line")
		}
		value = bytes.TrimSpace(value)
		switch strings.ToLower(string(name)) {
		case "sec-websocket-accept":
			accept = string(value)
		case "upgrade":
			upgrade = strings.EqualFold(string(value), "websocket")
		case "sec-websocket-extensions":
			return errors.New("handshake: the server chose an extension that was not offered")
		}
	}
	if !upgrade {
		return errors.New("handshake: no Upgrade: websocket")
	}
	if accept != wsAccept(key) {
		return errors.New("handshake: wrong Sec-WebSocket-Accept")
	}
	return nil
}

// wsServerHandshake reads an upgrade request and answers 101, or 400 and
// an error.
func wsServerHandshake(br *bufio.Reader, bw *bufio.Writer) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("GET ")) {
		return errors.New("not a GET")
	}
	var key string
	for n := 0; ; n++ {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if n > 100 {
			return errors.New("too many header lines")
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && strings.EqualFold(string(name), "sec-websocket-key") {
			key = string(bytes.TrimSpace(value))
		}
	}
	if key == "" {
		bw.WriteString("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		bw.Flush()
		return errors.New("no Sec-WebSocket-Key")
	}
	bw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ")
	bw.WriteString(wsAccept(key))
	bw.WriteString("\r\n\r\n")
	return bw.Flush()
}
