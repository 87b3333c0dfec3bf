// Package store defines the storage interface of trackd: where swarms live.
//
// The core (package tracker) decides what an announce means; a Store only
// keeps peers and counters and answers with copies, never with pointers into
// its own state, so a backend may live in another process (Redis) as well as
// in memory. Every method takes a context and may fail.
//
// Every backend must pass the conformance suite in store/storetest.
//
// # Optional abilities
//
// Beyond Store, a backend may have abilities that the server uses where
// they exist, asking for them by interface (never by concrete type):
//
//   - InProcess: answers from the process's memory, never waiting on the
//     network; the server then answers on its event loops rather than
//     with a goroutine per connection (the in-memory store).
//   - Prober: checks that it serves reads and writes, for /readyz (both
//     stores; without it Health reads Totals).
//   - ExpiryCounter: counts the peers dropped for their lifetime, for the
//     metrics (the in-memory store).
//   - MemoryBounded: keeps its memory under a bound, max_memory (the
//     in-memory store; Redis bounds its own).
//   - Snapshotter: writes its swarms to a state file and reads them back,
//     config.State (the in-memory store).
//   - Settler: brings its lagging Totals up to date on demand, for the
//     conformance suite (Redis).
//   - BatchAnnouncer: applies many announces in one call, for the fleet's
//     replay (the in-memory store).
//   - CompactAnnouncer: hands out peers already in their compact wire form
//     (the in-memory store).
//
// Each backend asserts the abilities it has at compile time, so that
// losing one by a changed signature is a build error, not a slower path.
package store

import (
	"context"
	"errors"
	"time"

	"trackd/bittorrent"
)

// Announce is one announce as a Store applies it.
type Announce struct {
	InfoHash bittorrent.InfoHash
	// Peer is the announcing peer. Its Addr (ip, port) identifies the
	// download session within the torrent: an announce from a known Addr
	// with another ID replaces the stored peer's ID (if the store keeps
	// ids: Options.PeerIDs).
	Peer bittorrent.Peer
	// Event: EventStopped removes the session; EventCompleted counts one
	// download (Stats.Downloaded) the first time a session reports it.
	Event bittorrent.Event
	// Seeder is true when the peer has nothing left to download. A peer
	// moves between seeders and leechers as this changes.
	Seeder bool
	// NumWant is the most peers to return. The announcing peer is never
	// among them, and a seeder is given only leechers.
	NumWant int
	// Family restricts the peers returned to one address family; the
	// zero value returns both.
	Family bittorrent.Family
}

// Totals are the counts over every swarm of a store.
type Totals struct {
	Torrents uint64 // swarms with at least one peer
	Seeders  uint64
	Leechers uint64
	// Seeders6 and Leechers6 are the IPv6 peers among Seeders and
	// Leechers.
	Seeders6  uint64
	Leechers6 uint64
}

// Peers returns Seeders+Leechers.
func (t Totals) Peers() uint64 { return t.Seeders + t.Leechers }

// Store keeps swarms.
//
// A peer that has not announced for the store's peer lifetime is expired: it
// is never returned, counted or scraped again, whether or not a background
// sweep has yet freed its memory (Totals excepted, for a few seconds).
type Store interface {
	// Announce applies a to its swarm, then appends to peers up to
	// a.NumWant other peers of that swarm chosen at random and returns the
	// extended slice and the swarm's counts after the announce.
	Announce(ctx context.Context, a Announce, peers []bittorrent.Peer) ([]bittorrent.Peer, bittorrent.Stats, error)

	// Scrape appends to stats the counts of each hash, in order; a torrent
	// the store does not know has zero counts.
	Scrape(ctx context.Context, hashes []bittorrent.InfoHash, stats []bittorrent.Stats) ([]bittorrent.Stats, error)

	// ScrapeAll calls fn for every torrent that has peers or a non-zero
	// download count, in no particular order, and stops at fn's first error.
	// fn must not call back into the store.
	ScrapeAll(ctx context.Context, fn func(bittorrent.InfoHash, bittorrent.Stats) error) error

	// Totals returns the counts over all swarms. It is cheap: callers may
	// ask on every request. Unlike the other methods it may count peers
	// expired in the last few seconds, so that a backend can drop them in
	// the background rather than on a request; the core uses it for the
	// interval policy, where that does not matter.
	Totals(ctx context.Context) (Totals, error)

	// Close stops background work and releases resources.
	Close() error
}

// DefaultNetworkTimeout is the default bound of one round trip for a
// backend that waits on the network (Redis): a request that waits longer
// fails rather than holding its client, and its connection, any longer.
// It is here, with the contract, so that the configuration's default and
// the backend's are one value.
const DefaultNetworkTimeout = time.Second

// ErrClosed is what a backend may return for a call after Close (the
// in-memory store does, having given its memory back): a request that was
// still on its way when the server shut down.
var ErrClosed = errors.New("store closed")

// Options are what every backend is configured with.
type Options struct {
	// PeerLifetime is how long a peer stays in its swarm after its last
	// announce.
	PeerLifetime time.Duration
	// PeerIDs makes the store keep each peer's peer_id so that returned
	// peers carry it; when false the store keeps none and returned peers
	// have a zero ID — 20 bytes less per peer. Only non-compact HTTP
	// replies without no_peer_id show peer ids.
	PeerIDs bool
	// Now returns the current time; nil means time.Now. Tests set it to
	// move time forward.
	Now func() time.Time
}

// Errors of a store that bounds its memory (MemoryBounded), for an announce
// it refuses because it is full. Neither is the client's fault; the core
// translates them into a refusal that says so.
var (
	// ErrNoNewTorrents refuses an announce that would create a torrent.
	ErrNoNewTorrents = errors.New("store full: no new torrents accepted")
	// ErrNoNewPeers refuses an announce that would add a peer to a
	// torrent.
	ErrNoNewPeers = errors.New("store full: no new peers accepted")
)

// MemoryBounded is a Store that keeps its own memory under a bound: the
// in-memory store. A store in another process (Redis) bounds its memory
// there (Redis's maxmemory) and does not implement it.
type MemoryBounded interface {
	// SetMemoryLimit sets the bound, in bytes; 0 or less means none. It
	// may be called at any time.
	SetMemoryLimit(bytes int64)
	// MemoryUsage returns the store's memory and what its bound has done.
	// It is cheap (atomic reads).
	MemoryUsage() MemoryUsage
}

// MemoryUsage is the state of a MemoryBounded store.
type MemoryUsage struct {
	// Bytes is the memory the store counts toward its bound: what its
	// torrents and peers use.
	Bytes int64
	// Held is the memory the store holds: Bytes and what it has freed
	// but not given back yet, which it reuses first.
	Held  int64
	Limit int64 // the bound; 0 for none
	// Shedding is true while the store evicts torrents or refuses
	// announces to stay under its bound (and for 30 s after).
	Shedding bool
	Evicted  uint64 // torrents evicted to stay under the bound, ever
	Refused  uint64 // announces refused (ErrNoNewTorrents, ErrNoNewPeers), ever
}
