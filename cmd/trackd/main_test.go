package main

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// build compiles trackd into a temporary directory.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "trackd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestHelp(t *testing.T) {
	out, err := exec.Command(build(t), "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("trackd -h: %v\n%s", err, out)
	}
	for _, flag := range []string{"-config", "-http", "-store", "-require-compact", "-target-announce-rate", "-trusted-proxies"} {
		if !bytes.Contains(out, []byte(flag)) {
			t.Errorf("-h does not mention %s", flag)
		}
	}
}

func TestBadFlagExits2(t *testing.T) {
	err := exec.Command(build(t), "-min-interval", "soon").Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Errorf("bad flag: %v, want exit status 2", err)
	}
}

// TestServeAndStopOnSignal runs the binary as an operator would: it logs its
// listener, answers an announce, and exits cleanly on SIGTERM.
func TestServeAndStopOnSignal(t *testing.T) {
	for _, sig := range []os.Signal{syscall.SIGTERM, os.Interrupt} {
		cmd := exec.Command(build(t), "-http", "127.0.0.1:0")
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		lines := make(chan string, 100)
		go func() {
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		addrRE := regexp.MustCompile(`protocol=http addr=(\S+)`)
		var addr string
		timeout := time.After(10 * time.Second)
		for addr == "" {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatal("trackd exited before serving")
				}
				if m := addrRE.FindStringSubmatch(l); m != nil {
					addr = m[1]
				}
			case <-timeout:
				t.Fatal("no listener log line within 10s")
			}
		}
		res, err := http.Get("http://" + addr + "/announce?info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=0")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		cmd.Process.Signal(sig)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%v: exit %v", sig, err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%v: trackd did not exit", sig)
		}
		var rest strings.Builder
		for l := range lines {
			rest.WriteString(l + "\n")
		}
		if !strings.Contains(rest.String(), "shutting down") {
			t.Errorf("%v: no shutdown log line: %q", sig, rest.String())
		}
		if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			t.Errorf("%v: still listening after exit", sig)
		}
	}
}
