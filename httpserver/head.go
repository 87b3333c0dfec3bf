package httpserver

import (
	"bytes"
	"unsafe"
)

// This file parses HTTP/1.1 request heads (RFC 9112) for the Server: the
// request line and the header fields, which it keeps as (name, value)
// pairs pointing into the read buffer (Request.Fields), interpreting the
// few the Server itself needs (Host, Connection, Content-Length,
// Transfer-Encoding). It accepts what net/http accepts from real clients (bare
// LF line ends, any case in field names, optional whitespace around
// values) and refuses what would make the connection ambiguous: obsolete
// line folding, whitespace before a colon, control characters, a body,
// conflicting lengths.

// reqHead is what the Server takes from a request head. Its strings point
// into the buffer the head was parsed from (see bytesString).
type reqHead struct {
	method string
	target string
	http10 bool // HTTP/1.0; anything else parsed is HTTP/1.1
	// close and keepAlive report the Connection options "close" and
	// "keep-alive".
	close, keepAlive bool
	hosts            int  // Host fields
	body             bool // a Content-Length above 0 or a Transfer-Encoding
	// fields are all the header fields, in order (Request.Fields).
	fields []Field
}

// reset empties h for the next request, keeping the slice's memory.
func (h *reqHead) reset() {
	*h = reqHead{fields: h.fields[:0]}
}

// headError is why a request head is refused: the status and a short
// text for the reply body. The zero value means no error.
type headError struct {
	status int
	text   string
}

var (
	errBadRequestLine = headError{400, "malformed request line"}
	errBadTarget      = headError{400, "malformed request target"}
	errBadHeader      = headError{400, "malformed header field"}
	errFolding        = headError{400, "obsolete line folding"}
	errBadLength      = headError{400, "invalid Content-Length"}
	errBody           = headError{400, "a request body is not allowed"}
	errHost           = headError{400, "missing or repeated Host header"}
	errVersion        = headError{505, "HTTP version not supported"}
	errTooLarge       = headError{431, "request header fields too large"}
	errMethod         = headError{405, "method not allowed"}
	errEmptyLines     = headError{400, "too many empty lines before the request line"}
	errPlainHTTP      = headError{400, "client sent an HTTP request to an HTTPS server"}
)

// headEnd returns the length of the head at the start of b, through the
// empty line that ends it, or -1 if b holds no whole head yet. Lines end
// with CRLF or a bare LF. The search starts at from, a length of b already
// searched in vain: a head that arrives in pieces is not searched again
// from the start each time.
func headEnd(b []byte, from int) int {
	// The last line end found before from may be the first half of the
	// empty line: back up over it.
	i := max(from-3, 0)
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		if i < len(b) && b[i] == '\n' {
			return i + 1
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2
		}
	}
}

// maxEmptyLines bounds the empty lines a server ignores before a request
// line. RFC 9112 (section 2.2) asks to ignore at least one, which some
// clients send after a request; more than a few is a client that sends
// nothing else (to hold a connection open), and gets 400.
const maxEmptyLines = 8

// skipEmptyLines returns the length of the empty lines (CRLF or LF) at the
// start of b, which a server ignores before a request line (RFC 9112,
// section 2.2), and how many lines that is.
func skipEmptyLines(b []byte) (n, lines int) {
	for {
		switch {
		case n < len(b) && b[n] == '\n':
			n++
		case n+1 < len(b) && b[n] == '\r' && b[n+1] == '\n':
			n += 2
		default:
			return n, lines
		}
		lines++
	}
}

// onlyBlank reports whether b holds nothing but empty lines, perhaps the
// CR of one more: what a connection holds that has sent nothing
// meaningful yet (nothing at all, or empty lines only), which may be
// evicted at MaxConns like an idle one.
func onlyBlank(b []byte) bool {
	n, _ := skipEmptyLines(b)
	return n == len(b) || (n == len(b)-1 && b[n] == '\r')
}

