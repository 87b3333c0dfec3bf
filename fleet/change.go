package fleet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"trackd/bittorrent"
)

// Change is one announce an instance applied, as the others replay it:
// what a store.Announce says about the swarm, without what it asks
// (NumWant, Family).
type Change struct {
	InfoHash bittorrent.InfoHash
	// Peer is the announcing peer. Its ID is sent only when it is not
	// zero (the origin keeps ids: store.Options.PeerIDs); a zero ID costs
	// nothing on the wire.
	Peer   bittorrent.Peer
	Event  bittorrent.Event
	Seeder bool
}

// Header is what a batch says of itself.
type Header struct {
	// Origin is the instance that published the batch.
	Origin Instance
	// First is the sequence number of the batch's first change among the
	// changes Origin published to this stream: the changes of one origin
	// to one stream are numbered 1, 2, 3, … without a hole, so a reader
	// that finds First beyond the number it expects missed some.
	First uint64
	// Count is the number of changes in the batch, at least 1.
	Count int
}

// The wire format of a batch (all integers big-endian):
//
//	header   version (1 byte, Version), origin (8), first (8), count (4)
//	records  count times:
//	           flags (1 byte): bit 0 IPv6, bit 1 seeder, bits 2-3 the
//	             event, bit 4 a peer id follows; bits 5-7 zero
//	           info hash (20)
//	           address (4, or 16 with IPv6), port (2)
//	           peer id (20), if flagged: never a zero one
//
// An IPv4 change without an id takes 27 bytes, an IPv6 one with an id 59.
// The encoding is canonical: a batch decodes only if encoding what it
// decodes to gives the same bytes back, so a decoder and a fuzzer can
// check each other.
const (
	// Version is the format of the batches this package writes and the
	// only one it reads. A fleet's instances must run versions of trackd
	// that agree on it; a reader counts a batch of another version as
	// garbage.
	Version = 1

	headerSize = 1 + 8 + 8 + 4
	// maxRecordSize is the largest record: IPv6 with an id.
	maxRecordSize = 1 + 20 + 16 + 2 + 20

	flagIPv6   = 1 << 0
	flagSeeder = 1 << 1
	eventShift = 2
	eventMask  = 3 << eventShift
	flagID     = 1 << 4
	flagsKnown = flagIPv6 | flagSeeder | eventMask | flagID
)

// Errors of the codec.
var (
	errBadAddr  = errors.New("fleet: change without a valid peer address")
	errBadEvent = errors.New("fleet: change with an unknown event")
)

// appendHeader appends h to b.
func appendHeader(b []byte, h Header) []byte {
	b = append(b, Version)
	b = append(b, h.Origin[:]...)
	b = binary.BigEndian.AppendUint64(b, h.First)
	return binary.BigEndian.AppendUint32(b, uint32(h.Count))
}

// setCount writes n as the count of the batch b, whose header is written.
func setCount(b []byte, n int) { binary.BigEndian.PutUint32(b[17:21], uint32(n)) }

