//go:build unix

package loadgen

import "syscall"

// raiseNoFile raises the soft limit on open files to the hard limit (the
// Go runtime does this at start on Linux too; this says so and reports
// it) and returns the soft limit now in force.
func raiseNoFile() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, err
		}
	}
	return uint64(l.Cur), nil
}
