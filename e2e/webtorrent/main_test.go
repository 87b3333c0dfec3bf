//go:build linux

package webtorrent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
)

var (
	// trackdBin is the trackd binary the parent built.
	trackdBin string
	// netnsErr is why the tests do not run in a private network namespace
	// with loopback only; they skip (or fail, under
	// TRACKD_REQUIRE_EXTERNAL=1) when it is not nil.
	netnsErr error
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		trackdBin = os.Getenv(envTrackd)
		netnsErr = loopbackOnly()
		os.Exit(m.Run())
	}

	dir, err := os.MkdirTemp("", "trackd-webtorrent-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin, err := buildTrackd(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	env := append(os.Environ(), envChild+"=1", envTrackd+"="+bin)
	code, err := runInNetns(os.Args, env)
	if err != nil {
		// No namespace here (not root, no user namespaces): run the
		// tests in this process, which skip (or fail) with the reason.
		trackdBin = bin
		netnsErr = err
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildTrackd builds cmd/trackd into dir, as a user builds it (trackd's
// own go.mod, not this module's).
func buildTrackd(dir string) (bin string, err error) {
	bin = filepath.Join(dir, "trackd")
	build := exec.Command("go", "build", "-C", "../..", "-o", bin, "./cmd/trackd")
	build.Env = append(os.Environ(), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build trackd: %v\n%s", err, out)
	}
	return bin, nil
}

// requireNetns skips t (fails it under TRACKD_REQUIRE_EXTERNAL=1) unless
// the test runs in its private network namespace.
func requireNetns(t *testing.T) {
	t.Helper()
	if netnsErr != nil {
		missing(t, "no private network namespace with loopback only for WebRTC: %v", netnsErr)
	}
}
