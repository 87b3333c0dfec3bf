package ws

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"

	"trackd/bittorrent"
)

// This file is the wire format: a hand-rolled parser for the one kind of
// message clients send (a JSON object), and append-style encoders for
// the replies. It keeps the offers' and answers' JSON as it came (a
// slice of the message), validated but never decoded, so that a
// relayed SDP is copied once, into the recipient's write queue.

// A parseError is a message refused for what it contains; its text is
// the failure reason sent back.
type parseError string

func (e parseError) Error() string { return string(e) }

// The parser's refusals.
const (
	errSyntax      = parseError("invalid JSON")
	errNotObject   = parseError("a message must be a JSON object")
	errDepth       = parseError("JSON nested too deeply")
	errAction      = parseError("invalid action: want announce or scrape")
	errEvent       = parseError("invalid event")
	errInfoHash    = parseError("invalid info_hash: want a 20-byte binary string")
	errPeerID      = parseError("invalid peer_id: want a 20-byte binary string")
	errToPeerID    = parseError("invalid to_peer_id: want a 20-byte binary string")
	errOfferID     = parseError("invalid offer_id: want a 20-byte binary string")
	errOffers      = parseError("invalid offers: want a list of {offer_id, offer}")
	errOfferObject = parseError("invalid offer: want a JSON object")
	errAnswer      = parseError("invalid answer: want a JSON object")
	errSignalSize  = parseError("offer or answer too large")
	errHashes      = parseError("too many info_hash values")
)

// maxDepth bounds the nesting of a JSON value the parser walks (offers
// and answers are two levels deep).
const maxDepth = 32

type action uint8

const (
	actNone action = iota
	actAnnounce
	actScrape
)

// offer is one offer of an announce: its id and its JSON object as sent.
type offer struct {
	id  [20]byte
	raw []byte
}

// message is one client message after parsing. Its slices point into
// the message's bytes, or reuse the message's own buffers.
type message struct {
	action action
	// info_hash: one (hasInfoHash), or a list (hashList, in hashes).
	infoHash    bittorrent.InfoHash
	hasInfoHash bool
	hashList    bool
	hashes      []bittorrent.InfoHash

	peerID, toPeerID, offerID    [20]byte
	hasPeerID, hasTo, hasOfferID bool

	numWant int    // -1: not sent
	left    uint64 // leftUnknown: not sent, or not a count
	event   bittorrent.Event
	// offers holds the first maxOffers offers; nOffers counts them all.
	offers  []offer
	nOffers int
	answer  []byte // the answer object, nil if none
}

// limits bound what one message may carry.
type limits struct {
	offers int // offers kept (the rest are checked, not kept)
	signal int // bytes of one offer or answer object
	hashes int // info hashes of a scrape
}

func (m *message) reset() {
	*m = message{hashes: m.hashes[:0], offers: m.offers[:0], numWant: -1, left: leftUnknown}
}

type parser struct {
	b   []byte
	i   int
	lim limits
	m   *message
}

// parse parses b into m. On error m holds what was read before it (the
// action and info_hash, for the failure's reply).
func parse(b []byte, m *message, lim limits) error {
	m.reset()
	p := parser{b: b, lim: lim, m: m}
	p.ws()
	if p.i >= len(b) || b[p.i] != '{' {
		return errNotObject
	}
	p.i++
	p.ws()
	if p.peek() == '}' {
		p.i++
	} else {
		for {
			var kb [16]byte
			key, err := p.str(kb[:0])
			if err != nil {
				return err
			}
			if err := p.colon(); err != nil {
				return err
			}
			if err := p.field(key); err != nil {
				return err
			}
			more, err := p.more('}')
			if err != nil {
				return err
			}
			if !more {
				break
			}
		}
	}
	p.ws()
	if p.i != len(b) {
		return errSyntax
	}
	return nil
}

func (p *parser) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// more reads what follows a member of an object or an element of an
// array, with the spaces around it: true after a ',' (another follows),
// false after close (the object or array ends there), and errSyntax
// after anything else.
func (p *parser) more(close byte) (bool, error) {
	p.ws()
	c := p.peek()
	p.i++
	switch c {
	case ',':
		p.ws()
		return true, nil
	case close:
		return false, nil
	}
	return false, errSyntax
}

// colon reads the ':' between a member's name and its value, with the
// spaces around it.
func (p *parser) colon() error {
	p.ws()
	if p.peek() != ':' {
		return errSyntax
	}
	p.i++
	p.ws()
	return nil
}

