//go:build linux

package webtorrent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The test binary runs twice: started by go test (the parent), it builds
// trackd and re-executes itself in a new network namespace (the child),
// where the tests run; the variables below carry what the parent learnt.
const (
	// envChild is set (to "1") in the child's environment.
	envChild = "TRACKD_WEBTORRENT_CHILD"
	// envTrackd is the path of the trackd binary the parent built.
	envTrackd = "TRACKD_WEBTORRENT_TRACKD"
	// envNoWS, when not empty, says why trackd serves no WebSocket
	// tracker (the trackd launcher's tests skip with it).
	envNoWS = "TRACKD_WEBTORRENT_NO_WS"
)

// wsFrontend is the package of trackd's WebSocket tracker frontend. The
// trackd launcher's tests run only when cmd/trackd depends on it: before
// the frontend is wired into trackd they skip, saying so; from then on
// they must pass.
const wsFrontend = "trackd/frontend/ws"

var (
	// trackdBin is the trackd binary the parent built.
	trackdBin string
	// trackdNoWS is why trackd serves no WebSocket tracker ("" when it
	// does).
	trackdNoWS string
	// netnsErr is why the tests do not run in a private network namespace
	// with loopback only; they skip (or fail, under
	// TRACKD_REQUIRE_EXTERNAL=1) when it is not nil.
	netnsErr error
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		trackdBin = os.Getenv(envTrackd)
		trackdNoWS = os.Getenv(envNoWS)
		netnsErr = loopbackOnly()
		os.Exit(m.Run())
	}

	dir, err := os.MkdirTemp("", "trackd-webtorrent-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin, noWS, err := buildTrackd(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	env := append(os.Environ(), envChild+"=1", envTrackd+"="+bin, envNoWS+"="+noWS)
	code, err := runInNetns(os.Args, env)
	if err != nil {
		// No namespace here (not root, no user namespaces): run the
		// tests in this process, which skip (or fail) with the reason.
		trackdBin, trackdNoWS = bin, noWS
		netnsErr = err
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildTrackd builds cmd/trackd into dir and says whether it has the
// WebSocket frontend (noWS is empty when it has, else why not).
//
// The test runs in e2e/webtorrent, in the module trackd/e2e; trackd's
// module is two levels up. The binary is built there, from trackd's own
// go.mod (GOWORK=off), as a user builds it (as e2e/attack does).
func buildTrackd(dir string) (bin, noWS string, err error) {
	bin = filepath.Join(dir, "trackd")
	build := exec.Command("go", "build", "-C", "../..", "-o", bin, "./cmd/trackd")
	build.Env = append(os.Environ(), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build trackd: %v\n%s", err, out)
	}
	list := exec.Command("go", "list", "-C", "../..", "-deps", "-f", "{{.ImportPath}}", "./cmd/trackd")
	list.Env = build.Env
	out, err := list.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			out = ee.Stderr
		}
		return "", "", fmt.Errorf("go list -deps ./cmd/trackd: %v\n%s", err, out)
	}
	if !slices.Contains(strings.Fields(string(out)), wsFrontend) {
		noWS = "trackd has no WebSocket frontend yet: cmd/trackd does not depend on " + wsFrontend
	}
	return bin, noWS, nil
}

// requireNetns skips t (fails it under TRACKD_REQUIRE_EXTERNAL=1) unless
// the test runs in its private network namespace.
func requireNetns(t *testing.T) {
	t.Helper()
	if netnsErr != nil {
		missing(t, "no private network namespace with loopback only for WebRTC: %v", netnsErr)
	}
}
