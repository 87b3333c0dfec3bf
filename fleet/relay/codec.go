package relay

import (
	"encoding/binary"
	"errors"

	"trackd/bittorrent"
	"trackd/fleet"
)

// The wire format of one message between instances (a frame): a header,
// then entries, each a kind byte and its fields, until the end.
//
//	header:  magic ("wr") | version (1 byte, 1) | origin instance (8 bytes, not zero)
//	change:  1 | info hash (20) | peer id (20) | flags (1)
//	message: 2 | info hash (20) | to peer id (20) | length (uvarint, 1..MaxMessageBytes) | message
//	bye:     3
//	sync:    4
//	seq:     5 | sequence number (8 bytes, big endian, not zero)
//	hint:    6 | info hash (20) | peer id (20) | flags (1) | sequence number (8, not zero)
//	dump:    7 | sequence number (8, not zero)
//
// flags: bits 0-1 the op (0 announce, 1 completed, 2 leave), bit 2 set
// for a seeder; the other bits and op 3 are invalid. A header alone is a
// heartbeat. A bye says the origin is shutting down: its peers go now. A
// sync asks the receiver for all its local peers (as changes).
//
// The changes an instance broadcasts are numbered, from 1: a seq entry
// gives the number of the change after it (the following ones count up
// from it). A hint repeats a change, with its number, sent to one
// instance directly ahead of an offer; it is stale, and skipped, if the
// receiver already applied that change or a later one. A dump entry
// says the changes after it in the frame are a dump of the sender's
// peers, made when its next change was to be that number: one of them
// is stale, and skipped, if the receiver has applied a leave of that
// peer numbered from it on.
//
// The magic tells the relay's messages from others on the same Messenger
// (the fleet's own): a message without it is foreign, not invalid.
//
// The parser is strict: anything else (a short field, an unknown kind or
// flag, a length out of bounds, bytes after the last entry's end that
// make no entry) refuses the whole frame.
const (
	magic     = "wr"
	version   = 1
	headerLen = len(magic) + 1 + 8

	kindChange  = 1
	kindMessage = 2
	kindBye     = 3
	kindSync    = 4
	kindSeq     = 5
	kindHint    = 6
	kindDump    = 7

	changeLen = 1 + 20 + 20 + 1
	seqLen    = 1 + 8
	hintLen   = changeLen + 8
)

// MaxMessageBytes is the largest message relayed to another instance's
// peer: a WebTorrent offer or answer as package frontend/ws formats it
// (it bounds the offer or answer object to 16 KiB by default). A larger
// one is refused by the remote peer's Send and by the parser.
const MaxMessageBytes = 64 << 10

// op is what a change does to the peer.
type op uint8

const (
	opAnnounce  op = iota // joins or refreshes (started, update, none)
	opCompleted           // joins or refreshes, and counts a download if it now seeds
	opLeave               // leaves (stopped, or its connection closed)
)

const (
	flagOpMask = 0x03
	flagSeeder = 0x04
)

// opOf is the op an announce's event makes.
func opOf(ev bittorrent.Event) op {
	switch ev {
	case bittorrent.EventStopped:
		return opLeave
	case bittorrent.EventCompleted:
		return opCompleted
	}
	return opAnnounce
}

// entry is one entry of a frame, as parsed: msg points into the frame.
type entry struct {
	kind   byte
	ih     bittorrent.InfoHash
	id     bittorrent.PeerID // the changed peer, or a message's recipient
	op     op
	seeder bool
	seq    uint64 // a seq's or a hint's
	msg    []byte
}

var (
	errShort   = errors.New("relay: frame truncated")
	errVersion = errors.New("relay: unknown frame version")
	errForeign = errors.New("relay: not a relay message")
	errOrigin  = errors.New("relay: zero origin instance")
	errKind    = errors.New("relay: unknown entry kind")
	errFlags   = errors.New("relay: invalid change flags")
	errLength  = errors.New("relay: message length out of bounds")
	errSeq     = errors.New("relay: zero sequence number")
)

func appendHeader(b []byte, origin fleet.Instance) []byte {
	b = append(b, magic...)
	b = append(b, version)
	return append(b, origin[:]...)
}

func appendChange(b []byte, ih bittorrent.InfoHash, id bittorrent.PeerID, o op, seeder bool) []byte {
	return appendChangeKind(b, kindChange, ih, id, o, seeder)
}

func appendChangeKind(b []byte, kind byte, ih bittorrent.InfoHash, id bittorrent.PeerID, o op, seeder bool) []byte {
	f := byte(o)
	if seeder {
		f |= flagSeeder
	}
	b = append(b, kind)
	b = append(b, ih[:]...)
	b = append(b, id[:]...)
	return append(b, f)
}

