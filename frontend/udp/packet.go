package udp

import (
	"encoding/binary"
	"math"
	"net/netip"
	"time"

	"trackd/bittorrent"
	"trackd/tracker"
)

// The wire format of BEP 15. Every number is big-endian.
const (
	// protocolID is the magic of a connect request, where the connection
	// id will later be.
	protocolID = 0x41727101980

	actionConnect  = 0
	actionAnnounce = 1
	actionScrape   = 2
	actionError    = 3

	// headerLen is the request header: connection id, action,
	// transaction id. Anything shorter is not a tracker packet.
	headerLen = 16
	// replyHeaderLen is the reply header: action, transaction id.
	replyHeaderLen = 8
	connectLen     = 16
	// announceLen is an announce without BEP 41 options.
	announceLen = 98
	hashLen     = 20
	// maxScrapeHashes is the most info hashes one scrape may carry:
	// BEP 15 puts it at "about 74", what fits a 1500-byte packet.
	maxScrapeHashes = 74

	// announceReplyLen is an announce reply without peers.
	announceReplyLen = 20
	// maxPeers4 and maxPeers6 are the most peers an announce reply
	// carries, so that it fits one unfragmented datagram: a 1500-byte
	// Ethernet MTU less IPv4 and UDP headers (1472 bytes) for IPv4, the
	// 1280-byte minimum IPv6 MTU less IPv6 and UDP headers (1232 bytes)
	// for IPv6, since fragmented replies are often lost.
	maxPeers4 = (1472 - announceReplyLen) / 6  // 242
	maxPeers6 = (1232 - announceReplyLen) / 18 // 67
)

// The events of a UDP announce. libtorrent also sends 4 for BEP 21's
// "paused"; it, like every value past 3, is a regular announce.
const (
	udpEventNone      = 0
	udpEventCompleted = 1
	udpEventStarted   = 2
	udpEventStopped   = 3
	udpEventPaused    = 4
)

// BEP 41 option types.
const (
	optEndOfOptions = 0x0
	optNOP          = 0x1
	optURLData      = 0x2
)

// Errors sent to clients. Their texts are part of the protocol's
// observable behaviour: tests and clients see them. The client errors are
// held as error values so that returning one does not box a string on
// every bad packet.
const (
	errInvalidConnID = "invalid connection id"
	errInternal      = "internal tracker error"
)

var (
	errUnknownAction  error = tracker.ClientError("unknown action")
	errShortAnnounce  error = tracker.ClientError("announce packet too short")
	errBadOption      error = tracker.ClientError("malformed BEP 41 option")
	errNoScrapeHashes error = tracker.ClientError("scrape without info hashes")
	errPartialHash    error = tracker.ClientError("scrape packet ends in a partial info hash")
	errManyHashes     error = tracker.ClientError("too many info hashes: at most 74 per scrape")
)

// parseAnnounce decodes an announce packet (of any connection id: that is
// the caller's business) into req. req.Addr gets the "ip" field (the zero
// Addr when it is 0) and the announced port; the caller decides whether to
// believe the address. Compact is set, Family is left to the caller.
//
// BEP 41 options after the announce are checked (checkOptions); their URL
// data (a request path such as "/announce?passkey=...") is not used:
// trackd tracks by info hash alone.
func parseAnnounce(pkt []byte, req *tracker.AnnounceRequest) error {
	*req = tracker.AnnounceRequest{}
	if len(pkt) < announceLen {
		return errShortAnnounce
	}
	be := binary.BigEndian
	copy(req.InfoHash[:], pkt[16:36])
	copy(req.PeerID[:], pkt[36:56])
	downloaded := int64(be.Uint64(pkt[56:64]))
	left := int64(be.Uint64(pkt[64:72]))
	uploaded := int64(be.Uint64(pkt[72:80]))
	event := be.Uint32(pkt[80:84])
	ip := be.Uint32(pkt[84:88])
	// pkt[88:92] is the key. trackd tells sessions apart by address and
	// port (store.Announce), so it is not needed.
	numWant := int32(be.Uint32(pkt[92:96]))
	port := be.Uint16(pkt[96:98])

	req.Downloaded, req.Left, req.Uploaded = uint64(max(downloaded, 0)), uint64(left), uint64(max(uploaded, 0))
	if left < 0 {
		req.Left = tracker.LeftUnknown
	}
	switch event {
	case udpEventCompleted:
		req.Event = bittorrent.EventCompleted
	case udpEventStarted:
		req.Event = bittorrent.EventStarted
	case udpEventStopped:
		req.Event = bittorrent.EventStopped
	default:
		// 0, and BEP 21's "paused" (a partial seed stays in the
		// swarm) and any other value: a regular announce, as over
		// HTTP.
		req.Event = bittorrent.EventNone
	}
	req.NumWant = int(numWant)
	if numWant < 0 {
		req.NumWant = tracker.NumWantUnset
	}
	var addr netip.Addr
	if ip != 0 {
		var a [4]byte
		be.PutUint32(a[:], ip)
		addr = netip.AddrFrom4(a)
	}
	req.Addr = netip.AddrPortFrom(addr, port)
	req.Compact = true

	return checkOptions(pkt[announceLen:])
}

