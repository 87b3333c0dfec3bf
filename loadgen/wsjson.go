package loadgen

import (
	"encoding/binary"
	"errors"
	"strconv"
	"unicode/utf8"
)

// The WebTorrent tracker protocol (webtorrent's bittorrent-tracker) sends
// one JSON object per WebSocket text message. Its ids (info_hash, peer_id,
// offer_id, to_peer_id) are "binary strings": 20 JSON string characters,
// each U+0000–U+00FF standing for one byte, as JavaScript's
// String.fromCharCode makes them and JSON.stringify writes them (control
// characters escaped, U+0080–U+00FF as two bytes of UTF-8).

// wsMaxOffers bounds the offers of one announce the generator reads.
const wsMaxOffers = 64

// Fields of a wsMsg that were present.
const (
	wsHasAction = 1 << iota
	wsHasInfoHash
	wsHasPeerID
	wsHasToPeerID
	wsHasOfferID
	wsHasInterval
	wsHasComplete
	wsHasIncomplete
	wsHasFailure
	wsHasOffer
	wsHasAnswer
	wsHasOffers
	wsHasNumWant
)

// wsSDP is an offer or answer object, {"type": ..., "sdp": ...}: its type,
// and its sdp as the raw JSON string contents (still escaped).
type wsSDP struct {
	typ string
	sdp []byte // escaped contents, between the quotes; aliases the message
	raw []byte // the whole object; aliases the message
}

// wsOffer is one element of an announce's offers.
type wsOffer struct {
	id    [20]byte
	hasID bool
	offer wsSDP
}

// wsMsg is one parsed message. Byte slices alias the message; the strings
// are those the generator needs (action, type, failure reason). The zero
// value is ready for parseWSMsg, which resets it.
type wsMsg struct {
	has                                     uint32
	action                                  string
	infoHash, peerID, toPeerID, offerID     [20]byte
	interval, complete, incomplete, numWant int64
	failure                                 string
	offer, answer                           wsSDP
	offers                                  []wsOffer
}

var (
	errJSON       = errors.New("malformed JSON")
	errJSONEnd    = errors.New("malformed JSON: unexpected end")
	errNotBinary  = errors.New("not a 20-character binary string")
	errNotInteger = errors.New("not an integer")
)

// jsonScan reads JSON from a byte slice.
type jsonScan struct {
	b []byte
	i int
}

func (s *jsonScan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

func (s *jsonScan) peek() (byte, error) {
	s.ws()
	if s.i >= len(s.b) {
		return 0, errJSONEnd
	}
	return s.b[s.i], nil
}

func (s *jsonScan) expect(c byte) error {
	d, err := s.peek()
	if err != nil {
		return err
	}
	if d != c {
		return errJSON
	}
	s.i++
	return nil
}

// rawString returns the escaped contents of the string at the cursor and
// moves past it; it checks the escapes and that no control character is
// unescaped.
func (s *jsonScan) rawString() ([]byte, error) {
	if err := s.expect('"'); err != nil {
		return nil, err
	}
	start := s.i
	for s.i < len(s.b) {
		s.i = plainRun(s.b, s.i)
		if s.i >= len(s.b) {
			break
		}
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], nil
		case c == '\\':
			if s.i+1 >= len(s.b) {
				return nil, errJSONEnd
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) {
					return nil, errJSONEnd
				}
				if _, ok := hex4(s.b[s.i+2 : s.i+6]); !ok {
					return nil, errJSON
				}
				s.i += 6
			default:
				return nil, errJSON
			}
		case c < 0x20:
			return nil, errJSON
		default:
			s.i++
		}
	}
	return nil, errJSONEnd
}

