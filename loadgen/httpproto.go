package loadgen

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"

	"trackd/bencode"
	"trackd/bittorrent"
)

const hexDigits = "0123456789ABCDEF"

// appendEscaped appends b percent-encoded, every byte as %XX.
func appendEscaped(dst, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, '%', hexDigits[c>>4], hexDigits[c&15])
	}
	return dst
}

// httpReq says what an HTTP request line needs besides the query.
type httpReq struct {
	path  string // announce or scrape path
	host  string // Host header
	close bool   // send "Connection: close"
}

func appendRequestEnd(b []byte, r *httpReq) []byte {
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, r.host...)
	if r.close {
		b = append(b, "\r\nConnection: close"...)
	}
	return append(b, "\r\n\r\n"...)
}

// appendAnnounceRequest appends a GET announce for p with event ev
// (completed with left=0). compact=1 is always sent. It does not allocate
// when b has room.
func appendAnnounceRequest(b []byte, r *httpReq, p *Peer, ev event, numwant int) []byte {
	b = append(b, "GET "...)
	b = append(b, r.path...)
	b = append(b, "?info_hash="...)
	b = appendEscaped(b, p.InfoHash[:])
	b = append(b, "&peer_id="...)
	b = appendEscaped(b, p.ID[:])
	b = append(b, "&port="...)
	b = strconv.AppendUint(b, uint64(p.Port), 10)
	b = append(b, "&uploaded=0&downloaded=0&left="...)
	if p.Seeder || ev == evCompleted {
		b = append(b, '0')
	} else {
		b = strconv.AppendUint(b, leftLeecher, 10)
	}
	b = append(b, "&numwant="...)
	b = strconv.AppendInt(b, int64(numwant), 10)
	b = append(b, "&key="...)
	b = strconv.AppendUint(b, uint64(p.Key), 16)
	b = append(b, "&compact=1"...)
	if ev != evNone {
		b = append(b, "&event="...)
		b = append(b, ev.String()...)
	}
	return appendRequestEnd(b, r)
}

// appendScrapeRequest appends a GET scrape of hashes.
func appendScrapeRequest(b []byte, r *httpReq, hashes []bittorrent.InfoHash) []byte {
	b = append(b, "GET "...)
	b = append(b, r.path...)
	for i := range hashes {
		if i == 0 {
			b = append(b, "?info_hash="...)
		} else {
			b = append(b, "&info_hash="...)
		}
		b = appendEscaped(b, hashes[i][:])
	}
	return appendRequestEnd(b, r)
}

// maxBody bounds a reply body.
const maxBody = 16 << 20

// HTTP reply errors.
var (
	errStatusLine   = errors.New("malformed status line")
	errHeader       = errors.New("malformed header")
	errChunk        = errors.New("malformed chunked body")
	errBodyTooLarge = errors.New("reply body too large")
	errNotDict      = errors.New("reply is not a dictionary")
	errNoInterval   = errors.New("reply has no integer interval")
	errNoComplete   = errors.New("reply has no integer complete")
	errNoIncomplete = errors.New("reply has no integer incomplete")
	errNoPeers      = errors.New("reply has no peers string (compact=1 was sent)")
	errPeersLen     = errors.New("peers length is not a multiple of 6")
	errPeers6Len    = errors.New("peers6 length is not a multiple of 18")
	errNoFiles      = errors.New("scrape reply has no files dictionary")
	errFileMissing  = errors.New("scrape reply lacks a requested info hash")
	errFileCounts   = errors.New("scrape reply entry lacks integer complete/incomplete")
)

// StatusError is a reply whose status is not 200.
type StatusError struct{ Code int }

func (e *StatusError) Error() string { return "HTTP status " + strconv.Itoa(e.Code) }

