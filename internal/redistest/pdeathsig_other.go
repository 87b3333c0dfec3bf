//go:build !linux

package redistest

import "os/exec"

// setParentDeathSignal does nothing where there is no parent-death signal:
// the test's cleanups kill the server.
func setParentDeathSignal(*exec.Cmd) {}