func appendHint(b []byte, ih bittorrent.InfoHash, id bittorrent.PeerID, o op, seeder bool, seq uint64) []byte {
	b = appendChangeKind(b, kindHint, ih, id, o, seeder)
	return binary.BigEndian.AppendUint64(b, seq)
}

func appendSeq(b []byte, seq uint64) []byte {
	return appendSeqKind(b, kindSeq, seq)
}

func appendSeqKind(b []byte, kind byte, seq uint64) []byte {
	b = append(b, kind)
	return binary.BigEndian.AppendUint64(b, seq)
}

// messageLen is the size of a message entry for msg.
func messageLen(msg []byte) int {
	return 1 + 20 + 20 + uvarintLen(uint64(len(msg))) + len(msg)
}

func appendMessage(b []byte, ih bittorrent.InfoHash, to bittorrent.PeerID, msg []byte) []byte {
	b = append(b, kindMessage)
	b = append(b, ih[:]...)
	b = append(b, to[:]...)
	b = binary.AppendUvarint(b, uint64(len(msg)))
	return append(b, msg...)
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// frameReader reads a frame's entries in order.
type frameReader struct {
	origin fleet.Instance
	rest   []byte
}

// readHeader checks frame's header and returns a reader of its entries.
func readHeader(frame []byte) (frameReader, error) {
	var fr frameReader
	if len(frame) >= len(magic) && string(frame[:len(magic)]) != magic {
		return fr, errForeign
	}
	if len(frame) < headerLen {
		return fr, errShort
	}
	if frame[len(magic)] != version {
		return fr, errVersion
	}
	copy(fr.origin[:], frame[len(magic)+1:headerLen])
	if fr.origin == (fleet.Instance{}) {
		return fr, errOrigin
	}
	fr.rest = frame[headerLen:]
	return fr, nil
}

// next reads the next entry into e: false (and no error) at the end.
func (fr *frameReader) next(e *entry) (bool, error) {
	b := fr.rest
	if len(b) == 0 {
		return false, nil
	}
	e.kind = b[0]
	switch e.kind {
	case kindBye, kindSync:
		fr.rest = b[1:]
		return true, nil
	case kindSeq, kindDump:
		if len(b) < seqLen {
			return false, errShort
		}
		e.seq = binary.BigEndian.Uint64(b[1:seqLen])
		if e.seq == 0 {
			return false, errSeq
		}
		fr.rest = b[seqLen:]
		return true, nil
	case kindChange, kindHint:
		n := changeLen
		if e.kind == kindHint {
			n = hintLen
		}
		if len(b) < n {
			return false, errShort
		}
		copy(e.ih[:], b[1:21])
		copy(e.id[:], b[21:41])
		f := b[41]
		if f&^(flagOpMask|flagSeeder) != 0 || op(f&flagOpMask) > opLeave {
			return false, errFlags
		}
		e.op, e.seeder, e.msg, e.seq = op(f&flagOpMask), f&flagSeeder != 0, nil, 0
		if e.kind == kindHint {
			if e.seq = binary.BigEndian.Uint64(b[changeLen:hintLen]); e.seq == 0 {
				return false, errSeq
			}
		}
		fr.rest = b[n:]
		return true, nil
	case kindMessage:
		if len(b) < 1+20+20+1 {
			return false, errShort
		}
		copy(e.ih[:], b[1:21])
		copy(e.id[:], b[21:41])
		n, k := binary.Uvarint(b[41:])
		switch {
		case k == 0:
			return false, errShort
		case k < 0 || n == 0 || n > MaxMessageBytes || k != uvarintLen(n):
			// k != uvarintLen(n): a padded varint; one encoding only
			return false, errLength
		}
		b = b[41+k:]
		if uint64(len(b)) < n {
			return false, errShort
		}
		e.msg = b[:n:n]
		e.op, e.seeder = 0, false
		fr.rest = b[n:]
		return true, nil
	}
	return false, errKind
}

// checkFrame parses the whole of frame and returns its origin, or the
// first error: a frame is applied only once it is known good.
func checkFrame(frame []byte) (fleet.Instance, error) {
	fr, err := readHeader(frame)
	if err != nil {
		return fleet.Instance{}, err
	}
	var e entry
	for {
		ok, err := fr.next(&e)
		if err != nil {
			return fleet.Instance{}, err
		}
		if !ok {
			return fr.origin, nil
		}
	}
}
