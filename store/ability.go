package store

import (
	"context"

	"trackd/bittorrent"
	"trackd/snapshot"
)

// The optional abilities of a Store. A backend implements those it has and
// asserts so at compile time (var _ store.InProcess = (*Store)(nil)); the
// server asks for them by interface, never by concrete type, so a new
// backend gets what its abilities earn it. Prober and MemoryBounded are
// declared beside what uses them (health.go, store.go).

// InProcess is a Store that answers every call from the process's own
// memory: it never waits on the network, a disk or another process, so a
// call takes microseconds and blocks no one for long. The server then
// answers requests on its event loops, one at a time each (the epoll HTTP
// server, one reader per UDP socket), with no goroutine per connection.
// A store that waits on the network (Redis) must not be called so: one
// slow reply would hold up every request behind it, so it gets a goroutine
// per HTTP connection and more UDP sockets, to keep many requests in
// flight.
//
// The method is a marker: it does nothing. A wrapper of an InProcess store
// that adds a wait (logging to the network, say) must not forward it.
type InProcess interface {
	InProcess()
}

// ExpiryCounter is a Store that counts the peers it has dropped because
// their lifetime passed (for the metrics: trackd_peers_expired_total). The
// in-memory store counts them as its sweeper frees them; Redis expires
// peers inside its scripts and does not count them.
type ExpiryCounter interface {
	// Expired returns how many peers the store has dropped for their
	// lifetime since it was made. It is cheap (an atomic read).
	Expired() uint64
}

// Snapshotter is a Store that can write its swarms to a state file and
// read them back (package snapshot; config.State): the in-memory store,
// which would otherwise lose every swarm on a restart. A store in another
// process (Redis) keeps its own state and does not implement it.
type Snapshotter interface {
	// Dump calls fn for every swarm with peers or a download count, in no
	// particular order, and stops at fn's first error. Peers already
	// expired are left out. fn must not keep the Swarm, and must not call
	// back into the store; announces are not held up while it runs.
	Dump(fn func(*snapshot.Swarm) error) error
	// Restore puts a swarm read back from a snapshot into the store: its
	// peers whose expiry has not passed, and its download count. It is
	// meant for an empty store, at start.
	Restore(s *snapshot.Swarm) error
}

// Settler is a Store whose Totals lag its other methods (as Store allows,
// for a few seconds) because it brings them up to date in the background,
// as Redis does. Settle brings Totals up to date with everything done so
// far, at the store's clock; the conformance suite (store/storetest) calls
// it before every check of Totals.
type Settler interface {
	Settle(ctx context.Context) error
}

// BatchAnnouncer is a Store that applies many announces in one call,
// reading its clock once for them all: how the fleet replays the changes
// other instances published (fleet.Node), for less than as many Announce
// calls cost. The in-memory store implements it.
type BatchAnnouncer interface {
	// AnnounceBatch applies each of as as Announce would with NumWant 0
	// (it returns no peers), all at the store's time of the call. It
	// returns how many failed: those Announce would have failed (an
	// invalid address, refused by the memory bound, the store closed).
	AnnounceBatch(ctx context.Context, as []Announce) (failed int)
}

// CompactAnnouncer is a Store that can hand out an announce's peers
// already in the compact form every wire format of trackd sends them in:
// 6 bytes per IPv4 peer and 18 per IPv6 peer, the address then the port,
// in network order (BEP 23's "peers", BEP 7's "peers6", the peers of a
// BEP 15 reply). The in-memory store implements it: it writes the bytes
// straight from its records, where Announce builds a bittorrent.Peer of 56
// bytes per peer that the frontend then reads again to encode it. The core
// uses it for a request that asks for compact peers
// (tracker.AnnounceRequest.Compact).
type CompactAnnouncer interface {
	// AnnounceCompact is Announce with the peers appended to v4 (the IPv4
	// peers) and v6 (the IPv6 peers) in compact form, in place of a
	// []bittorrent.Peer. It returns the extended slices.
	AnnounceCompact(ctx context.Context, a Announce, v4, v6 []byte) ([]byte, []byte, bittorrent.Stats, error)
}
