// Package e2e holds trackd's end-to-end tests: a real trackd listening on
// loopback, driven by real BitTorrent clients (anacrolix/torrent in-process,
// aria2c and python3-libtorrent as child processes) and by plain HTTP.
//
// The external programs are optional when running the tests by hand: a test
// whose program is missing is skipped. CI sets TRACKD_REQUIRE_EXTERNAL=1,
// which turns a missing program into a failure.
package e2e
