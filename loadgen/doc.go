// Package loadgen is trackd's load generator: it plays a population of
// simulated BitTorrent peers against a tracker over UDP (BEP 15), HTTP
// (BEP 3, BEP 23, BEP 48) or WebSocket (WebTorrent), checks every reply,
// and reports throughput and latency, so that operators can size a tracker and compare trackd with
// other trackers on the same machine.
//
// The parts:
//
//   - [Workload] is the simulated population: a number of torrents whose
//     popularity has a hot head and a long tail ([Weight], as aquatic's
//     load test, or Zipf's law of a given exponent, [NewZipfWorkload]),
//     and a number of peers assigned to them, each with a stable address,
//     port, peer id and seeder flag derived from a seed.
//   - The request mix: a share of scrapes of 1..n hashes picked by
//     popularity, the rest announces with a fixed numwant; a peer's first
//     announce is started, later ones may be stopped (and the next
//     started again) or, for leechers, completed, each with its chance
//     (Config.Stopped, Config.Completed).
//   - The UDP client keeps a window of requests in flight on each of its
//     sockets, sends them in batches (sendmmsg) and receives replies in
//     batches (recvmmsg); requests are pre-built in per-slot buffers and
//     patched in place, so the steady state does not allocate.
//   - The HTTP client writes requests by hand over keep-alive connections,
//     pipelining up to the window, or opens a new connection for every
//     request (the way opentracker is used). An https:// target is the
//     same over TLS (crypto/tls), with full handshakes or sessions resumed
//     from tickets (Config.TLSResume), and the key exchanges and TLS
//     version the client offers as knobs.
//   - The WebSocket client plays simulated browsers against a WebTorrent
//     tracker: one connection and one peer id each, announcing with offers
//     (fake SDPs derived from the offer id), answering every offer relayed
//     to it, and checking every message: ids are 20-byte binary strings, a
//     relayed offer carries its sender's peer id and SDP, an answer comes
//     back to the connection that made the offer. Its idle mode opens
//     connections, announces once on each and holds them, to measure a
//     tracker's memory per connection. The framing (RFC 6455) and the JSON
//     scanner are the package's own.
//   - Every reply is checked; errors are counted by message, requests that
//     are not answered in time are counted as timeouts, and latencies go
//     into a fixed log-linear [Histogram].
//   - A target may be the instances of a fleet (a list): the workers are
//     dealt to the instances, so that each simulated peer sticks to one,
//     or (Config.Roam) every worker sends to all of them, each peer's
//     successive announces going to the instances in turn, with each
//     instance's own UDP connection id. Beside the load, a convergence
//     probe ([ConvergeResult]) measures how long a peer announced to one
//     instance takes to appear in another's replies, and a stopped one to
//     disappear.
//   - [Canned] is a stateless server that answers with valid fixed replies,
//     to measure the generator's own ceiling on a machine; [CannedWS] is
//     its WebSocket counterpart.
//
// [Run] ties these together for the trackd-load command.
package loadgen