func hex4(b []byte) (rune, bool) {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// unescapeJSON appends the decoded contents of a raw JSON string (as
// rawString returns it, so its escapes are known to be well-formed) to dst
// as UTF-8. Surrogate pairs are joined; a lone surrogate becomes U+FFFD.
func unescapeJSON(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			j := i + 1
			for j < len(raw) && raw[j] != '\\' {
				j++
			}
			dst = append(dst, raw[i:j]...)
			i = j
			continue
		}
		e := raw[i+1]
		i += 2
		switch e {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, _ := hex4(raw[i:])
			i += 4
			if r >= 0xD800 && r < 0xDC00 && i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
				if r2, ok := hex4(raw[i+2:]); ok && r2 >= 0xDC00 && r2 < 0xE000 {
					r = 0x10000 + (r-0xD800)<<10 + (r2 - 0xDC00)
					i += 6
				}
			}
			if r >= 0xD800 && r < 0xE000 {
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, e)
		}
	}
	return dst
}

// decodeBinary20 decodes a raw JSON string that must be a binary string of
// 20 characters, each U+0000–U+00FF.
func decodeBinary20(raw []byte) (id [20]byte, err error) {
	n := 0
	for i := 0; i < len(raw); {
		if n == 20 {
			return id, errNotBinary
		}
		c := raw[i]
		switch {
		case c == '\\':
			e := raw[i+1]
			i += 2
			switch e {
			case 'b':
				c = '\b'
			case 'f':
				c = '\f'
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			case 'u':
				r, _ := hex4(raw[i:])
				i += 4
				if r > 0xFF {
					return id, errNotBinary
				}
				c = byte(r)
			default:
				c = e
			}
		case c < 0x80:
			i++
		case (c == 0xC2 || c == 0xC3) && i+1 < len(raw) && raw[i+1]&0xC0 == 0x80:
			c = (c&0x03)<<6 | raw[i+1]&0x3F
			i += 2
		default:
			return id, errNotBinary
		}
		id[n] = c
		n++
	}
	if n != 20 {
		return id, errNotBinary
	}
	return id, nil
}

// appendBinaryString appends b as a JSON binary string, escaped the way
// JSON.stringify escapes it.
func appendBinaryString(dst, b []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for _, c := range b {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\b':
			dst = append(dst, '\\', 'b')
		case c == '\f':
			dst = append(dst, '\\', 'f')
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		case c < 0x80:
			dst = append(dst, c)
		default:
			dst = append(dst, 0xC0|c>>6, 0x80|c&0x3F)
		}
	}
	return append(dst, '"')
}

// appendJSONString appends s (UTF-8 text) as a JSON string.
func appendJSONString(dst []byte, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		j := plainRun(s, i)
		dst = append(dst, s[i:j]...)
		if j == len(s) {
			break
		}
		c := s[j]
		i = j + 1
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// number moves past a JSON number (RFC 8259 grammar: no leading zeros,
// no leading '+', digits after '.' and 'e') and reports whether it has a
// fraction or an exponent.
func (s *jsonScan) number() (float bool, err error) {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case s.i < len(s.b) && s.b[s.i] >= '1' && s.b[s.i] <= '9':
		s.digits()
	default:
		return false, errJSON
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if s.digits() == 0 {
			return false, errJSON
		}
		float = true
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if s.digits() == 0 {
			return false, errJSON
		}
		float = true
	}
	return float, nil
}

func (s *jsonScan) digits() int {
	d := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i - d
}

// plainRun returns the index of the first byte of b at or after i that a
// JSON string cannot hold as it is ('"', '\\' or a control character), or
// len(b): eight bytes at a time, then byte by byte.
func plainRun(b []byte, i int) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		q := x ^ (lo * '"')
		bs := x ^ (lo * '\\')
		if ((q-lo)&^q|(bs-lo)&^bs|(x-lo*0x20)&^x)&hi != 0 {
			break
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c == '"' || c == '\\' || c < 0x20 {
			return i
		}
	}
	return i
}

// integer reads a JSON number that must be an integer (a fraction of zero,
// such as 120.0, is accepted).
func (s *jsonScan) integer() (int64, error) {
	s.ws()
	start := s.i
	float, err := s.number()
	if err != nil {
		return 0, err
	}
	if float {
		f, err := strconv.ParseFloat(string(s.b[start:s.i]), 64)
		if err != nil || f != float64(int64(f)) {
			return 0, errNotInteger
		}
		return int64(f), nil
	}
	v, err := strconv.ParseInt(string(s.b[start:s.i]), 10, 64)
	if err != nil {
		return 0, errNotInteger
	}
	return v, nil
}