// readHTTPResponse reads one reply from br into body[:0]. It understands
// Content-Length, chunked bodies, and bodies that end with the connection
// (no length, as an HTTP/1.0 server may send); closeConn reports that the
// server closes the connection after this reply.
func readHTTPResponse(br *bufio.Reader, body []byte) (status int, out []byte, closeConn bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, body[:0], true, err
	}
	// HTTP/1.x SSS reason
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, body[:0], true, errStatusLine
	}
	http10 := line[7] == '0'
	closeConn = http10
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, body[:0], true, errStatusLine
		}
		status = status*10 + int(c-'0')
	}
	length := int64(-1)
	chunked := false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return status, body[:0], true, err
		}
		line = trimCRLF(line)
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return status, body[:0], true, errHeader
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case asciiEqualFold(name, "content-length"):
			n, ok := parseUint(value, 10)
			if !ok {
				return status, body[:0], true, errHeader
			}
			length = int64(n)
		case asciiEqualFold(name, "transfer-encoding"):
			chunked = asciiContainsFold(value, "chunked")
		case asciiEqualFold(name, "connection"):
			if asciiContainsFold(value, "close") {
				closeConn = true
			} else if asciiContainsFold(value, "keep-alive") {
				closeConn = false
			}
		}
	}
	out = body[:0]
	switch {
	case chunked:
		for {
			line, err = br.ReadSlice('\n')
			if err != nil {
				return status, out, true, err
			}
			line = trimCRLF(line)
			if i := bytes.IndexByte(line, ';'); i >= 0 {
				line = line[:i]
			}
			n, ok := parseUint(bytes.TrimSpace(line), 16)
			if !ok || n > maxBody {
				return status, out, true, errChunk
			}
			if n == 0 {
				break
			}
			if len(out)+int(n) > maxBody {
				return status, out, true, errBodyTooLarge
			}
			if out, err = readN(br, out, int(n)); err != nil {
				return status, out, true, err
			}
			if line, err = br.ReadSlice('\n'); err != nil || len(trimCRLF(line)) != 0 {
				return status, out, true, errChunk
			}
		}
		for { // trailers
			line, err = br.ReadSlice('\n')
			if err != nil {
				return status, out, true, err
			}
			if len(trimCRLF(line)) == 0 {
				break
			}
		}
	case length >= 0:
		if length > maxBody {
			return status, out, true, errBodyTooLarge
		}
		if out, err = readN(br, out, int(length)); err != nil {
			return status, out, true, err
		}
	default:
		closeConn = true
		for {
			if len(out) == cap(out) {
				if len(out) >= maxBody {
					return status, out, true, errBodyTooLarge
				}
				out = append(out, 0)[:len(out)]
			}
			n, err := br.Read(out[len(out):cap(out)])
			out = out[:len(out)+n]
			if err == io.EOF {
				break
			}
			if err != nil {
				return status, out, true, err
			}
		}
	}
	return status, out, closeConn, nil
}

// readN appends exactly n bytes from br to b.
func readN(br *bufio.Reader, b []byte, n int) ([]byte, error) {
	start := len(b)
	if cap(b)-start < n {
		nb := make([]byte, start, start+n+n/2)
		copy(nb, b)
		b = nb
	}
	b = b[:start+n]
	if _, err := io.ReadFull(br, b[start:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return b[:start], err
	}
	return b, nil
}

// parseUint parses a decimal or hexadecimal number of at most 15 digits
// without allocating.
func parseUint(b []byte, base uint64) (uint64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		var d uint64
		switch {
		case '0' <= c && c <= '9':
			d = uint64(c - '0')
		case base == 16 && 'a' <= lower(c) && lower(c) <= 'f':
			d = uint64(lower(c)-'a') + 10
		default:
			return 0, false
		}
		n = n*base + d
	}
	return n, true
}

func trimCRLF(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\n' {
		b = b[:len(b)-1]
	}
	if len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	return b
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		if lower(b[i]) != s[i] {
			return false
		}
	}
	return true
}

func asciiContainsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if asciiEqualFold(b[i:i+len(s)], s) {
			return true
		}
	}
	return false
}

// decodeDict decodes a reply body, which must be canonical bencode (the
// strict bencode.Decode), and turns a "failure reason" into a
// *TrackerError.
func decodeDict(body []byte) (map[string]any, error) {
	v, err := bencode.Decode(body)
	if err != nil {
		return nil, fmt.Errorf("bad bencode: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errNotDict
	}
	if fr, ok := m["failure reason"]; ok {
		s, _ := fr.(string)
		return nil, &TrackerError{Msg: s}
	}
	return m, nil
}

func nonNegInt(m map[string]any, key string) bool {
	v, ok := m[key].(int64)
	return ok && v >= 0
}

// checkHTTPAnnounce checks an announce reply body and returns the number
// of peers in it.
func checkHTTPAnnounce(body []byte, numwant int) (int, error) {
	m, err := decodeDict(body)
	if err != nil {
		return 0, err
	}
	if !nonNegInt(m, "interval") {
		return 0, errNoInterval
	}
	if !nonNegInt(m, "complete") {
		return 0, errNoComplete
	}
	if !nonNegInt(m, "incomplete") {
		return 0, errNoIncomplete
	}
	peers, ok := m["peers"].(string)
	if !ok {
		return 0, errNoPeers
	}
	if len(peers)%6 != 0 {
		return 0, errPeersLen
	}
	n := len(peers) / 6
	if p6, ok := m["peers6"]; ok {
		s, ok := p6.(string)
		if !ok || len(s)%18 != 0 {
			return 0, errPeers6Len
		}
		n += len(s) / 18
	}
	if n > numwant {
		return 0, errTooManyPeers
	}
	return n, nil
}

// checkHTTPScrape checks that a scrape reply has an entry with counts for
// every requested hash.
func checkHTTPScrape(body []byte, hashes []bittorrent.InfoHash) error {
	m, err := decodeDict(body)
	if err != nil {
		return err
	}
	files, ok := m["files"].(map[string]any)
	if !ok {
		return errNoFiles
	}
	for i := range hashes {
		e, ok := files[string(hashes[i][:])]
		if !ok {
			return errFileMissing
		}
		d, ok := e.(map[string]any)
		if !ok || !nonNegInt(d, "complete") || !nonNegInt(d, "incomplete") {
			return errFileCounts
		}
	}
	return nil
}