// field reads the value of key.
func (p *parser) field(key []byte) error {
	m := p.m
	switch string(key) {
	case "action":
		var vb [16]byte
		v, err := p.strOrSkip(vb[:0])
		if err != nil {
			return err
		}
		switch string(v) {
		case "announce":
			m.action = actAnnounce
		case "scrape":
			m.action = actScrape
		default:
			m.action = actNone
			return errAction
		}
	case "info_hash":
		switch p.peek() {
		case '"':
			m.hashList = false
			if err := p.binary((*[20]byte)(&m.infoHash), errInfoHash); err != nil {
				return err
			}
			m.hasInfoHash = true
		case '[':
			return p.hashList()
		default:
			return errInfoHash
		}
	case "peer_id":
		if err := p.binary(&m.peerID, errPeerID); err != nil {
			return err
		}
		m.hasPeerID = true
	case "to_peer_id":
		if p.null() {
			m.hasTo = false
			return nil
		}
		if err := p.binary(&m.toPeerID, errToPeerID); err != nil {
			return err
		}
		m.hasTo = true
	case "offer_id":
		if p.null() {
			m.hasOfferID = false
			return nil
		}
		if err := p.binary(&m.offerID, errOfferID); err != nil {
			return err
		}
		m.hasOfferID = true
	case "numwant":
		n, ok, err := p.number()
		if err != nil {
			return err
		}
		m.numWant = -1
		if ok {
			m.numWant = int(min(n, 1<<20))
		}
	case "left":
		n, ok, err := p.number()
		if err != nil {
			return err
		}
		m.left = leftUnknown
		if ok && n < 1<<63 {
			m.left = n
		}
	case "event":
		var vb [16]byte
		v, err := p.strOrSkip(vb[:0])
		if err != nil {
			return err
		}
		switch string(v) {
		case "", "update", "empty", "paused":
			// "paused" (BEP 21's partial seed) is a re-announce here.
			m.event = bittorrent.EventNone
		case "started":
			m.event = bittorrent.EventStarted
		case "completed":
			m.event = bittorrent.EventCompleted
		case "stopped":
			m.event = bittorrent.EventStopped
		default:
			return errEvent
		}
	case "offers":
		if p.null() {
			m.offers, m.nOffers = m.offers[:0], 0
			return nil
		}
		return p.offers()
	case "answer":
		if p.null() {
			m.answer = nil
			return nil
		}
		raw, err := p.object(errAnswer)
		if err != nil {
			return err
		}
		m.answer = raw
	default:
		// uploaded, downloaded, trackerid, and whatever else: checked,
		// not used.
		return p.skip(0)
	}
	return nil
}

// null consumes a JSON null if there is one.
func (p *parser) null() bool {
	if len(p.b)-p.i >= 4 && string(p.b[p.i:p.i+4]) == "null" {
		p.i += 4
		return true
	}
	return false
}

// noName is what strOrSkip reads for a value that is not a string: it
// matches no name.
var noName = []byte{0}

// strOrSkip reads a string value into dst (nil for null); a value of
// another type, checked and passed, reads as noName.
func (p *parser) strOrSkip(dst []byte) ([]byte, error) {
	if p.null() {
		return nil, nil
	}
	if p.peek() != '"' {
		if err := p.skip(0); err != nil {
			return nil, err
		}
		return noName, nil
	}
	return p.str(dst)
}

func (p *parser) hashList() error {
	m := p.m
	m.hashList, m.hasInfoHash = true, false
	m.hashes = m.hashes[:0]
	p.i++ // '['
	p.ws()
	if p.peek() == ']' {
		p.i++
		return nil
	}
	for {
		if p.peek() != '"' {
			return errInfoHash
		}
		if len(m.hashes) >= p.lim.hashes {
			return errHashes
		}
		var h bittorrent.InfoHash
		if err := p.binary((*[20]byte)(&h), errInfoHash); err != nil {
			return err
		}
		m.hashes = append(m.hashes, h)
		if more, err := p.more(']'); !more {
			return err
		}
	}
}

func (p *parser) offers() error {
	m := p.m
	m.offers, m.nOffers = m.offers[:0], 0
	if p.peek() != '[' {
		return errOffers
	}
	p.i++
	p.ws()
	if p.peek() == ']' {
		p.i++
		return nil
	}
	for {
		var o offer
		if err := p.offer(&o); err != nil {
			return err
		}
		if len(m.offers) < p.lim.offers {
			m.offers = append(m.offers, o)
		}
		m.nOffers++
		if more, err := p.more(']'); !more {
			return err
		}
	}
}

