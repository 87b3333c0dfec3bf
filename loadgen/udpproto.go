package loadgen

import (
	"encoding/binary"
	"errors"
	"strconv"

	"trackd/bittorrent"
)

// BEP 15 constants.
const (
	udpProtocolID = 0x41727101980

	actionConnect  = 0
	actionAnnounce = 1
	actionScrape   = 2
	actionError    = 3

	udpConnectLen     = 16
	udpAnnounceLen    = 98
	udpScrapeHdrLen   = 16
	udpAnnounceHdrLen = 20 // reply: action, tx, interval, leechers, seeders
	udpScrapeReplyHdr = 8

	// MaxScrapeHashes is the most info hashes in one generated scrape.
	MaxScrapeHashes = 74 // (1500 − 20 − 8 − 16) / 20: one scrape fits a packet

)

// leftLeecher is the "left" a leecher announces.
const leftLeecher = 1 << 30

// putConnect writes a connect request into b[:16] and returns it.
func putConnect(b []byte, tx uint32) []byte {
	b = b[:udpConnectLen]
	binary.BigEndian.PutUint64(b[0:], udpProtocolID)
	binary.BigEndian.PutUint32(b[8:], actionConnect)
	binary.BigEndian.PutUint32(b[12:], tx)
	return b
}

// initAnnounce writes the fields of an announce request that never change
// (action, downloaded, uploaded, ip, numwant) into b[:98]: the template
// that patchAnnounce completes.
func initAnnounce(b []byte, numwant int) []byte {
	b = b[:udpAnnounceLen]
	clear(b)
	binary.BigEndian.PutUint32(b[8:], actionAnnounce)
	// downloaded 56:64, uploaded 72:80 and ip 84:88 stay zero.
	binary.BigEndian.PutUint32(b[92:], uint32(int32(numwant)))
	return b
}

// patchAnnounce fills in the per-request fields of an announce template
// made by initAnnounce. A completed announce has left=0 (the download is
// finished), whatever the peer's seeder flag.
func patchAnnounce(b []byte, connID uint64, tx uint32, p *Peer, ev event) {
	_ = b[udpAnnounceLen-1]
	binary.BigEndian.PutUint64(b[0:], connID)
	binary.BigEndian.PutUint32(b[12:], tx)
	copy(b[16:36], p.InfoHash[:])
	copy(b[36:56], p.ID[:])
	left := uint64(0)
	if !p.Seeder && ev != evCompleted {
		left = leftLeecher
	}
	binary.BigEndian.PutUint64(b[64:], left)
	binary.BigEndian.PutUint32(b[80:], uint32(ev))
	binary.BigEndian.PutUint32(b[88:], p.Key)
	binary.BigEndian.PutUint16(b[96:], p.Port)
}

// putScrape writes a scrape request for hashes into b and returns it; b
// must hold 16 + 20·len(hashes) bytes.
func putScrape(b []byte, connID uint64, tx uint32, hashes []bittorrent.InfoHash) []byte {
	b = b[:udpScrapeHdrLen+20*len(hashes)]
	binary.BigEndian.PutUint64(b[0:], connID)
	binary.BigEndian.PutUint32(b[8:], actionScrape)
	binary.BigEndian.PutUint32(b[12:], tx)
	for i := range hashes {
		copy(b[16+20*i:], hashes[i][:])
	}
	return b
}

// Reply check errors. Each is counted under its message.
var (
	errShort         = errors.New("reply too short")
	errWrongTx       = errors.New("transaction id not echoed")
	errWrongAction   = errors.New("wrong action in reply")
	errConnectLen    = errors.New("connect reply is not 16 bytes")
	errAnnounceLen   = errors.New("announce reply length is not 20 + 6n (18n for IPv6)")
	errTooManyPeers  = errors.New("more peers than numwant")
	errScrapeLen     = errors.New("scrape reply length is not 8 + 12 per hash")
	errScrapeCounts  = errors.New("scrape reply has impossible counts")
	errUnknownTx     = errors.New("reply to no request in flight (unknown transaction id)")
	errWrongSender   = errors.New("reply from another instance than the request went to")
	errBadSwarmCount = errors.New("announce reply has impossible counts")
)

// TrackerError is a refusal sent by the tracker: a UDP error packet or an
// HTTP "failure reason".
type TrackerError struct{ Msg string }

func (e *TrackerError) Error() string { return "tracker error: " + strconv.Quote(e.Msg) }

// udpWant is what a reply must match.
type udpWant struct {
	action   uint32
	tx       uint32
	numwant  int // announce: most peers allowed
	hashes   int // scrape: entries expected
	peerSize int // announce: 6 for IPv4, 18 for IPv6
}

// udpGot is what a valid reply said.
type udpGot struct {
	connID uint64 // connect
	peers  int    // announce
}

// checkUDPReply checks a reply against what its request expects. An error
// packet for the request's transaction is returned as a *TrackerError.
func checkUDPReply(b []byte, want udpWant) (udpGot, error) {
	var got udpGot
	if len(b) < 8 {
		return got, errShort
	}
	action := binary.BigEndian.Uint32(b[0:])
	if binary.BigEndian.Uint32(b[4:]) != want.tx {
		return got, errWrongTx
	}
	if action == actionError && want.action != actionError {
		return got, &TrackerError{Msg: string(b[8:])}
	}
	if action != want.action {
		return got, errWrongAction
	}
	switch action {
	case actionConnect:
		if len(b) != udpConnectLen {
			return got, errConnectLen
		}
		got.connID = binary.BigEndian.Uint64(b[8:])
	case actionAnnounce:
		if len(b) < udpAnnounceHdrLen || (len(b)-udpAnnounceHdrLen)%want.peerSize != 0 {
			return got, errAnnounceLen
		}
		if int32(binary.BigEndian.Uint32(b[12:])) < 0 || int32(binary.BigEndian.Uint32(b[16:])) < 0 {
			return got, errBadSwarmCount
		}
		got.peers = (len(b) - udpAnnounceHdrLen) / want.peerSize
		if got.peers > want.numwant {
			return got, errTooManyPeers
		}
	case actionScrape:
		if len(b) != udpScrapeReplyHdr+12*want.hashes {
			return got, errScrapeLen
		}
		for i := udpScrapeReplyHdr; i < len(b); i += 4 {
			if int32(binary.BigEndian.Uint32(b[i:])) < 0 {
				return got, errScrapeCounts
			}
		}
	}
	return got, nil
}
