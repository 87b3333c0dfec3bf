package loadgen

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strconv"

	"trackd/bittorrent"
)

// The generator's WebSocket messages, as webtorrent's bittorrent-tracker
// client sends them (lib/client/websocket-tracker.js):
//
//	{"action":"announce","info_hash":…,"peer_id":…,"numwant":K,"uploaded":0,
//	 "downloaded":0,"left":L,"event":"started","offers":[{"offer_id":…,
//	 "offer":{"type":"offer","sdp":…}},…]}
//	{"action":"announce","info_hash":…,"peer_id":…,"to_peer_id":…,
//	 "offer_id":…,"answer":{"type":"answer","sdp":…}}
//
// An offer id says who made the offer and when, so that an answer can be
// checked without a table of offers in flight:
//
//	bytes 0–3   the offering connection's index
//	bytes 4–7   a sequence number of that connection
//	bytes 8–15  the send time (the generator's monotonic nanoseconds)
//	bytes 16–19 a check over the above, the info hash and the run's salt
//
// The offer's and the answer's SDPs are derived from the offer id, so a
// relayed offer or answer is checked byte for byte.

// wsOfferID builds an offer id.
func wsOfferID(conn, seq uint32, sent int64, ih *bittorrent.InfoHash, salt uint64) (id [20]byte) {
	binary.BigEndian.PutUint32(id[0:4], conn)
	binary.BigEndian.PutUint32(id[4:8], seq)
	binary.BigEndian.PutUint64(id[8:16], uint64(sent))
	binary.BigEndian.PutUint32(id[16:20], wsOfferCheck(&id, ih, salt))
	return id
}

func wsOfferCheck(id *[20]byte, ih *bittorrent.InfoHash, salt uint64) uint32 {
	x := binary.BigEndian.Uint64(id[0:8]) ^ mix64(binary.BigEndian.Uint64(id[8:16])^salt)
	x ^= mix64(binary.BigEndian.Uint64(ih[0:8]) ^ uint64(binary.BigEndian.Uint32(ih[16:20])))
	return uint32(mix64(x))
}

