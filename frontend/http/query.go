package http

import (
	"net/netip"
	"strconv"
	"strings"

	"trackd/bittorrent"
	"trackd/tracker"
)

// Query parsing is done by hand rather than with net/url: info_hash and
// peer_id are raw bytes, not text, and the tracker's hot path should not
// build a map of strings per request. The rules are those of
// application/x-www-form-urlencoded, which BitTorrent clients follow: pairs
// separated by '&', "%XX" is the byte 0xXX, '+' is a space (clients that
// mean a literal '+' send %2B), anything else stands for itself.

// unescape appends the percent-decoding of s to dst. It reports false for a
// malformed escape ('%' not followed by two hex digits).
func unescape(dst []byte, s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%':
			if i+2 >= len(s) {
				return dst, false
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return dst, false
			}
			dst = append(dst, hi<<4|lo)
			i += 2
		case '+':
			dst = append(dst, ' ')
		default:
			dst = append(dst, c)
		}
	}
	return dst, true
}

// validEscapes reports whether every '%' in s starts a valid escape.
func validEscapes(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			if i+2 >= len(s) {
				return false
			}
			if _, ok := unhex(s[i+1]); !ok {
				return false
			}
			if _, ok := unhex(s[i+2]); !ok {
				return false
			}
			i += 2
		}
	}
	return true
}

func unhex(c byte) (byte, bool) {
	v := hexVal[c]
	return v, v != 0xff
}

// hexVal maps a hex digit to its value and any other byte to 0xff.
var hexVal = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range "0123456789abcdef" {
		t[c] = byte(i)
	}
	for i, c := range "ABCDEF" {
		t[c] = byte(10 + i)
	}
	return t
}()

// unescape20 decodes s, which must be exactly 20 bytes once decoded. It
// is unescape specialised for info_hash and peer_id, the longest values of
// every announce.
func unescape20(s string) (out [20]byte, ok bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		if n == len(out) {
			return out, false
		}
		switch c := s[i]; c {
		case '%':
			if i+2 >= len(s) {
				return out, false
			}
			hi, lo := hexVal[s[i+1]], hexVal[s[i+2]]
			if (hi|lo)&0xf0 != 0 {
				return out, false
			}
			out[n] = hi<<4 | lo
			i += 2
		case '+':
			out[n] = ' '
		default:
			out[n] = c
		}
		n++
	}
	return out, n == len(out)
}

// nextPair splits the next key=value pair off q. strings.IndexByte is
// vectorized, which matters: the long percent-encoded values make a
// byte-by-byte scan the parser's main cost.
func nextPair(q string) (key, value, rest string) {
	pair := q
	if i := strings.IndexByte(q, '&'); i >= 0 {
		pair, rest = q[:i], q[i+1:]
	}
	if i := strings.IndexByte(pair, '='); i >= 0 {
		return pair[:i], pair[i+1:], rest
	}
	return pair, "", rest
}

// announceQuery is an announce's parameters as the query gives them.
type announceQuery struct {
	req  tracker.AnnounceRequest
	port uint16
	// ip is the "ip" parameter, valid only if sent.
	ip netip.Addr
}

// Which required parameters a query carried.
const (
	haveInfoHash = 1 << iota
	havePeerID
	havePort
	haveLeft
	haveAll = haveInfoHash | havePeerID | havePort | haveLeft
)

