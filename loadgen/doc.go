// Package loadgen is trackd's load generator: it plays a population of
// simulated BitTorrent peers against a tracker over UDP (BEP 15) and HTTP
// (BEP 3, BEP 23, BEP 48), checks every reply, and reports throughput and
// latency, so that operators can size a tracker and compare trackd with
// other trackers on the same machine.
//
// The parts:
//
//   - [Workload] is the simulated population: a number of torrents whose
//     popularity has a hot head and a long tail, and a number of peers
//     assigned to them, each with a stable address, port, peer id and
//     seeder flag derived from a seed.
//   - The UDP client keeps a window of requests in flight on each of its
//     sockets, sends them in batches (sendmmsg) and receives replies in
//     batches (recvmmsg); requests are pre-built in per-slot buffers and
//     patched in place, so the steady state does not allocate.
//   - The HTTP client writes requests by hand over keep-alive connections,
//     pipelining up to the window, or opens a new connection for every
//     request (the way opentracker is used).
//   - Every reply is checked; errors are counted by message, requests that
//     are not answered in time are counted as timeouts, and latencies go
//     into a fixed log-linear [Histogram].
//   - [Canned] is a stateless server that answers with valid fixed replies,
//     to measure the generator's own ceiling on a machine.
//
// [Run] ties these together for the trackd-load command.
package loadgen
