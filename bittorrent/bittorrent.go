// Package bittorrent holds the protocol types every part of trackd shares:
// info hashes, peer ids, peers and announce events. It has no logic beyond
// what the types themselves need, so the core, the frontends and the storage
// backends can all import it without importing each other.
package bittorrent

import (
	"encoding/hex"
	"net/netip"
)

// InfoHash identifies a torrent: the SHA-1 of its info dictionary. Any 20
// bytes are a valid InfoHash; trackd never interprets them.
type InfoHash [20]byte

// String returns the hash in lower-case hex, for logs and tests.
func (h InfoHash) String() string { return hex.EncodeToString(h[:]) }

// PeerID is the 20-byte id a client picks for itself. Any 20 bytes are valid.
type PeerID [20]byte

// String returns the id in hex, for logs and tests.
func (id PeerID) String() string { return hex.EncodeToString(id[:]) }

// Peer is one participant of a swarm as other peers see it: where to connect
// to it and the id it announced. A download session is identified by the
// torrent and Addr alone; ID is informational.
type Peer struct {
	ID   PeerID
	Addr netip.AddrPort
}

// Event is the announce "event" parameter.
type Event uint8

// The announce events of BEP 3. EventNone is a regular re-announce.
const (
	EventNone Event = iota
	EventStarted
	EventCompleted
	EventStopped
)

// String returns the event as it is spelled on the wire ("" for EventNone).
func (e Event) String() string {
	switch e {
	case EventStarted:
		return "started"
	case EventCompleted:
		return "completed"
	case EventStopped:
		return "stopped"
	}
	return ""
}