// appendChange appends the record of c to b. It allocates nothing when b
// has room for maxRecordSize more bytes.
func appendChange(b []byte, c *Change) ([]byte, error) {
	ip := c.Peer.Addr.Addr()
	if !ip.IsValid() {
		return b, errBadAddr
	}
	if c.Event > bittorrent.EventStopped {
		return b, errBadEvent
	}
	flags := byte(c.Event) << eventShift
	if c.Seeder {
		flags |= flagSeeder
	}
	hasID := c.Peer.ID != (bittorrent.PeerID{})
	if hasID {
		flags |= flagID
	}
	if ip.Is4() {
		b = append(b, flags)
		b = append(b, c.InfoHash[:]...)
		a := ip.As4()
		b = append(b, a[:]...)
	} else {
		b = append(b, flags|flagIPv6)
		b = append(b, c.InfoHash[:]...)
		a := ip.As16()
		b = append(b, a[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, c.Peer.Addr.Port())
	if hasID {
		b = append(b, c.Peer.ID[:]...)
	}
	return b, nil
}

// AppendBatch appends to b the batch of changes from h.Origin numbered
// from h.First (h.Count is ignored: it is len(changes)). It fails for an
// empty batch, a change without a valid address or with an unknown event.
func AppendBatch(b []byte, h Header, changes []Change) ([]byte, error) {
	if len(changes) == 0 {
		return b, errors.New("fleet: empty batch")
	}
	start := len(b)
	h.Count = len(changes)
	b = appendHeader(b, h)
	for i := range changes {
		var err error
		if b, err = appendChange(b, &changes[i]); err != nil {
			return b[:start], err
		}
	}
	return b, nil
}

// DecodeBatch reads the batch b and appends its changes to changes. It is
// strict: a batch of another Version, truncated, with bytes after its
// last record, with a count that does not match its records, with a
// change numbered past 2^64-1, unknown flags or a zero peer id sent is an
// error, and then nothing is appended. It never panics, whatever b holds,
// and it keeps no reference to b.
func DecodeBatch(b []byte, changes []Change) (Header, []Change, error) {
	h, err := checkBatch(b)
	if err != nil {
		return Header{}, changes, err
	}
	p := b[headerSize:]
	for range h.Count {
		var c Change
		p = decodeChange(p, &c)
		changes = append(changes, c)
	}
	return h, changes, nil
}

// decodeChange reads the record at the start of p, which checkBatch
// checked, into c and returns the rest of p.
func decodeChange(p []byte, c *Change) []byte {
	flags := p[0]
	copy(c.InfoHash[:], p[1:21])
	p = p[21:]
	var ip netip.Addr
	if flags&flagIPv6 == 0 {
		ip = netip.AddrFrom4([4]byte(p[:4]))
		p = p[4:]
	} else {
		ip = netip.AddrFrom16([16]byte(p[:16]))
		p = p[16:]
	}
	c.Peer.Addr = netip.AddrPortFrom(ip, binary.BigEndian.Uint16(p))
	p = p[2:]
	c.Peer.ID = bittorrent.PeerID{}
	if flags&flagID != 0 {
		copy(c.Peer.ID[:], p[:20])
		p = p[20:]
	}
	c.Event = bittorrent.Event((flags & eventMask) >> eventShift)
	c.Seeder = flags&flagSeeder != 0
	return p
}

// checkBatch checks all of b, so that DecodeBatch can read it without a
// check, and returns its header.
func checkBatch(b []byte) (Header, error) {
	if len(b) < headerSize {
		return Header{}, fmt.Errorf("fleet: batch of %d bytes: shorter than its header", len(b))
	}
	if b[0] != Version {
		return Header{}, fmt.Errorf("fleet: batch of format version %d, want %d", b[0], Version)
	}
	var h Header
	copy(h.Origin[:], b[1:9])
	h.First = binary.BigEndian.Uint64(b[9:17])
	n := binary.BigEndian.Uint32(b[17:21])
	if n == 0 {
		return Header{}, errors.New("fleet: batch of no change")
	}
	if h.First == 0 || h.First+uint64(n-1) < h.First {
		return Header{}, fmt.Errorf("fleet: batch numbered %d+%d: out of range", h.First, n)
	}
	// Every record is at least 27 bytes: a count beyond what the length
	// can hold is refused before the walk.
	p := b[headerSize:]
	if uint64(n)*27 > uint64(len(p)) {
		return Header{}, fmt.Errorf("fleet: batch of %d changes in %d bytes: truncated", n, len(p))
	}
	for i := range n {
		if len(p) < 1 {
			return Header{}, fmt.Errorf("fleet: batch truncated at change %d of %d", i, n)
		}
		flags := p[0]
		if flags&^flagsKnown != 0 {
			return Header{}, fmt.Errorf("fleet: change %d has unknown flags %#x", i, flags)
		}
		size := 1 + 20 + 4 + 2
		if flags&flagIPv6 != 0 {
			size += 12
		}
		if flags&flagID != 0 {
			size += 20
		}
		if len(p) < size {
			return Header{}, fmt.Errorf("fleet: batch truncated at change %d of %d", i, n)
		}
		if flags&flagID != 0 && [20]byte(p[size-20:size]) == [20]byte{} {
			return Header{}, fmt.Errorf("fleet: change %d sends a zero peer id", i)
		}
		p = p[size:]
	}
	if len(p) != 0 {
		return Header{}, fmt.Errorf("fleet: %d bytes after the last of %d changes", len(p), n)
	}
	h.Count = int(n)
	return h, nil
}
