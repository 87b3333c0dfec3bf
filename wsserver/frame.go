package wsserver

import (
	"encoding/binary"
	"time"
	"unicode/utf8"
)

// The frame codec (RFC 6455 §5), written here rather than taken from a
// library: the transport needs only a header parser over bytes already
// read (an event loop never blocks in a reader), an in-place unmask and a
// header writer, about 150 lines; the measurements that chose it over
// github.com/gobwas/ws, the one library with such a low-level API, are
// in docs/benchmarks.md ("WebSocket transport"): the same speed for the
// parse (both dominated by the unmask), no io.Reader to wrap each frame
// in, no allocation, no dependency.

// Opcodes.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Close status codes (RFC 6455 §7.4.1) the transport sends.
const (
	CloseNormal          = 1000 // Conn.Close; the echo of a close without a code
	CloseGoingAway       = 1001 // Shutdown
	CloseProtocolError   = 1002 // a frame RFC 6455 forbids
	CloseUnsupportedData = 1003 // a binary message: the protocol is text (JSON)
	CloseInvalidPayload  = 1007 // a text message that is not UTF-8
	ClosePolicyViolation = 1008 // a message not whole within MessageTimeout
	CloseMessageTooBig   = 1009 // a message over Options.MaxMessageBytes
	CloseTryAgainLater   = 1013 // a connection evicted at MaxConns or MaxConnsPerIP, or refused there
)

// maxHeader is the longest frame header: 2 bytes, a 64-bit length and a
// masking key.
const maxHeader = 14

// A frameHeader is a parsed frame header.
type frameHeader struct {
	fin    bool
	op     byte
	length int // payload length
	mask   [4]byte
	size   int // header length in bytes
}

// closeErr is why the transport closes a connection: the status code
// and reason of its close frame.
type closeErr struct {
	code   uint16
	reason string
}

var (
	errReserved      = &closeErr{CloseProtocolError, "reserved bits or opcode"}
	errUnmasked      = &closeErr{CloseProtocolError, "unmasked client frame"}
	errControl       = &closeErr{CloseProtocolError, "fragmented or long control frame"}
	errContinuation  = &closeErr{CloseProtocolError, "unexpected continuation frame"}
	errNotContinued  = &closeErr{CloseProtocolError, "new message inside a fragmented one"}
	errLength        = &closeErr{CloseProtocolError, "non-minimal or too long length"}
	errCloseFrame    = &closeErr{CloseProtocolError, "invalid close frame"}
	errTooBig        = &closeErr{CloseMessageTooBig, "message too big"}
	errSlowMessage   = &closeErr{ClosePolicyViolation, "message not complete in time"}
	errBinary        = &closeErr{CloseUnsupportedData, "binary messages are not accepted"}
	errUTF8          = &closeErr{CloseInvalidPayload, "text message is not UTF-8"}
	errGoingAway     = &closeErr{CloseGoingAway, "going away"}
	errNormal        = &closeErr{CloseNormal, ""}
	errTryAgainLater = &closeErr{CloseTryAgainLater, "too many connections"}
)

// parseHeader parses the frame header at the start of b: a client's,
// so masked. It returns size 0 and no error if b does not hold the whole
// header yet, and an error for a header RFC 6455 forbids or a payload
// longer than maxPayload.
func parseHeader(b []byte, maxPayload int) (frameHeader, *closeErr) {
	var h frameHeader
	if len(b) < 2 {
		return h, nil
	}
	b0, b1 := b[0], b[1]
	h.fin = b0&0x80 != 0
	h.op = b0 & 0x0F
	if b0&0x70 != 0 { // RSV1-3: no extension is negotiated
		return h, errReserved
	}
	switch h.op {
	case opContinuation, opText, opBinary:
	case opClose, opPing, opPong:
		if !h.fin || b1&0x7F > 125 {
			return h, errControl
		}
	default:
		return h, errReserved
	}
	if b1&0x80 == 0 {
		return h, errUnmasked
	}
	n := 2
	length := uint64(b1 & 0x7F)
	switch length {
	case 126:
		if len(b) < 4 {
			return h, nil
		}
		length = uint64(binary.BigEndian.Uint16(b[2:]))
		if length < 126 {
			return h, errLength
		}
		n = 4
	case 127:
		if len(b) < 10 {
			return h, nil
		}
		length = binary.BigEndian.Uint64(b[2:])
		if length < 1<<16 || length > 1<<63-1 {
			return h, errLength
		}
		n = 10
	}
	if length > uint64(maxPayload) {
		return h, errTooBig
	}
	if len(b) < n+4 {
		return h, nil
	}
	copy(h.mask[:], b[n:n+4])
	h.length = int(length)
	h.size = n + 4
	return h, nil
}

// unmask XORs p with the masking key, in place; p starts at the
// payload's first byte.
func unmask(p []byte, key [4]byte) {
	k32 := binary.LittleEndian.Uint32(key[:])
	k64 := uint64(k32) | uint64(k32)<<32
	// 32 bytes a round, with one bounds check: about twice as fast as 8.
	for len(p) >= 32 {
		q := p[:32:32]
		binary.LittleEndian.PutUint64(q[0:], binary.LittleEndian.Uint64(q[0:])^k64)
		binary.LittleEndian.PutUint64(q[8:], binary.LittleEndian.Uint64(q[8:])^k64)
		binary.LittleEndian.PutUint64(q[16:], binary.LittleEndian.Uint64(q[16:])^k64)
		binary.LittleEndian.PutUint64(q[24:], binary.LittleEndian.Uint64(q[24:])^k64)
		p = p[32:]
	}
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, binary.LittleEndian.Uint64(p)^k64)
		p = p[8:]
	}
	for i := range p {
		p[i] ^= key[i&3]
	}
}