// offer reads one {offer_id, offer} object.
func (p *parser) offer(o *offer) error {
	if p.peek() != '{' {
		return errOffers
	}
	p.i++
	p.ws()
	hasID := false
	if p.peek() == '}' {
		return errOffers
	}
	for {
		var kb [16]byte
		key, err := p.str(kb[:0])
		if err != nil {
			return err
		}
		if err := p.colon(); err != nil {
			return err
		}
		switch string(key) {
		case "offer_id":
			if err := p.binary(&o.id, errOfferID); err != nil {
				return err
			}
			hasID = true
		case "offer":
			if o.raw, err = p.object(errOfferObject); err != nil {
				return err
			}
		default:
			if err := p.skip(1); err != nil {
				return err
			}
		}
		more, err := p.more('}')
		if err != nil {
			return err
		}
		if !more {
			break
		}
	}
	if !hasID || o.raw == nil {
		return errOffers
	}
	return nil
}

// object reads a JSON object and returns it as it is in the message,
// refusing one larger than the signal limit.
func (p *parser) object(notObject parseError) ([]byte, error) {
	if p.peek() != '{' {
		return nil, notObject
	}
	start := p.i
	if err := p.skip(1); err != nil {
		return nil, err
	}
	if p.i-start > p.lim.signal {
		return nil, errSignalSize
	}
	return p.b[start:p.i], nil
}

// skip checks and passes one JSON value, at nesting depth.
func (p *parser) skip(depth int) error {
	if depth > maxDepth {
		return errDepth
	}
	switch c := p.peek(); {
	case c == '{':
		p.i++
		p.ws()
		if p.peek() == '}' {
			p.i++
			return nil
		}
		for {
			if p.peek() != '"' {
				return errSyntax
			}
			if err := p.skipStr(); err != nil {
				return err
			}
			if err := p.colon(); err != nil {
				return err
			}
			if err := p.skip(depth + 1); err != nil {
				return err
			}
			if more, err := p.more('}'); !more {
				return err
			}
		}
	case c == '[':
		p.i++
		p.ws()
		if p.peek() == ']' {
			p.i++
			return nil
		}
		for {
			if err := p.skip(depth + 1); err != nil {
				return err
			}
			if more, err := p.more(']'); !more {
				return err
			}
		}
	case c == '"':
		return p.skipStr()
	case c == 't':
		return p.lit("true")
	case c == 'f':
		return p.lit("false")
	case c == 'n':
		return p.lit("null")
	case c == '-' || c >= '0' && c <= '9':
		_, _, err := p.number()
		return err
	}
	return errSyntax
}

func (p *parser) lit(s string) error {
	if len(p.b)-p.i >= len(s) && string(p.b[p.i:p.i+len(s)]) == s {
		p.i += len(s)
		return nil
	}
	return errSyntax
}

