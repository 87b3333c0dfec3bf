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
	haveAll = haveInfoHash | havePeerID | havePort
)

// parseAnnounce parses an announce query. It is strict only about what
// the tracker cannot do without: info_hash and peer_id (20 bytes each)
// and port (1 to 65535); each of them missing or malformed is an error
// naming it, and so is info_hash given twice. Everything else is read
// liberally, as real clients send it (see the README's "Bad input"):
//
//   - left: a number from 0 to 2^63-1; anything else (missing, negative,
//     2^63 or more such as 2^64-1, junk) means "unknown": a leecher
//     (tracker.LeftUnknown).
//   - event: started, completed or stopped; anything else ("", "empty",
//     BEP 21's "paused", unknown words) is a regular announce.
//   - uploaded, downloaded: a number from 0 to 2^63-1, else 0. The
//     tracker does not use them.
//   - numwant: a number from 0 to 2^31-1, else the default.
//   - ip: an address, else ignored (the request's source is used).
//   - key, trackerid and every unknown parameter are ignored, whatever
//     their value.
func parseAnnounce(q string, out *announceQuery) error {
	*out = announceQuery{}
	out.req.NumWant = tracker.NumWantUnset
	out.req.Left = tracker.LeftUnknown
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
			out.req.Uploaded, _ = parseCount(v)
		case "downloaded":
			out.req.Downloaded, _ = parseCount(v)
		case "left":
			if out.req.Left, ok = parseCount(v); !ok {
				out.req.Left = tracker.LeftUnknown
			}
		case "event":
			switch v {
			case "started":
				out.req.Event = bittorrent.EventStarted
			case "completed":
				out.req.Event = bittorrent.EventCompleted
			case "stopped":
				out.req.Event = bittorrent.EventStopped
			default:
				// "" and "empty" (BEP 3: the same as not present),
				// BEP 21's "paused" (a partial seed stays in the
				// swarm) and any other word: a regular announce.
				out.req.Event = bittorrent.EventNone
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
			// A hostname, a malformed escape or other junk is
			// ignored: the address the request came from is used
			// instead.
			var buf [64]byte
			if b, ok := unescape(buf[:0], v); ok {
				if a, err := netip.ParseAddr(string(b)); err == nil {
					out.ip = a.Unmap()
				}
			}
		}
		// key, trackerid, corrupt, supportcrypto, ...: not needed
		// (trackd identifies a session by info_hash, ip and port, and
		// hands out no tracker id), and ignored whatever their value.
	}
	if have != haveAll {
		for _, p := range []struct {
			bit  int
			name string
		}{{haveInfoHash, "info_hash"}, {havePeerID, "peer_id"}, {havePort, "port"}} {
			if have&p.bit == 0 {
				return errMissing(p.name)
			}
		}
	}
	return nil
}

// parseCount parses a byte count: 0 to 2^63-1. Anything else is 0 and
// false.
func parseCount(v string) (uint64, bool) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return uint64(n), true
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
