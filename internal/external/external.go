// Package external lets tests find the programs they drive (redis-server,
// chromium, BitTorrent clients) and decide what a missing one means: a skip
// with a clear message on a developer's machine, a failure where
// TRACKD_REQUIRE_EXTERNAL=1 (CI), so that no test is silently skipped there.
package external

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// RequireEnv makes a missing external program a failure instead of a skip.
const RequireEnv = "TRACKD_REQUIRE_EXTERNAL"

// Missing skips t, or fails it when TRACKD_REQUIRE_EXTERNAL=1, for a
// prerequisite this machine lacks.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s (%s=1 requires it)", msg, RequireEnv)
	}
	t.Skipf("%s; skipping (set %s=1 to make this a failure)", msg, RequireEnv)
}

// Program returns the path of the first of names found on PATH, or skips
// t (fails it under TRACKD_REQUIRE_EXTERNAL=1) when none is.
func Program(t testing.TB, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	Missing(t, "none of %v is on PATH", names)
	return ""
}
