//go:build unix

// Package cputime reports a benchmark's CPU time per operation, beside the
// wall-clock ns/op that testing reports: on a shared machine ns/op also
// counts the time the benchmark waited for a CPU, CPU time does not.
package cputime

import (
	"syscall"
	"testing"
	"time"
)

// PerOp starts measuring the process's CPU time (user and system, all
// threads); the function it returns reports it per op as cpu-ns/op. Call
// it after the benchmark's setup and defer (or call) what it returns.
func PerOp(b *testing.B) func() {
	start := process()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(process()-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

func process() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
