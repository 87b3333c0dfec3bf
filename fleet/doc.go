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
// Store wraps an in-memory store.Store (Local: it keeps, and forwards,
// every ability of the in-memory store). Every announce it applies is also
// a Change (the torrent, the peer's address and id, its event and whether
// it seeds), appended to a batch in memory: the request path encodes a few
// dozen bytes under a short lock (about 30 ns, no allocation), and never
// waits on the network. A Node's publisher goroutine sends the batches to
// the Bus every 50 ms, or at once when one reaches 32 KiB; those queued on
// a stream go in one round trip (up to 64 batches, 2 MiB) to a Bus that is
// a ManyPublisher. The Node reads the batches of the others, one goroutine
// per stream, and replays their changes into the inner store, as
// announces that want no peers (a few hundred a call to a store that is a
// store.BatchAnnouncer, the in-memory one, which reads its clock once): an
// instance's state is the replay of every announce made to any instance of
// the fleet. A reader starts at the end of its stream as it is when the
// Node starts (Node.Ready), or where a snapshot ends (Joining).
//
// A batch (AppendBatch, DecodeBatch) is a header — format Version, origin
// Instance, the number of its first change, count — and 27 bytes per IPv4
// change (39 for IPv6, 20 more with a peer id). The changes of one origin
// to one stream are numbered without a hole, which is how a reader finds
// what it missed (a gap) or read twice (skipped). A batch that does not
// decode is counted and skipped.
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
// # Joining
//
// An instance that starts (Node.Join, before Node.Run) asks the fleet for
// a snapshot: it broadcasts a request on the Messenger; the instances that
// hear it race to claim it (Blobs.Claim), and the winner, the donor, stops
// its readers between two batches, notes per stream the position it has
// replayed up to and the number of its own next change, dumps its store,
// lets its readers go on, and appends the dump (a state file's encoding,
// package snapshot) to a blob in 1 MiB chunks, which the joiner reads as
// they come. The joiner restores every swarm, and its readers start at the
// donor's positions: every change of another origin is in the snapshot or
// after the position, none in both. The donor's own changes go on while
// it dumps, so its dump notes, as it reaches each part (shard) of its
// store, the number of its next change on every stream, under that part's
// lock (memory.Store.DumpMarked); the joiner skips the donor's changes
// below the note of their swarm. A change recorded after the note but
// applied before the dump reached its swarm is replayed although the
// snapshot holds it, which changes nothing: a client's next announce
// comes after its last one was recorded, so a session cannot both
// complete and stop unseen by the note, and the store counts a completed
// event once per session. So a downloads counter counts each session once
// on every instance, joined or not, restarted or not.
//
// The donor's readers wait while it dumps (its pause: 0.6 to 1.9 s at a
// million peers on a loaded 2-vCPU machine, docs/benchmarks.md), so the
// others' changes reach it that much later; its frontends do not wait,
// the dump holding each part of the store (a 1,024th) only while it
// copies it, as a state file does. The chunks are appended by another
// goroutine, so the pause never waits on the Bus; they are held in memory
// until appended (about 22 bytes a peer) and live in the Bus 30 s after
// the last. A donor answers one request at a time, and only once its own
// readers are placed.
//
// With no answer within JoinConfig.Wait (3 s: the fleet's first
// instance, or one whose fellows are all starting), with the Bus
// unreachable, or with a snapshot cut short, Join restores nothing and
// says why; the readers then start at the end of the streams, and the
// server falls back on its state file, if it has one.
//
// # Bounds
//
// The batches waiting to be published are bounded (StoreConfig.MaxPending,
// 32 MiB by default): while the Bus is unreachable they wait, the Node
// tries again (backing off up to a second), and past the bound the oldest
// are dropped and counted (Stats.Dropped). An outage is logged once, rate
// limited, and its end once; Node.Stats shows it for the metrics. A
// dropped change heals by itself: every peer announces again within an
// interval, and its next announce carries the same information. The streams are trimmed by the Bus to a bounded
// length, so a lagging or dead instance grows no one's memory; a reader
// that finds it missed batches (a gap in an origin's sequence) counts it
// and goes on. A flood of bogus torrents into one instance reaches the
// others as changes that their memory bound (max_memory) refuses, as it
// would refuse them locally (Stats.Refused).
package fleet