// skip moves past any JSON value, checking it is well-formed; depth bounds
// nesting.
func (s *jsonScan) skip(depth int) error {
	if depth > 32 {
		return errors.New("JSON nested too deeply")
	}
	c, err := s.peek()
	if err != nil {
		return err
	}
	switch {
	case c == '"':
		_, err := s.rawString()
		return err
	case c == '{':
		s.i++
		if c, err := s.peek(); err == nil && c == '}' {
			s.i++
			return nil
		}
		for {
			if _, err := s.rawString(); err != nil {
				return err
			}
			if err := s.expect(':'); err != nil {
				return err
			}
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			if done, err := s.next('}'); err != nil || done {
				return err
			}
		}
	case c == '[':
		s.i++
		if c, err := s.peek(); err == nil && c == ']' {
			s.i++
			return nil
		}
		for {
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			if done, err := s.next(']'); err != nil || done {
				return err
			}
		}
	case c == '-' || c >= '0' && c <= '9':
		_, err := s.number()
		return err
	}
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
			s.i += len(lit)
			return nil
		}
	}
	return errJSON
}

// next reads ',' (more to come: false) or the closing byte (done: true).
func (s *jsonScan) next(closing byte) (bool, error) {
	c, err := s.peek()
	if err != nil {
		return false, err
	}
	s.i++
	switch c {
	case ',':
		return false, nil
	case closing:
		return true, nil
	}
	return false, errJSON
}

// field is a helper for the keyed values of parseWSMsg.
func fieldErr(key string, err error) error {
	return errors.New(key + ": " + err.Error())
}

// parseWSMsg parses one message into m. Unknown keys are checked for
// well-formedness and skipped.
func parseWSMsg(b []byte, m *wsMsg) error {
	offers := m.offers[:0]
	*m = wsMsg{offers: offers}
	s := jsonScan{b: b}
	if err := s.expect('{'); err != nil {
		return errors.New("not a JSON object")
	}
	if c, err := s.peek(); err == nil && c == '}' {
		s.i++
		return s.end()
	}
	for {
		key, err := s.rawString()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := m.field(&s, string(key)); err != nil {
			return err
		}
		done, err := s.next('}')
		if err != nil {
			return err
		}
		if done {
			return s.end()
		}
	}
}

func (s *jsonScan) end() error {
	s.ws()
	if s.i != len(s.b) {
		return errors.New("malformed JSON: data after the object")
	}
	return nil
}