// parseAnnounce parses an announce query. Unknown parameters are ignored,
// as BEP 3 asks; a known one that is malformed is an error naming it.
// "uploaded" and "downloaded" default to 0; "left" is required because a
// tracker cannot tell a seeder from a leecher without it.
func parseAnnounce(q string, out *announceQuery) error {
	*out = announceQuery{}
	out.req.NumWant = tracker.NumWantUnset
	var have int
	for q != "" {
		var k, v string
		k, v, q = nextPair(q)
		var ok bool
		switch k {
		case "info_hash":
			if have&haveInfoHash != 0 {
				return errDuplicate("info_hash")
			}
			out.req.InfoHash, ok = unescape20(v)
			if !ok {
				return errInvalid("info_hash", "must be 20 bytes, percent-encoded")
			}
			have |= haveInfoHash
		case "peer_id":
			out.req.PeerID, ok = unescape20(v)
			if !ok {
				return errInvalid("peer_id", "must be 20 bytes, percent-encoded")
			}
			have |= havePeerID
		case "port":
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil || n == 0 {
				return errInvalid("port", "must be a number from 1 to 65535")
			}
			out.port = uint16(n)
			have |= havePort
		case "uploaded":
			if out.req.Uploaded, ok = parseCount(v); !ok {
				return errInvalid("uploaded", "must be a number from 0 to 2^63-1")
			}
		case "downloaded":
			if out.req.Downloaded, ok = parseCount(v); !ok {
				return errInvalid("downloaded", "must be a number from 0 to 2^63-1")
			}
		case "left":
			if out.req.Left, ok = parseCount(v); !ok {
				return errInvalid("left", "must be a number from 0 to 2^63-1")
			}
			have |= haveLeft
		case "event":
			switch v {
			case "":
				out.req.Event = bittorrent.EventNone
			case "started":
				out.req.Event = bittorrent.EventStarted
			case "completed":
				out.req.Event = bittorrent.EventCompleted
			case "stopped":
				out.req.Event = bittorrent.EventStopped
			case "paused":
				// BEP 21's partial seeds announce "paused"; they stay
				// in the swarm like a regular announce.
				out.req.Event = bittorrent.EventNone
			default:
				return errInvalid("event", "must be started, completed, stopped or empty")
			}
		case "numwant":
			// Clients send numwant=-1 and other oddities; anything
			// that is not a sane number means "the default".
			if n, err := strconv.ParseInt(v, 10, 32); err == nil && n >= 0 {
				out.req.NumWant = int(n)
			}
		case "compact":
			out.req.Compact = v == "1"
		case "no_peer_id":
			out.req.NoPeerID = v == "1"
		case "ip":
			var buf [64]byte
			b, ok := unescape(buf[:0], v)
			if !ok {
				return errInvalid("ip", "malformed percent-encoding")
			}
			// A hostname or junk is ignored: the address the request
			// came from is used instead.
			if a, err := netip.ParseAddr(string(b)); err == nil {
				out.ip = a.Unmap()
			}
		case "key", "trackerid":
			// Accepted and not needed: trackd identifies a session by
			// (info_hash, ip, port) and hands out no tracker id. They
			// must still be well-formed.
			if !validEscapes(v) {
				return errInvalid(k, "malformed percent-encoding")
			}
		}
	}
	if have != haveAll {
		for _, p := range []struct {
			bit  int
			name string
		}{{haveInfoHash, "info_hash"}, {havePeerID, "peer_id"}, {havePort, "port"}, {haveLeft, "left"}} {
			if have&p.bit == 0 {
				return errMissing(p.name)
			}
		}
	}
	return nil
}

// parseCount parses a byte count: 0 to 2^63-1.
func parseCount(v string) (uint64, bool) {
	n, err := strconv.ParseInt(v, 10, 64)
	return uint64(n), err == nil && n >= 0
}

// parseScrape appends the info_hash values of a scrape query to hashes,
// stopping after max+1 of them: the tracker refuses more than max, and a
// hostile query should not make it decode more. Other parameters are
// ignored. No info_hash at all means a full scrape.
func parseScrape(q string, hashes []bittorrent.InfoHash, max int) ([]bittorrent.InfoHash, error) {
	for n := 0; q != "" && n <= max; {
		var k, v string
		k, v, q = nextPair(q)
		if k != "info_hash" {
			continue
		}
		n++
		h, ok := unescape20(v)
		if !ok {
			return hashes, errInvalid("info_hash", "must be 20 bytes, percent-encoded")
		}
		hashes = append(hashes, h)
	}
	return hashes, nil
}

func errMissing(name string) error {
	return tracker.ClientError("missing parameter " + name)
}

func errDuplicate(name string) error {
	return tracker.ClientError("parameter " + name + " given twice")
}

func errInvalid(name, why string) error {
	return tracker.ClientError("invalid " + name + ": " + why)
}
