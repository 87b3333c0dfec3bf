// Package e2e holds trackd's end-to-end tests: a real trackd listening on
// loopback, driven by real BitTorrent clients (anacrolix/torrent in-process,
// aria2c and python3-libtorrent as child processes) and by plain HTTP.
//
// The external programs are optional when running the tests by hand: a test
// whose program is missing is skipped. CI sets TRACKD_REQUIRE_EXTERNAL=1,
// which turns a missing program into a failure.
//
// The directory is its own Go module, trackd/e2e, which requires trackd and
// replaces it with the tree one level up: anacrolix/torrent and the
// requirements it brings are this module's, not trackd's, so building trackd
// downloads none of them. The go command's ./... does not cross into a
// nested module; run these tests from this directory (go test ./...), as
// the README's test command and .ci/run do. After trackd's go.mod changes,
// run go mod tidy here too. trackd's internal packages stay importable: Go
// allows them to any package whose import path starts with trackd/.
package e2e
