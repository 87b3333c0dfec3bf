// Package signaling is the WebTorrent signalling core: swarms of WebSocket
// peers, offers to random peers, answers routed back. It does no I/O.
//
// A WebRTC peer is not an address other peers dial: it is a peer id bound
// to the connection it announced over, and the tracker's work is to hand
// its offers to other peers of the swarm and route their answers back
// over those connections. A Registry keeps these bindings; the frontend
// (package frontend/ws) parses messages, asks the Registry where they go
// and sends them.
//
// Memory is the in-memory Registry, for one instance. The interface is
// what a Registry that spans instances (a later relay over Redis) must
// provide: a Sender it hands out may then stand for a connection held by
// another instance.
package signaling

import (
	"errors"
	"time"

	"trackd/bittorrent"
)

// A Sender is where a peer's messages go: its connection. Send queues msg
// and never blocks; it reports false if msg was not queued (the
// connection is gone or not reading). A Registry compares Senders with ==
// to tell connections apart, so a Sender's dynamic type must be
// comparable (a pointer, typically). wsserver.Conn is one.
type Sender interface {
	Send(msg []byte) bool
}

// Announce is one peer's announce to a swarm, already parsed.
type Announce struct {
	InfoHash bittorrent.InfoHash
	PeerID   bittorrent.PeerID
	// Via is the connection the announce came over; the peer is bound
	// to it.
	Via Sender
	// Event is the announce's event: EventStopped removes the peer,
	// EventCompleted counts a download; the others join or update.
	Event bittorrent.Event
	// Seeder says the peer has nothing left to download.
	Seeder bool
	// NumWant is how many other peers to pick for the announce's offers:
	// 0 for none. A seeder is given only leechers.
	NumWant int
}

// Totals are the counts of a whole Registry.
type Totals struct {
	Swarms   uint64
	Seeders  uint64
	Leechers uint64
}

// Peers returns Seeders+Leechers.
func (t Totals) Peers() uint64 { return t.Seeders + t.Leechers }

// Errors a Registry refuses with.
var (
	// ErrPeerIDTaken refuses an announce whose peer id is bound, in that
	// swarm, to another connection that has not expired: taking it over
	// would let anyone who saw a peer id (every offer shows one) steal
	// the answers meant for it.
	ErrPeerIDTaken = errors.New("peer_id is in use in this swarm by another connection")
	// ErrFull refuses a new peer when the registry holds its most.
	ErrFull = errors.New("tracker is full: no new peers accepted now")
	// ErrNotMember refuses an answer from a peer id that has not
	// announced the torrent over the connection the answer came on.
	ErrNotMember = errors.New("answer from a peer that has not announced this torrent on this connection")
	// ErrNoPeer is an answer to a peer id that is not in the swarm (it
	// left, expired, or never was).
	ErrNoPeer = errors.New("no peer with that to_peer_id in this swarm")
)

// A Registry keeps the swarms of WebSocket peers. It must be safe for
// concurrent use by many connections.
type Registry interface {
	// Announce applies a: the peer joins the swarm (or is updated, or
	// leaves for EventStopped) and up to a.NumWant other peers of the
	// swarm, never the announcing one, are picked at random, each once,
	// and appended to dst (to receive one offer each). It returns dst
	// and the swarm's counts after the announce. A refusal
	// (ErrPeerIDTaken, ErrFull) changes nothing.
	Announce(a *Announce, dst []Sender) ([]Sender, bittorrent.Stats, error)
	// Route finds where an answer goes: the connection of peer to in
	// swarm ih. The answering peer from must be in the swarm, bound to
	// via (ErrNotMember otherwise); ErrNoPeer when to is not there.
	Route(ih bittorrent.InfoHash, from bittorrent.PeerID, via Sender, to bittorrent.PeerID) (Sender, error)
	// Leave removes peer id from swarm ih if it is bound to via (the
	// connection closed): a peer id rebound to another connection stays.
	// It reports whether the peer was removed.
	Leave(ih bittorrent.InfoHash, id bittorrent.PeerID, via Sender) bool
	// Has reports whether peer id is in swarm ih, bound to via and not
	// expired.
	Has(ih bittorrent.InfoHash, id bittorrent.PeerID, via Sender) bool
	// Scrape appends the counts of each of hashes to dst (zero for a
	// swarm it does not know) and returns it.
	Scrape(hashes []bittorrent.InfoHash, dst []bittorrent.Stats) []bittorrent.Stats
	// Expire removes the peers that have not announced for the
	// registry's peer lifetime and returns how many. Peers past their
	// lifetime are never picked nor routed to, even before Expire runs.
	Expire() int
	// Totals returns the counts of every swarm.
	Totals() Totals
}

// DefaultPeerLifetime is how long a WebSocket peer stays in its swarm
// after its last announce while its connection stays open: longer than
// the longest interval the tracker hands out (30 minutes by default), as
// the HTTP and UDP peers' peer_lifetime.
const DefaultPeerLifetime = 35 * time.Minute

// MaxPick is the most peers one Announce picks: the bound of the
// frontend's cap on offers per announce.
const MaxPick = 128