// number reads a JSON number, or null. ok says it is a whole number
// from 0 to 2^64-1, returned in n; other numbers (negative, fractions,
// exponents, too large) and null are valid but not counts.
func (p *parser) number() (n uint64, ok bool, err error) {
	if p.null() {
		return 0, false, nil
	}
	b, i := p.b, p.i
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	if i >= len(b) || b[i] < '0' || b[i] > '9' {
		return 0, false, errSyntax
	}
	ok = !neg
	if b[i] == '0' {
		i++
	} else {
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			d := uint64(b[i] - '0')
			if n > (1<<64-1-d)/10 {
				ok = false
			}
			n = n*10 + d
		}
	}
	if i < len(b) && b[i] == '.' {
		i++
		ok = false
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return 0, false, errSyntax
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		ok = false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return 0, false, errSyntax
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	p.i = i
	if !ok {
		n = 0
	}
	return n, ok, nil
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// escape reads the escape sequence after a backslash at p.i and returns
// the code point it stands for (a UTF-16 unit for \u).
func (p *parser) escape() (rune, error) {
	b := p.b
	if p.i >= len(b) {
		return 0, errSyntax
	}
	c := b[p.i]
	p.i++
	switch c {
	case '"', '\\', '/':
		return rune(c), nil
	case 'b':
		return '\b', nil
	case 'f':
		return '\f', nil
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case 'u':
		if len(b)-p.i < 4 {
			return 0, errSyntax
		}
		r := 0
		for _, h := range b[p.i : p.i+4] {
			v := hexVal(h)
			if v < 0 {
				return 0, errSyntax
			}
			r = r<<4 | v
		}
		p.i += 4
		return rune(r), nil
	}
	return 0, errSyntax
}

// str reads a JSON string and returns its value: a slice of the message
// when it has no escapes, else decoded into dst (UTF-16 surrogates are
// kept as U+FFFD: the names this parser compares are ASCII).
func (p *parser) str(dst []byte) ([]byte, error) {
	if p.peek() != '"' {
		return nil, errSyntax
	}
	p.i++
	start := p.i
	b := p.b
	for i := p.i; i < len(b); i++ {
		c := b[i]
		if c == '"' {
			p.i = i + 1
			return b[start:i], nil
		}
		if c == '\\' || c < 0x20 || c >= 0x80 {
			break
		}
	}
	for p.i < len(b) {
		c := b[p.i]
		switch {
		case c == '"':
			p.i++
			return dst, nil
		case c == '\\':
			p.i++
			r, err := p.escape()
			if err != nil {
				return nil, err
			}
			dst = utf8.AppendRune(dst, r)
		case c < 0x20:
			return nil, errSyntax
		case c < 0x80:
			dst = append(dst, c)
			p.i++
		default:
			r, size := utf8.DecodeRune(b[p.i:])
			if r == utf8.RuneError && size <= 1 {
				return nil, errSyntax
			}
			dst = append(dst, b[p.i:p.i+size]...)
			p.i += size
		}
	}
	return nil, errSyntax
}

// skipStr checks and passes a JSON string: escapes, no control
// characters, valid UTF-8 (a relayed offer must be valid in a text
// message).
func (p *parser) skipStr() error {
	p.i++ // '"'
	b := p.b
	for p.i < len(b) {
		// the long runs of plain ASCII of an SDP, eight bytes at a time
		for p.i+8 <= len(b) && plain8(b[p.i:p.i+8]) {
			p.i += 8
		}
		if p.i >= len(b) {
			break
		}
		c := b[p.i]
		switch {
		case c == '"':
			p.i++
			return nil
		case c == '\\':
			p.i++
			if _, err := p.escape(); err != nil {
				return err
			}
		case c < 0x20:
			return errSyntax
		case c < 0x80:
			p.i++
		default:
			r, size := utf8.DecodeRune(b[p.i:])
			if r == utf8.RuneError && size <= 1 {
				return errSyntax
			}
			p.i += size
		}
	}
	return errSyntax
}

// plain8 reports whether the 8 bytes of b are all printable ASCII other
// than '"' and '\\': none ends a string or needs a closer look.
func plain8(b []byte) bool {
	v := binary.LittleEndian.Uint64(b)
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	hasLess := func(x, n uint64) uint64 { return (x - ones*n) &^ x & highs } // a byte < n (x's bytes < 0x80)
	hasByte := func(x, n uint64) uint64 { return hasLess(x^(ones*n), 1) }
	if v&highs != 0 {
		return false
	}
	return hasLess(v, 0x20)|hasByte(v, '"')|hasByte(v, '\\') == 0
}

// binary reads a 20-byte binary string into out: 20 characters from
// U+0000 to U+00FF, each one byte, as JSON.stringify writes a JavaScript
// "binary string". Anything else (another length, a character above
// U+00FF, not a string) is refused with bad.
func (p *parser) binary(out *[20]byte, bad parseError) error {
	if p.peek() != '"' {
		return bad
	}
	p.i++
	b := p.b
	n := 0
	for p.i < len(b) {
		c := b[p.i]
		var v byte
		switch {
		case c == '"':
			p.i++
			if n != 20 {
				return bad
			}
			return nil
		case c == '\\':
			p.i++
			r, err := p.escape()
			if err != nil {
				return err
			}
			if r > 0xFF {
				return bad
			}
			v = byte(r)
		case c < 0x20:
			return errSyntax
		case c < 0x80:
			v = c
			p.i++
		case (c == 0xC2 || c == 0xC3) && p.i+1 < len(b) && b[p.i+1]&0xC0 == 0x80:
			v = (c&0x03)<<6 | b[p.i+1]&0x3F
			p.i += 2
		default:
			return bad
		}
		if n == 20 {
			return bad
		}
		out[n] = v
		n++
	}
	return errSyntax
}

// appendBinary appends b as a JSON binary string, escaped as
// JSON.stringify escapes it: \" and \\, the short escapes of \b \f \n
// \r \t, \u00XX for the other control characters, and the bytes from
// 0x80 as the UTF-8 of U+0080–U+00FF.
func appendBinary[S string | []byte](dst []byte, b S) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c >= 0x20 && c < 0x80:
			dst = append(dst, c)
		case c >= 0x80:
			dst = append(dst, 0xC0|c>>6, 0x80|c&0x3F)
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
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		}
	}
	return append(dst, '"')
}

func appendUint(dst []byte, n uint64) []byte { return strconv.AppendUint(dst, n, 10) }