// parseOfferID checks an offer id made by wsOfferID for info hash ih and
// returns its connection and send time.
func parseOfferID(id *[20]byte, ih *bittorrent.InfoHash, salt uint64) (conn uint32, sent int64, ok bool) {
	if binary.BigEndian.Uint32(id[16:20]) != wsOfferCheck(id, ih, salt) {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(id[0:4]), int64(binary.BigEndian.Uint64(id[8:16])), true
}

// wsSDPs makes the fake SDPs: a session description of a WebRTC data
// channel like a browser's (with trickle off, so with candidates), whose
// variable part is derived from the offer id, padded with candidate lines
// to the configured size.
type wsSDPs struct {
	size   int
	filler []byte // candidate lines
}

func newWSSDPs(size int) *wsSDPs {
	s := &wsSDPs{size: size}
	for i := 0; len(s.filler) < size; i++ {
		s.filler = append(s.filler, "a=candidate:"...)
		s.filler = strconv.AppendInt(s.filler, int64(1000000000+i*7919), 10)
		s.filler = append(s.filler, " 1 udp 2122260223 127.0.0."...)
		s.filler = strconv.AppendInt(s.filler, int64(1+i%250), 10)
		s.filler = append(s.filler, ' ')
		s.filler = strconv.AppendInt(s.filler, int64(50000+i*13%15000), 10)
		s.filler = append(s.filler, " typ host generation 0 network-id 1 network-cost 10\r\n"...)
	}
	return s
}

// appendSDP appends the SDP of an offer (answer false) or answer to the
// offer id to dst, as plain text: size bytes, or the fixed part if that is
// longer.
func (s *wsSDPs) appendSDP(dst []byte, id *[20]byte, answer bool) []byte {
	const hex = "0123456789abcdef"
	start := len(dst)
	dst = append(dst, "v=0\r\no=- "...)
	dst = strconv.AppendUint(dst, binary.BigEndian.Uint64(id[8:16])>>1, 10)
	dst = append(dst, " 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS\r\n"...)
	dst = append(dst, "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:"...)
	for _, c := range id[0:4] {
		dst = append(dst, hex[c>>4], hex[c&15])
	}
	dst = append(dst, "\r\na=ice-pwd:"...)
	for _, c := range id[4:16] {
		dst = append(dst, hex[c>>4], hex[c&15])
	}
	dst = append(dst, "\r\na=ice-options:trickle\r\na=fingerprint:sha-256 "...)
	for i, c := range id {
		if i > 0 {
			dst = append(dst, ':')
		}
		dst = append(dst, upperHex[c>>4], upperHex[c&15])
	}
	if answer {
		dst = append(dst, "\r\na=setup:active\r\n"...)
	} else {
		dst = append(dst, "\r\na=setup:actpass\r\n"...)
	}
	dst = append(dst, "a=mid:0\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n"...)
	// Candidate lines up to the size, the last one cut short but ended.
	if n := s.size - (len(dst) - start); n > 2 {
		dst = append(dst, s.filler[:n-2]...)
		dst = append(dst, "\r\n"...)
	}
	return dst
}

const upperHex = "0123456789ABCDEF"

// wsAnnounce is what an announce says besides its offers.
type wsAnnounce struct {
	infoHash bittorrent.InfoHash
	peerID   bittorrent.PeerID
	numWant  int
	left     int64
	event    string // "", "started", "stopped", "completed"
}

// appendWSAnnounce appends an announce message with the given offer ids
// (sdps makes their SDPs; scratch is a buffer for them).
func appendWSAnnounce(dst []byte, a *wsAnnounce, ids [][20]byte, sdps *wsSDPs, scratch *[]byte) []byte {
	dst = append(dst, `{"action":"announce","info_hash":`...)
	dst = appendBinaryString(dst, a.infoHash[:])
	dst = append(dst, `,"peer_id":`...)
	dst = appendBinaryString(dst, a.peerID[:])
	dst = append(dst, `,"numwant":`...)
	dst = strconv.AppendInt(dst, int64(a.numWant), 10)
	dst = append(dst, `,"uploaded":0,"downloaded":0,"left":`...)
	dst = strconv.AppendInt(dst, a.left, 10)
	if a.event != "" {
		dst = append(dst, `,"event":"`...)
		dst = append(dst, a.event...)
		dst = append(dst, '"')
	}
	if len(ids) > 0 {
		dst = append(dst, `,"offers":[`...)
		for i := range ids {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"offer_id":`...)
			dst = appendBinaryString(dst, ids[i][:])
			dst = append(dst, `,"offer":{"type":"offer","sdp":`...)
			*scratch = sdps.appendSDP((*scratch)[:0], &ids[i], false)
			dst = appendJSONString(dst, *scratch)
			dst = append(dst, "}}"...)
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

// appendWSAnswer appends the answer of peer from to the offer id of peer
// to.
func appendWSAnswer(dst []byte, ih *bittorrent.InfoHash, from, to *[20]byte, offerID *[20]byte, sdps *wsSDPs, scratch *[]byte) []byte {
	dst = append(dst, `{"action":"announce","info_hash":`...)
	dst = appendBinaryString(dst, ih[:])
	dst = append(dst, `,"peer_id":`...)
	dst = appendBinaryString(dst, from[:])
	dst = append(dst, `,"to_peer_id":`...)
	dst = appendBinaryString(dst, to[:])
	dst = append(dst, `,"offer_id":`...)
	dst = appendBinaryString(dst, offerID[:])
	dst = append(dst, `,"answer":{"type":"answer","sdp":`...)
	*scratch = sdps.appendSDP((*scratch)[:0], offerID, true)
	dst = appendJSONString(dst, *scratch)
	return append(dst, "}}"...)
}

// The kinds of message the generator receives.
const (
	wsKindReply  = iota + 1 // the reply to an announce
	wsKindOffer             // an offer relayed from another peer
	wsKindAnswer            // an answer relayed to one of our offers
)

// wsChecker verifies received messages. The buffers make it allocation
// free; it is not safe for concurrent use.
type wsChecker struct {
	salt uint64
	sdps *wsSDPs
	want []byte // expected SDP
	got  []byte // received SDP, unescaped
	esc  []byte // expected SDP, escaped as we escape it
}

// classify checks the fields every message must have and tells what it
// is; a failure reason is returned as an error.
func (c *wsChecker) classify(m *wsMsg) (int, error) {
	if m.has&wsHasFailure != 0 {
		return 0, errors.New("failure reason: " + m.failure)
	}
	if m.has&wsHasAction == 0 {
		return 0, errors.New("no action")
	}
	if m.action != "announce" {
		return 0, errors.New("unexpected action " + strconv.Quote(m.action))
	}
	if m.has&wsHasInfoHash == 0 {
		return 0, errors.New("no info_hash")
	}
	switch {
	case m.has&wsHasOffer != 0 && m.has&wsHasAnswer != 0:
		return 0, errors.New("both offer and answer")
	case m.has&wsHasOffer != 0:
		if m.has&(wsHasPeerID|wsHasOfferID) != wsHasPeerID|wsHasOfferID {
			return 0, errors.New("relayed offer without peer_id or offer_id")
		}
		return wsKindOffer, nil
	case m.has&wsHasAnswer != 0:
		if m.has&(wsHasPeerID|wsHasOfferID) != wsHasPeerID|wsHasOfferID {
			return 0, errors.New("relayed answer without peer_id or offer_id")
		}
		return wsKindAnswer, nil
	}
	// An announce reply: interval, complete and incomplete.
	if m.has&wsHasInterval == 0 || m.interval <= 0 {
		return 0, errors.New("announce reply without a positive interval")
	}
	if m.has&wsHasComplete == 0 || m.has&wsHasIncomplete == 0 {
		return 0, errors.New("announce reply without complete and incomplete")
	}
	if m.complete < 0 || m.incomplete < 0 {
		return 0, errors.New("announce reply with negative counts")
	}
	if m.has&wsHasOffers != 0 {
		return 0, errors.New("announce reply with offers")
	}
	return wsKindReply, nil
}

// checkSDP verifies a relayed offer or answer object against the one the
// offer id stands for.
func (c *wsChecker) checkSDP(o *wsSDP, id *[20]byte, answer bool) error {
	typ := "offer"
	if answer {
		typ = "answer"
	}
	if o.typ != typ {
		return errors.New(typ + ": type is " + strconv.Quote(o.typ))
	}
	c.want = c.sdps.appendSDP(c.want[:0], id, answer)
	c.esc = appendJSONString(c.esc[:0], c.want)
	if bytes.Equal(o.sdp, c.esc[1:len(c.esc)-1]) {
		return nil
	}
	// The tracker may escape differently: compare the text.
	c.got = unescapeJSON(c.got[:0], o.sdp)
	if !bytes.Equal(c.got, c.want) {
		return errors.New(typ + ": sdp differs from the one sent")
	}
	return nil
}

// checkOffer verifies a relayed offer: its offer id is one of ours for this
// info hash, its peer_id is the offering connection's (peerOf gives a
// connection's peer id), and its SDP is the one sent.
func (c *wsChecker) checkOffer(m *wsMsg, peerOf func(conn uint32) ([20]byte, bool)) (from uint32, err error) {
	ih := bittorrent.InfoHash(m.infoHash)
	conn, _, ok := parseOfferID(&m.offerID, &ih, c.salt)
	if !ok {
		return 0, errors.New("offer: offer_id or info_hash is not the one sent")
	}
	if id, ok := peerOf(conn); !ok || id != m.peerID {
		return 0, errors.New("offer: peer_id is not the offering peer's")
	}
	return conn, c.checkSDP(&m.offer, &m.offerID, false)
}

// checkAnswer verifies a relayed answer that connection conn received: the
// offer id is one conn made for this info hash, and the SDP is the answer
// to it. It returns when the offer was sent.
func (c *wsChecker) checkAnswer(m *wsMsg, conn uint32) (sent int64, err error) {
	ih := bittorrent.InfoHash(m.infoHash)
	owner, sent, ok := parseOfferID(&m.offerID, &ih, c.salt)
	if !ok {
		return 0, errors.New("answer: offer_id or info_hash is not one sent")
	}
	if owner != conn {
		return 0, errors.New("answer: delivered to a peer that did not make the offer")
	}
	if !bytes.HasPrefix(m.peerID[:], []byte(peerIDPrefix)) {
		return 0, errors.New("answer: peer_id is not a simulated peer's")
	}
	return sent, c.checkSDP(&m.answer, &m.offerID, true)
}
