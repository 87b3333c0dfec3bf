// Package fleet keeps the swarms of several trackd instances in step, so
// that any instance of a fleet answers for every swarm from its own memory.
//
// A tracker's answer is a random sample of a swarm that its clients refresh
// every interval: nothing in it needs strong consistency, and its state is
// small (about 21 bytes per peer) while its requests are many. So every
// instance keeps every swarm in its in-memory store and answers from it,
// never waiting on the network; what instances exchange is the changes.
//
// # Changes
//
// Store wraps an in-memory store.Store. Every announce it applies is also
// a Change (the torrent, the peer's address and id, its event and whether
// it seeds), appended to a batch in memory: the request path encodes a few
// dozen bytes under a short lock, and never waits on the network. A
// publisher goroutine sends each batch to the Bus a few times a second.
// Every instance reads the batches of the others and replays their changes
// into its own store, as announces that want no peers: an instance's state
// is the replay of every announce made to any instance of the fleet.
//
// Replaying announces, rather than shipping state, keeps the store's own
// semantics everywhere: the receiving store decides joins, leaves and role
// changes exactly as the original did; a completed event counts once per
// session (the store remembers it counted it), so a change replayed twice
// counts nothing twice; a peer's expiry runs on the receiving instance's
// clock, from when it received the change, so clocks that differ by a few
// seconds do not matter; and the memory bound (max_memory) refuses a flood
// of remote torrents as it refuses local ones.
//
// The changes of one torrent all go to one stream of the Bus (chosen by
// its info hash), which keeps them in order.
//
// # Bounds
//
// The batches waiting to be published are bounded (Config.MaxPending):
// while the Bus is unreachable they wait, and past the bound the oldest
// are dropped and counted. A dropped change heals by itself: every peer
// announces again within an interval, and its next announce carries the
// same information. The streams are trimmed by the Bus to a bounded
// length, so a lagging or dead instance grows no one's memory; a reader
// that finds it missed batches (a gap in an origin's sequence) counts it
// and goes on.
package fleet