// parseHead parses b, one whole request head as headEnd delimits it, into
// h. The strings of h point into b.
func parseHead(b []byte, h *reqHead) headError {
	h.reset()
	line, b := nextLine(b)
	if e := parseRequestLine(line, h); e.status != 0 {
		return e
	}
	length := int64(-1)
	for {
		line, b = nextLine(b)
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return errFolding
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return errBadHeader
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if !validFieldValue(value) {
			return errBadHeader
		}
		switch {
		case equalFold(name, "host"):
			h.hosts++
		case equalFold(name, "connection"):
			for v := value; len(v) > 0; {
				var opt []byte
				opt, v, _ = bytes.Cut(v, []byte{','})
				opt = trimOWS(opt)
				switch {
				case equalFold(opt, "close"):
					h.close = true
				case equalFold(opt, "keep-alive"):
					h.keepAlive = true
				}
			}
		case equalFold(name, "content-length"):
			n, ok := parseLength(value)
			if !ok || (length >= 0 && n != length) {
				return errBadLength
			}
			length = n
			h.body = h.body || n > 0
		case equalFold(name, "transfer-encoding"):
			h.body = true
		}
		h.fields = append(h.fields, Field{Name: bytesString(name), Value: bytesString(value)})
	}
	return headError{}
}

// parseRequestLine parses "METHOD SP target SP HTTP/1.x".
func parseRequestLine(line []byte, h *reqHead) headError {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 || !isToken(line[:sp1]) {
		return errBadRequestLine
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return errBadRequestLine
	}
	target, version := rest[:sp2], rest[sp2+1:]
	if bytes.IndexByte(version, ' ') >= 0 {
		return errBadRequestLine
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return errBadTarget
		}
	}
	switch {
	case string(version) == "HTTP/1.1":
	case string(version) == "HTTP/1.0":
		h.http10 = true
	case len(version) == 8 && string(version[:7]) == "HTTP/1." && '0' <= version[7] && version[7] <= '9':
		// A later HTTP/1 minor version is served as 1.1.
	case len(version) > 5 && string(version[:5]) == "HTTP/":
		return errVersion
	default:
		return errBadRequestLine
	}
	h.method = bytesString(line[:sp1])
	h.target = bytesString(target)
	return headError{}
}

// nextLine splits the first line off b, without its CRLF or LF.
func nextLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, rest
}

// splitTarget returns the path and the query of a request target in
// origin form ("/announce?info_hash=...") or absolute form
// ("http://host/announce?..."). The path is percent-decoded; ok is false
// if it cannot be.
func splitTarget(target string, buf *[64]byte) (path, query string, ok bool) {
	if len(target) > 0 && target[0] != '/' {
		// Absolute form: skip the scheme and the authority.
		i := indexString(target, "://")
		if i <= 0 {
			return "", "", false
		}
		target = target[i+3:]
		j := 0
		for j < len(target) && target[j] != '/' && target[j] != '?' {
			j++
		}
		target = target[j:]
		if target == "" || target[0] == '?' {
			target = "/" + target
		}
	}
	path, query = target, ""
	for i := 0; i < len(target); i++ {
		if target[i] == '?' {
			path, query = target[:i], target[i+1:]
			break
		}
	}
	for i := 0; i < len(path); i++ {
		if path[i] == '%' {
			// Rare: decode into buf, or, for a path longer than
			// buf, into a new buffer.
			if len(path) > len(buf) {
				d, ok := unescapePath(nil, path)
				if !ok {
					return "", "", false
				}
				return bytesString(d), query, true
			}
			d, ok := unescapePath(buf[:0], path)
			if !ok {
				return "", "", false
			}
			return bytesString(d), query, true
		}
	}
	return path, query, true
}

// unescapePath percent-decodes a path: unlike a query, '+' is itself.
func unescapePath(dst []byte, s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) {
				return dst, false
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return dst, false
			}
			c = hi<<4 | lo
			i += 2
		}
		dst = append(dst, c)
	}
	return dst, true
}

func indexString(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// parseLength parses a Content-Length value: decimal digits only.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// trimOWS trims optional whitespace (spaces and tabs) from both ends.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// validFieldValue reports whether v has no control characters but tabs.
func validFieldValue(v []byte) bool {
	for _, c := range v {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// isToken reports whether b is an RFC 9110 token: a method or field name.
func isToken(b []byte) bool {
	for _, c := range b {
		if !tokenChar[c] {
			return false
		}
	}
	return len(b) > 0
}

var tokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// equalFold reports whether b is lower, ignoring ASCII case; lower is in
// lower case.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// bytesString returns b as a string without copying it. The string is
// valid while b's memory is not overwritten: the Server reuses its read
// buffer once a request is answered, and a Handler keeps nothing of a
// Request (see Handler).
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// unhex returns the value of the hex digit c.
func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
