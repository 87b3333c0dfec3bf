//go:build unix

package fleet

import (
	"syscall"
	"testing"
	"time"
)

// CPUPerOp starts measuring the process's CPU time (user and system, all
// threads); the function it returns reports it per op as cpu-ns/op. On a
// shared machine ns/op also counts the time the benchmark waited for a
// CPU; CPU time does not. (As store/memory's; exported for the
// package's external tests.)
func CPUPerOp(b *testing.B) func() {
	start := processCPU()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
