// Package webtorrent holds the end-to-end tests of the WebSocket tracker
// with real WebTorrent clients from npm: bittorrent-tracker's own Client
// (testdata/client.mjs) and a webtorrent transfer over WebRTC
// (testdata/transfer.mjs), each against a tracker started by a launcher:
// bittorrent-tracker's server (the reference, which proves the harness)
// and trackd's binary, over ws:// and wss://; and the Client across a
// fleet, two trackd binaries on one redis-server (-sync) with the clients
// split between them (TestClientAcrossFleet).
//
// WebRTC gathers candidates on every network interface, so the test binary
// re-executes itself in a private network namespace whose only interface
// is lo (see TestMain): the trackers and the Node clients it starts run
// there too, and no packet can leave the machine. The tests are Linux's
// alone (their files build only there).
//
// The Node packages are not fetched by the tests: install them once with
//
//	cd e2e/webtorrent/testdata && npm ci --ignore-scripts
//
// (as .ci/run does). A machine without node or those packages skips these
// tests, unless TRACKD_REQUIRE_EXTERNAL=1.
package webtorrent
