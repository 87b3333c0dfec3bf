//go:build !unix

package memory

import "testing"

// cpuPerOp reports nothing where there is no getrusage.
func cpuPerOp(*testing.B) func() { return func() {} }
