// Package attack is trackd's adversarial end-to-end suite: the trackd
// binary, built once and run as a separate process on loopback, attacked
// the ways an open tracker is attacked on the internet, while a
// well-behaved client announces every 0.5 s over HTTP (a new connection
// each time) and over UDP (a new socket, connect and announce), from an
// address no attack uses, on a swarm that also holds a seeder.
//
// For every attack the well-behaved client must see no failure (a reply
// that is not a valid announce holding the seeder, within 5 s) and its
// slowest announce must take at most 1 s: an announce on loopback is
// answered in well under a millisecond, and the second leaves room for a
// shared 2-vCPU machine while staying far below the stalls the attacks
// cause (seconds, or no answer at all). Under the race detector, which
// slows the test's own clients (trackd is built without it), the latency
// bounds are three times as long.
//
// The attacks (TestAttack's subtests, run one after the other, each on a
// trackd of its own with -read-header-timeout 2s):
//
//   - BlankLineDribblers: 20 new and 20 keep-alive connections that send
//     only "\r\n" once a second must be closed at most 2 s after
//     read_header_timeout from their first byte; 64 KiB of blank lines at
//     once must be cut off before read_header_timeout. Run against both
//     HTTP servers: the event loops (in-memory store) and the goroutine per
//     connection (Redis store; redis-server needed, skipped without it
//     unless TRACKD_REQUIRE_EXTERNAL=1).
//   - DribblersAtMaxConns: 200 such dribblers from one address,
//     reconnecting when closed, against -max-conns 200 and the default
//     max_conns_per_ip (512, so all of them get in), for 9 s: at the cap,
//     trackd closes the connection that has sent only blank lines the
//     longest to make room, so the usual 1 s bound holds.
//   - IdleKeepAliveFlood: 10,500 keep-alive connections, one request each,
//     ten from each of 1,050 addresses 127.1.x.y, held for 10 s against
//     -max-conns 10000: every one of them must be answered (at the cap the
//     longest-idle connections make way) and no more than 10,000 stay open.
//     The server's and the test's connections live in different processes
//     (the descriptor limit is per process).
//   - PerAddressBound: 200 keep-alive connections from one address against
//     -max-conns-per-ip 50 leave at most 50 open; 200 from an address in
//     -trusted-proxies are all answered and kept.
//   - FullScrapeStall: 1,000,000 torrents (filled over UDP), full scrapes
//     asked for back to back on two connections, one gzipped and one
//     uncompressed (streamed, after which trackd closes the connection and
//     the scraper dials again), with -full-scrape-interval 0 for 10 s;
//     each scraper must get at least one of every torrent (the replies
//     before the first build after the fill are the empty one of the
//     start).
//   - MemoryFlood: 2,000,000 announces of random info hashes over UDP at
//     most 100,000 a second (at most 60 s) against -max-memory 32 MiB:
//     trackd's resident memory (VmRSS) must stay at most 2 × max_memory +
//     48 MiB, and a swarm of three peers made before the flood must still
//     be returned whole afterwards.
//
// TestWebSocketAttack attacks the WebSocket way in (WebTorrent, ws:// on
// the HTTP port), each attack on a trackd of its own, while a
// well-behaved WebTorrent client joins as well: two seeders and a leecher
// on one swarm from the prober's address; every 0.5 s a seeder (in turn,
// so each stays within the offer rate limit) announces with an offer,
// which the leecher answers through trackd; every round must end within
// the HTTP prober's bounds, with no failure reason and no connection lost.
//
//   - PerAddressBound: 200 silent connections from one address (half of
//     them naming other clients in X-Forwarded-For and X-Real-IP) against
//     -ws-max-conns-per-ip 50: each beyond the 50th evicts the oldest, so
//     the first 150 are closed with 1013 and the last 50 kept; 50 from
//     another address all served.
//   - Squatters: 57 connections that announce once and then only answer
//     pings hold every place of -ws-max-conns 60 with the prober's 3;
//     20 new clients are all served, each evicting (1013) a squatter,
//     never the prober, whose messages are newer.
//   - NonReaders: 4 waves of 20 clients that join a swarm and then never
//     read (a 4 KiB receive buffer, a 536-byte MSS), and 10 new attacker
//     connections each sending 40 announces of 10 offers of 5.7 KB back
//     to back: every non-reader is closed (its write queue passed its
//     bound), every announce is answered, and the offers beyond each
//     connection's token bucket are counted in
//     trackd_ws_dropped_total{reason="rate_limited"}.
//   - BadFrames: a 1 MiB message is closed with 1009 at once, 68 KiB in
//     4 KiB fragments with 1009, an unmasked frame and a reserved opcode
//     with 1002, a binary message with 1003, a text message not UTF-8
//     with 1007; bad JSON and bad ids get a failure reason on a
//     connection that serves on; a ping flood from a client that reads
//     no pong is closed; the probe's peer ids announced from another
//     connection (stopped too) are refused; 50 connections trickling a
//     message a byte per 100 ms slow no one (the message timeout, 30 s,
//     has no flag and is not waited for).
//   - TorrentFlood: 20 connections × 100 new info hashes (the most per
//     connection) and one more, round after round for 4 s, against
//     -ws-max-peers 1000: the peers beyond are refused as the tracker
//     full, a connection's 101st as too many torrents, a closed
//     connection's peers and its emptied swarms are gone, trackd's
//     resident memory stays within 32 MiB of its start.
//   - IdleConnections: against -ws-idle-timeout 3s, connections that
//     complete the handshake and send nothing (no pong) are closed after
//     3 s (at most 3 s + 2 s); a client that only answers pings stays.
//   - PerAddressBoundTLS, SquattersTLS, NonReadersTLS, BadFramesTLS,
//     IdleConnectionsTLS: the same over
//     wss:// on the HTTPS listener (a test certificate), where each
//     connection has a goroutine of its own behind TLS instead of the
//     event loops.
//
// TestRealClientNumbers checks values real clients send: a UDP stopped
// announce with left = 2^64−1 (WebTorrent) removes the peer; left of 2^63
// or more, all ones or negative is a leecher, over UDP and HTTP; over HTTP
// event=empty, an empty event and event=paused, and over UDP event 4, are
// regular announces.
//
// TRACKD_ATTACK_BIG=1 runs the large versions: the full scrape with
// 3,000,000 torrents for 30 s, and the memory flood with 20,000,000
// announces (at most 10 minutes) against -max-memory 256 MiB.
//
// Every loop is bounded in count and time, every address is on 127.0.0.0/8,
// and every trackd is killed when its test ends.
package attack