func (m *wsMsg) field(s *jsonScan, key string) error {
	var bit uint32
	var id *[20]byte
	var num *int64
	switch key {
	case "action":
		c, err := s.peek()
		if err != nil {
			return err
		}
		if c != '"' {
			return errors.New("action: not a string")
		}
		raw, err := s.rawString()
		if err != nil {
			return err
		}
		switch string(raw) {
		case "announce":
			m.action = "announce"
		case "scrape":
			m.action = "scrape"
		default:
			m.action = string(unescapeJSON(nil, raw))
		}
		m.has |= wsHasAction
		return nil
	case "failure reason":
		raw, err := s.rawString()
		if err != nil {
			return fieldErr(key, err)
		}
		m.failure = string(unescapeJSON(nil, raw))
		m.has |= wsHasFailure
		return nil
	case "info_hash":
		bit, id = wsHasInfoHash, &m.infoHash
	case "peer_id":
		bit, id = wsHasPeerID, &m.peerID
	case "to_peer_id":
		bit, id = wsHasToPeerID, &m.toPeerID
	case "offer_id":
		bit, id = wsHasOfferID, &m.offerID
	case "interval":
		bit, num = wsHasInterval, &m.interval
	case "complete":
		bit, num = wsHasComplete, &m.complete
	case "incomplete":
		bit, num = wsHasIncomplete, &m.incomplete
	case "numwant":
		bit, num = wsHasNumWant, &m.numWant
	case "offer":
		if err := s.sdpObject(&m.offer); err != nil {
			return fieldErr(key, err)
		}
		m.has |= wsHasOffer
		return nil
	case "answer":
		if err := s.sdpObject(&m.answer); err != nil {
			return fieldErr(key, err)
		}
		m.has |= wsHasAnswer
		return nil
	case "offers":
		if err := s.offerList(m); err != nil {
			return fieldErr(key, err)
		}
		m.has |= wsHasOffers
		return nil
	default:
		return s.skip(0)
	}
	if id != nil {
		c, err := s.peek()
		if err != nil {
			return err
		}
		if c != '"' {
			if key == "info_hash" && c == '[' { // a scrape's list
				return s.skip(0)
			}
			return fieldErr(key, errNotBinary)
		}
		raw, err := s.rawString()
		if err != nil {
			return err
		}
		if *id, err = decodeBinary20(raw); err != nil {
			return fieldErr(key, err)
		}
	} else {
		v, err := s.integer()
		if err != nil {
			return fieldErr(key, err)
		}
		*num = v
	}
	m.has |= bit
	return nil
}

// sdpObject reads {"type": string, "sdp": string, ...}.
func (s *jsonScan) sdpObject(o *wsSDP) error {
	s.ws()
	start := s.i
	if err := s.expect('{'); err != nil {
		return errors.New("not an object")
	}
	*o = wsSDP{}
	if c, err := s.peek(); err == nil && c == '}' {
		s.i++
		o.raw = s.b[start:s.i]
		return nil
	}
	for {
		key, err := s.rawString()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		switch string(key) {
		case "type":
			raw, err := s.rawString()
			if err != nil {
				return errors.New("type: not a string")
			}
			switch string(raw) {
			case "offer":
				o.typ = "offer"
			case "answer":
				o.typ = "answer"
			default:
				o.typ = string(unescapeJSON(nil, raw))
			}
		case "sdp":
			raw, err := s.rawString()
			if err != nil {
				return errors.New("sdp: not a string")
			}
			o.sdp = raw
		default:
			if err := s.skip(1); err != nil {
				return err
			}
		}
		done, err := s.next('}')
		if err != nil {
			return err
		}
		if done {
			o.raw = s.b[start:s.i]
			return nil
		}
	}
}

// offerList reads [{"offer_id": ..., "offer": {...}}, ...].
func (s *jsonScan) offerList(m *wsMsg) error {
	if err := s.expect('['); err != nil {
		return errors.New("not a list")
	}
	if c, err := s.peek(); err == nil && c == ']' {
		s.i++
		return nil
	}
	for {
		if len(m.offers) == wsMaxOffers {
			return errors.New("more than " + strconv.Itoa(wsMaxOffers) + " offers")
		}
		m.offers = append(m.offers, wsOffer{})
		o := &m.offers[len(m.offers)-1]
		if err := s.expect('{'); err != nil {
			return errors.New("an offer is not an object")
		}
		if c, err := s.peek(); err == nil && c == '}' {
			s.i++
		} else {
			if err := s.offerFields(o); err != nil {
				return err
			}
		}
		done, err := s.next(']')
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// offerFields reads the keys of one element of offers, after its '{'.
func (s *jsonScan) offerFields(o *wsOffer) error {
	for {
		key, err := s.rawString()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		switch string(key) {
		case "offer_id":
			raw, err := s.rawString()
			if err != nil {
				return fieldErr("offer_id", errNotBinary)
			}
			if o.id, err = decodeBinary20(raw); err != nil {
				return fieldErr("offer_id", err)
			}
			o.hasID = true
		case "offer":
			if err := s.sdpObject(&o.offer); err != nil {
				return fieldErr("offer", err)
			}
		default:
			if err := s.skip(1); err != nil {
				return err
			}
		}
		done, err := s.next('}')
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}