// putHeader writes the header of a server frame (unmasked, final) with
// opcode op and a payload of n bytes into dst, and returns its length.
func putHeader(dst *[10]byte, op byte, n int) int {
	dst[0] = 0x80 | op
	switch {
	case n <= 125:
		dst[1] = byte(n)
		return 2
	case n <= 0xFFFF:
		dst[1] = 126
		binary.BigEndian.PutUint16(dst[2:], uint16(n))
		return 4
	}
	dst[1] = 127
	binary.BigEndian.PutUint64(dst[2:], uint64(n))
	return 10
}

// appendFrame appends a server frame with opcode op and payload p to dst.
func appendFrame(dst []byte, op byte, p []byte) []byte {
	var h [10]byte
	n := putHeader(&h, op, len(p))
	dst = append(dst, h[:n]...)
	return append(dst, p...)
}

// appendClose appends a close frame for e (nil: one without a status).
func appendClose(dst []byte, e *closeErr) []byte {
	if e == nil {
		return appendFrame(dst, opClose, nil)
	}
	var p [125]byte
	binary.BigEndian.PutUint16(p[:], e.code)
	n := 2 + copy(p[2:], e.reason)
	return appendFrame(dst, opClose, p[:n])
}

// closeReply is the close frame that answers a client's close frame
// with payload p: its status code echoed (RFC 6455 §5.5.1), or an error
// for a payload that is not a valid close.
func closeReply(p []byte) *closeErr {
	switch {
	case len(p) == 0:
		return nil
	case len(p) == 1:
		return errCloseFrame
	}
	code := binary.BigEndian.Uint16(p)
	if !validCloseCode(code) {
		return errCloseFrame
	}
	if !utf8.Valid(p[2:]) {
		return errUTF8
	}
	if code == CloseNormal {
		return errNormal
	}
	return &closeErr{code: code}
}

// validCloseCode reports whether a client may send code (RFC 6455
// §7.4.1, and the IANA registry: 1012-1014 are registered since).
func validCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// An endpoint is what the frame reader hands a connection's frames to.
type endpoint interface {
	// message delivers a whole text message, valid during the call.
	message(msg []byte)
	// ping answers a ping with payload p (valid during the call).
	ping(p []byte)
	// peerClose answers the client's close frame with payload p.
	peerClose(p []byte)
}

// reassembly is a connection's fragmented message in progress.
type reassembly struct {
	frag  []byte // the fragments so far, unmasked
	inMsg bool   // a message is fragmented (its first frame had no FIN)
	// started: a fragmented message began since the connection last
	// cleared it (pending's clock).
	started bool
}

// keepFrag is the largest fragment buffer kept for the next fragmented
// message: an idle connection holds none larger.
const keepFrag = 1 << 10

// readFrames reads the whole frames at the start of data, unmasking
// their payloads in place, and hands them to e: it returns how many bytes
// it consumed (an incomplete frame at the end is left), and an error
// that closes the connection, or stop once the client's close frame has
// been read (what follows it is ignored). maxMsg bounds a message, in one
// frame or fragmented.
func readFrames(data []byte, st *reassembly, maxMsg int, e endpoint) (n int, err *closeErr, stop bool) {
	for n < len(data) {
		h, err := parseHeader(data[n:], maxMsg)
		if err != nil {
			return n, err, false
		}
		if h.size == 0 || len(data)-n-h.size < h.length {
			return n, nil, false // incomplete
		}
		p := data[n+h.size : n+h.size+h.length]
		n += h.size + h.length
		unmask(p, h.mask)
		switch h.op {
		case opPing:
			e.ping(p)
		case opPong:
		case opClose:
			e.peerClose(p)
			return n, nil, true
		case opBinary:
			return n, errBinary, false
		case opText:
			if st.inMsg {
				return n, errNotContinued, false
			}
			if !h.fin {
				st.inMsg, st.started = true, true
				st.frag = append(st.frag[:0], p...)
				continue
			}
			if !utf8.Valid(p) {
				return n, errUTF8, false
			}
			e.message(p)
		case opContinuation:
			if !st.inMsg {
				return n, errContinuation, false
			}
			if len(st.frag)+len(p) > maxMsg {
				return n, errTooBig, false
			}
			st.frag = append(st.frag, p...)
			if !h.fin {
				continue
			}
			msg := st.frag
			st.inMsg = false
			if cap(st.frag) > keepFrag {
				st.frag = nil
			} else {
				st.frag = st.frag[:0]
			}
			if !utf8.Valid(msg) {
				return n, errUTF8, false
			}
			e.message(msg)
		}
	}
	return n, nil, false
}

// pendingSince updates the clock of a connection's unfinished input,
// after readFrames consumed k bytes and left rest: since holds when the
// oldest unfinished frame or fragmented message began (0: none), now is
// the time of this read. A fragmented message's clock runs from its first
// frame, so that its fragments cannot be trickled; a frame's from the
// read that began it.
func pendingSince(since, now time.Duration, st *reassembly, k, rest int) time.Duration {
	now = max(now, 1)
	started := st.started
	st.started = false
	switch {
	case rest == 0 && !st.inMsg:
		return 0
	case st.inMsg:
		if started || since == 0 {
			return now
		}
		return since
	case k > 0 || since == 0:
		return now
	}
	return since
}