// checkOptions checks the BEP 41 options that follow an announce: NOPs and
// URLData options (a length byte and as many bytes of a request path, cut
// in pieces of at most 255 bytes), up to EndOfOptions or the end of the
// packet; what follows EndOfOptions is ignored. An unknown option type, or
// an option whose length runs past the end, is an error: the options
// cannot be skipped without knowing their layout, and a request path cut
// short could mean another request.
func checkOptions(opts []byte) error {
	for i := 0; i < len(opts); {
		switch opts[i] {
		case optEndOfOptions:
			return nil
		case optNOP:
			i++
		case optURLData:
			if i+1 >= len(opts) {
				return errBadOption
			}
			n := int(opts[i+1])
			start := i + 2
			if n > len(opts)-start {
				return errBadOption
			}
			i = start + n
		default:
			return errBadOption
		}
	}
	return nil
}

// parseScrape appends the info hashes of a scrape packet to hashes.
func parseScrape(pkt []byte, hashes []bittorrent.InfoHash) ([]bittorrent.InfoHash, error) {
	body := pkt[headerLen:]
	switch {
	case len(body)%hashLen != 0:
		return hashes, errPartialHash
	case len(body) == 0:
		return hashes, errNoScrapeHashes
	case len(body)/hashLen > maxScrapeHashes:
		return hashes, errManyHashes
	}
	for ; len(body) > 0; body = body[hashLen:] {
		hashes = append(hashes, bittorrent.InfoHash(body[:hashLen]))
	}
	return hashes, nil
}

// appendHeader appends a reply header: action and the request's
// transaction id (tid, 4 bytes).
func appendHeader(b []byte, action uint32, tid []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, action)
	return append(b, tid[:4]...)
}

// appendConnect appends a connect reply.
func appendConnect(b []byte, tid []byte, id uint64) []byte {
	b = appendHeader(b, actionConnect, tid)
	return binary.BigEndian.AppendUint64(b, id)
}

// appendAnnounce appends an announce reply with the peers of one family:
// 6 bytes per IPv4 peer, or 18 per IPv6 peer. Peers of the other family
// (which the store does not return when asked for one) are left out.
func appendAnnounce(b []byte, tid []byte, resp *tracker.AnnounceResponse, fam bittorrent.Family) []byte {
	b = appendHeader(b, actionAnnounce, tid)
	b = appendInt32(b, uint64(max(resp.Interval/time.Second, 0)))
	b = appendInt32(b, uint64(resp.Incomplete))
	b = appendInt32(b, uint64(resp.Complete))
	v6 := fam == bittorrent.IPv6Only
	if resp.Compacted {
		if v6 {
			return append(b, resp.Compact6...)
		}
		return append(b, resp.Compact4...)
	}
	for i := range resp.Peers {
		ap := resp.Peers[i].Addr
		a := ap.Addr()
		if a.Is4() == v6 {
			continue
		}
		if v6 {
			ip := a.As16()
			b = append(b, ip[:]...)
		} else {
			ip := a.As4()
			b = append(b, ip[:]...)
		}
		b = binary.BigEndian.AppendUint16(b, ap.Port())
	}
	return b
}

// appendScrape appends a scrape reply.
func appendScrape(b []byte, tid []byte, files []bittorrent.Stats) []byte {
	b = appendHeader(b, actionScrape, tid)
	for _, f := range files {
		b = appendInt32(b, uint64(f.Seeders))
		b = appendInt32(b, uint64(f.Downloaded))
		b = appendInt32(b, uint64(f.Leechers))
	}
	return b
}

// appendError appends an error reply. limit > 0 caps the whole reply at
// limit bytes, cutting the message short: what is sent to a sender that has not
// proven it receives at its address must be no larger than what it sent,
// or the tracker would amplify attacks on forged addresses. limit must be
// at least replyHeaderLen.
func appendError(b []byte, tid []byte, msg string, limit int) []byte {
	b = appendHeader(b, actionError, tid)
	if limit > 0 && len(msg) > limit-replyHeaderLen {
		msg = msg[:limit-replyHeaderLen]
	}
	return append(b, msg...)
}

// appendInt32 appends n as a BEP 15 int32, saturating at 2^31-1.
func appendInt32(b []byte, n uint64) []byte {
	if n > math.MaxInt32 {
		n = math.MaxInt32
	}
	return binary.BigEndian.AppendUint32(b, uint32(n))
}
