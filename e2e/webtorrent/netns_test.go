//go:build linux

package webtorrent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"unsafe"
)

// runInNetns runs the program args (this test binary, with go test's
// flags) with env in a new network namespace, its stdout and stderr this
// process's, and returns its exit code. err is not nil only when the child
// could not be started, for want of the namespace. As root the child gets
// a new network namespace alone; otherwise also a user namespace in which
// the caller is root (where the kernel allows unprivileged ones), so that
// it can bring lo up.
//
// This is unshare --net done by the go command's own clone(2): no program
// beyond the test binary is needed, and everything the tests start (the
// trackers, node) inherits the namespace.
func runInNetns(args, env []string) (code int, err error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(exe, args[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET,
		// The child dies with this process (go test's timeout kills it).
		Pdeathsig: syscall.SIGKILL,
	}
	if os.Geteuid() != 0 {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting the tests in a new network namespace: %w", err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		if code := ee.ExitCode(); code >= 0 {
			return code, nil
		}
		fmt.Fprintf(os.Stderr, "the tests in the network namespace ended: %v\n", err)
		return 1, nil
	default:
		fmt.Fprintf(os.Stderr, "the tests in the network namespace: %v\n", err)
		return 1, nil
	}
}

// loopbackOnly brings lo up in this process's network namespace (a new
// one has it down) and checks that lo is its only interface.
func loopbackOnly() error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer syscall.Close(fd)
	// struct ifreq: the interface's name, then (in its union) the flags.
	var ifr struct {
		name  [syscall.IFNAMSIZ]byte
		flags uint16
		_     [24 - 2]byte
	}
	copy(ifr.name[:], "lo")
	ioctl := func(req uintptr) error {
		if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
			return errno
		}
		return nil
	}
	if err := ioctl(syscall.SIOCGIFFLAGS); err != nil {
		return fmt.Errorf("lo's flags: %w", err)
	}
	ifr.flags |= syscall.IFF_UP
	if err := ioctl(syscall.SIOCSIFFLAGS); err != nil {
		return fmt.Errorf("bringing lo up: %w", err)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return err
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 {
			return fmt.Errorf("the namespace has an interface besides lo: %s", i.Name)
		}
		if i.Flags&net.FlagUp == 0 {
			return fmt.Errorf("%s is still down", i.Name)
		}
	}
	return nil
}
