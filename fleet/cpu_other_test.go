//go:build !unix

package fleet

import "testing"

// CPUPerOp reports nothing where the process CPU time is not read.
func CPUPerOp(*testing.B) func() { return func() {} }
